"""The study storages a cluster uses, for real: a private PostgreSQL server (tests/pg.py)
and a JournalStorage file outside the run directory (a shared-file study), each under
real searches: 4 trials at once, a driver frozen mid-search and read by `ktg status` and
`ktg query`, then SIGKILLed and resumed with nothing lost and nothing counted twice, and
two drivers writing one study at once."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from ktg_search.results.book import load_results, read_journal
from ktg_search.search.study import open_optuna_storage, sqlalchemy_url
from shared_files import assert_rows_kept, stray_checkpoints

# no gate is cutoff: no graph is untrainable (recorded at once, docs/untrainable.md), so
# every trial trains and 4 of them run at once
TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2,
            gates=["through", "linear_up"],
            max_epochs=3, grace_period=1, reduction_factor=2, eval_samples=100,
            max_iters_per_epoch=4, fid=False, d_width=16, seed=5, baselines=False,
            cpus_per_trial=0.5)


@pytest.fixture
def address(ray_session) -> str:
    """The session's Ray, which every driver joins (`--address`), as drivers join a
    cluster's: no driver pays for a Ray of its own, and two drivers share one."""
    return ray_session.get_runtime_context().gcs_address


@pytest.fixture(params=["postgresql", "journal"])
def storage(request, tmp_path) -> str:
    """The study storage URL: a fresh PostgreSQL database, or a journal file outside
    the run directory (as on a cluster's shared folder)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"journal:{tmp_path / 'shared' / 'optuna.log'}"


def _env(failpoint: str | None = None) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("KTG_FAILPOINT", None)
    if failpoint:
        env["KTG_FAILPOINT"] = failpoint
    return env


def _start(args: list[str], cwd: Path, failpoint: str | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ktg_search.cli", *args],
                            env=_env(failpoint), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)


def _finish(p: subprocess.Popen, timeout: float = 400) -> str:
    """Wait for a driver; its output. The driver and the Ray it started are gone after."""
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        _kill(p)
    assert p.returncode == 0, f"ktg exited {p.returncode}:\n{out[-3000:]}"
    return out


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _ktg(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ktg_search.cli", *args], env=_env(),
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def _wait_stopped(p: subprocess.Popen, timeout: float = 300) -> None:
    """Until the driver SIGSTOPped itself at its failpoint (state T in /proc)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert p.poll() is None, f"the driver ended ({p.returncode}) before its failpoint"
        stat = Path(f"/proc/{p.pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("T", "t"):
            return
        time.sleep(0.2)
    raise AssertionError("the driver never reached its failpoint")


def _study(run: Path) -> optuna.Study:
    info = json.loads((run / "run.json").read_text())
    return optuna.load_study(study_name=info["study_name"],
                             storage=open_optuna_storage(info["storage"]))


def _most_at_once(intervals) -> int:
    """The most intervals (start, end) open at one moment."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def _study_agrees(run: Path, df, study: optuna.Study) -> None:
    """One study trial per row, none left running, each holding the row's objective."""
    mine = [t for t in study.trials if t.user_attrs.get("trial_id") in set(df.trial_id)]
    assert Counter(t.state.name for t in mine).get("RUNNING", 0) == 0
    by_id = {t.user_attrs["trial_id"]: t for t in mine}
    assert len(by_id) == len(mine) == len(df), "a row without a study trial or two"
    for _, r in df.iterrows():
        t = by_id[r.trial_id]
        if r.status == "error":
            assert t.state.name == "FAIL"
        elif math.isfinite(r.objective) and r.status != "duplicate":
            assert t.state.name == "COMPLETE" and t.value == pytest.approx(r.objective)


def test_plain_postgresql_urls_name_the_installed_driver():
    # SQLAlchemy 2.1 reads a plain postgresql:// as psycopg 3, which is not installed
    assert sqlalchemy_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert sqlalchemy_url("postgres://h/d") == "postgresql+psycopg2://h/d"
    assert sqlalchemy_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_private_server_answers(pg_url):
    import psycopg2
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            assert cur.fetchone()[0].startswith("15")
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == "postgres"
    finally:
        conn.close()
    assert pg_url.startswith("postgresql://postgres@127.0.0.1:")


@pytest.mark.slow
def test_four_at_once_read_while_running_killed_and_resumed(storage, address, tmp_path):
    """4 trials at once on the storage; the driver frozen after its 3rd finished trial is
    read by status and query, SIGKILLed, resumed: every trial one row, one study trial."""
    n = 6
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({**TINY, "num_trials": n, "concurrency": 4}))
    root, run = tmp_path / "runs", tmp_path / "runs" / "r"
    p = _start(["search", "--config", str(conf), "--name", "r", "--storage-path", str(root),
                "--address", address, "--set", f"storage={storage}"], tmp_path,
               "tables-written:3:stop")
    try:
        _wait_stopped(p)
        # (d) the search is mid-way (driver frozen, trials running in Ray): both read it
        st = _ktg(["status", str(run)], tmp_path)
        assert st.returncode == 0, st.stderr
        assert st.stdout.startswith("r: running"), st.stdout
        q = _ktg(["query", str(run), "--format", "json"], tmp_path)
        assert q.returncode == 0, q.stderr
        rows = json.loads(q.stdout)
        assert len(rows) == 3 and all(r["status"] for r in rows), rows
        assert {r["trial_id"] for r in rows} == set(load_results(run).trial_id)
    finally:
        _kill(p)  # (c) SIGKILL, mid-search
    before = load_results(run)
    assert len(before) == 3, before
    assert "RUNNING" in {t.state.name for t in _study(run).trials}, \
        "the kill left no trial running: nothing for the resume to recover"

    # resumed, and read while it runs (the reads must never fail)
    p = _start(["search", "--resume", str(run), "--allow-external-storage",
                "--address", address], tmp_path)
    reads = 0
    try:
        while p.poll() is None:
            st = _ktg(["status", str(run)], tmp_path)
            q = _ktg(["query", str(run), "--format", "json"], tmp_path)
            assert st.returncode == 0 and q.returncode == 0, (st.stderr, q.stderr)
            assert len(json.loads(q.stdout)) >= 3
            reads += p.poll() is None
            time.sleep(5)
    except BaseException:
        _kill(p)
        raise
    _finish(p)
    assert reads >= 1, "no read while the resumed search ran"

    df = load_results(run)
    assert len(df) == n and df.trial_id.is_unique, df
    assert_rows_kept(before, df)
    # the killed driver's trials left their epoch checkpoints' scratch behind; the
    # finished resume removed this node's (a temporary folder per epoch used to stay)
    strays = stray_checkpoints(df.trial_id)
    assert strays == [], strays
    events = read_journal(run)
    row_events = Counter(e["trial_id"] for e in events if e.get("event") == "row")
    assert set(row_events) == set(df.trial_id) and max(row_events.values()) == 1
    epochs = Counter((e["trial_id"], e["result"]["epoch"]) for e in events
                     if e.get("event") == "result"
                     and e["result"].get("status") not in ("duplicate", "untrainable",
                                                           "skipped"))
    assert epochs and max(epochs.values()) == 1, [k for k, v in epochs.items() if v > 1]
    study = _study(run)
    assert len(study.trials) == n
    _study_agrees(run, df, study)
    # (a) 4 trials at once: in the study (asked .. told) and in the journal (start .. row)
    spans = [(t.datetime_start, t.datetime_complete) for t in study.trials]
    assert _most_at_once(spans) >= 4, spans
    start = {}  # a re-run trial's first start (the kill left it running)
    for e in events:
        if e.get("event") == "trial-start":
            start.setdefault(e["trial_id"], e["time"])
    end = {e["trial_id"]: e["time"] for e in events if e.get("event") == "row"}
    assert _most_at_once([(start[t], end[t]) for t in end if t in start]) >= 4


