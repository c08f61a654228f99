"""Shared fixtures: one classifier cache and one local Ray per test session."""
from __future__ import annotations

import os
import tempfile

import pytest

# One cache for the whole session (the digits classifier trains once), set before any
# test imports ktg_search and before Ray starts (its workers inherit the environment).
_OWN_CACHE = None if "KTG_CACHE" in os.environ else tempfile.mkdtemp(prefix="ktg-test-cache-")
if _OWN_CACHE:
    os.environ["KTG_CACHE"] = _OWN_CACHE
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_sessionfinish(session, exitstatus):
    """The cache this session made goes with it (34 MB a run: left behind, a hundred
    runs filled /tmp with gigabytes); one given in $KTG_CACHE is the caller's, kept."""
    if _OWN_CACHE:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray: 2 CPUs, no dashboard, once per session."""
    import ray
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits16():
    from ktg_search.data.loading import load_dataset
    return load_dataset("digits", 16)


@pytest.fixture(scope="session")
def evaluator16(digits16):
    from ktg_search.data.metrics import Evaluator
    return Evaluator(digits16, extractor="classifier", num_samples=500, fid=True,
                     device="cpu")


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """A small finished run directory made without Ray (tests/shared_files.py)."""
    from shared_files import make_run
    return make_run(tmp_path_factory.mktemp("shared-run"))


@pytest.fixture
def run_copy(shared_run, tmp_path):
    """A private copy of `shared_run`, free to damage."""
    import shutil
    return shutil.copytree(shared_run, tmp_path / "run", symlinks=True)


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL server (tests/pg.py) for the whole session, stopped and removed
    afterwards however the tests end. Skipped only where no PostgreSQL binaries exist."""
    from pg import PgServer, pg_bin_dir
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl, postgres) on the PATH or in "
                    "/usr/lib/postgresql/*/bin")
    server = PgServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh, empty database on the session's PostgreSQL server: its URL."""
    import re
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + \
        f"_{os.getpid()}_{next(_PG_DBS)}"
    return pg_server.create_database(name)


_PG_DBS = __import__("itertools").count()
