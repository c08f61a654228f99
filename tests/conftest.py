"""Shared fixtures: one classifier cache and one local Ray per test session."""
from __future__ import annotations

import os
import tempfile

import pytest

# One cache for the whole session (the digits classifier trains once), set before any
# test imports ktg_search and before Ray starts (its workers inherit the environment).
os.environ.setdefault("KTG_CACHE", tempfile.mkdtemp(prefix="ktg-test-cache-"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


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