@pytest.mark.slow
def test_two_drivers_write_one_study_at_once(storage, address, tmp_path):
    """Two `ktg search` processes, one storage, one study name, at once: both finish and
    the study holds each driver's trials once."""
    n = 3
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({**TINY, "num_trials": n, "concurrency": 2,
                                "study_name": "shared"}))
    root = tmp_path / "runs"
    drivers = {name: _start(["search", "--config", str(conf), "--name", name,
                             "--storage-path", str(root), "--address", address,
                             "--set", f"storage={storage}"],
                            tmp_path) for name in ("a", "b")}
    try:
        for p in drivers.values():
            _finish(p)
    finally:
        for p in drivers.values():
            _kill(p)
    dfs = {name: load_results(root / name) for name in drivers}
    for df in dfs.values():
        assert len(df) == n and df.trial_id.is_unique, df
        assert (df.status != "error").all(), df[["trial_id", "status", "error"]]
    assert not set(dfs["a"].trial_id) & set(dfs["b"].trial_id)
    study = _study(root / "a")
    assert study.study_name == "shared" == json.loads(
        (root / "b" / "run.json").read_text())["study_name"]
    ids = Counter(t.user_attrs.get("trial_id") for t in study.trials)
    assert len(study.trials) == 2 * n and max(ids.values()) == 1, ids
    assert set(ids) == set(dfs["a"].trial_id) | set(dfs["b"].trial_id)
    for name, df in dfs.items():
        _study_agrees(root / name, df, study)
    # both wrote at once: their trials' spans in the study overlap
    spans = {name: [(t.datetime_start, t.datetime_complete) for t in study.trials
                    if t.user_attrs["trial_id"] in set(df.trial_id)]
             for name, df in dfs.items()}
    assert min(s for s, _ in spans["b"]) < max(e for _, e in spans["a"]) and \
        min(s for s, _ in spans["a"]) < max(e for _, e in spans["b"]), spans


_OPEN_AND_WRITE = """
import sys, optuna
from ktg_search.search.study import open_optuna_storage
s = optuna.create_study(study_name="shared", storage=open_optuna_storage(sys.argv[1]),
                        load_if_exists=True)
t = s.ask()
s.tell(t, 1.0)
"""


def test_processes_opening_a_new_postgresql_database_at_once(pg_url):
    """Optuna makes its schema when it opens an empty database: 6 processes doing that at
    once all succeed (without study.py's advisory lock, CREATE TYPE failed in some)."""
    ps = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_WRITE, pg_url],
                           stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1][-500:] for p in ps]
    assert [p.returncode for p in ps] == [0] * 6, errors
    study = optuna.load_study(study_name="shared", storage=open_optuna_storage(pg_url))
    assert len(study.trials) == 6
