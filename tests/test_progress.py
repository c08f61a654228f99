"""What a person sees: a concise search, `ktg status` from the files, a failing search
that says so."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from ktg_search.cli import main
from ktg_search.search.progress import snapshot
from ktg_search.results.book import ResultsBook

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2, gates=["through", "cutoff"],
            num_trials=5, max_epochs=2, grace_period=1, reduction_factor=2,
            eval_samples=100, max_iters_per_epoch=3, fid=False, d_width=16, seed=4,
            baselines=False)  # counts trial lines: no baselines beside them

TRIAL_LINE = re.compile(r"^\[\d+/5\] \S+\s+(completed|stopped|diverged|error|duplicate|"
                        r"untrainable|skipped)\b")
STATUS_LINE = re.compile(r"^\d+/5 finished · \d+ running · ")


@pytest.mark.slow
def test_a_search_prints_a_line_per_trial_and_ray_goes_to_the_log(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps(TINY))
    p = subprocess.run([sys.executable, "-m", "ktg_search.cli", "search", "--config",
                        str(conf), "--name", "q", "--storage-path", str(tmp_path)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert p.returncode == 0, p.stderr[-2000:]
    lines = (p.stdout + p.stderr).splitlines()
    assert lines[0].startswith("search q: k=2")
    trial_lines = [l for l in lines if TRIAL_LINE.match(l)]
    assert len(trial_lines) == 5
    summary = lines[lines.index(next(l for l in lines if l.startswith("5 trials:"))):]
    others = [l for l in lines[1:] if not TRIAL_LINE.match(l) and not STATUS_LINE.match(l)
              and l not in summary]
    assert others == [], others   # nothing from Ray, Tune or Optuna
    assert len(lines) <= 1 + 5 + 3 + 7
    log = (tmp_path / "q" / "search.log").read_text()
    assert "Started a local Ray instance" in log and "Configuration for experiment" in log


def _book(tmp_path, rows, started=(), pid=None):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "demo", "config": {"num_trials": 6}}))
    book = ResultsBook(run)
    for tid in started:
        book.on_start(tid)
    for r in rows:
        book._append({"event": "row", "trial_id": r["trial_id"], "time": time.time(),
                      "row": r})
    return run


def _row(tid, status, objective, **kw):
    return {"trial_id": tid, "status": status, "objective": objective, "epochs": 2,
            "best_epoch": 2, "graph_key": f"k{tid}", "duplicate_of": "", "error": "", **kw}


def test_snapshot_counts_and_eta_by_hand():
    class B:  # the book's rows are all `snapshot` reads
        rows = {t: r for t, r in [("a", _row("a", "completed", 2.5)),
                                  ("b", _row("b", "stopped", 3.5)),
                                  ("c", _row("c", "duplicate", 3.5, duplicate_of="b")),
                                  ("d", _row("d", "error", float("nan")))]}
    s = snapshot(B(), planned=10, running=2, start=100.0, finished_at_start=1, now=160.0)
    assert (s.finished, s.running, s.stopped, s.duplicates, s.errors) == (4, 2, 1, 1, 1)
    assert (s.best, s.best_id) == (3.5, "b")
    # 3 trials finished in this session in 60 s: 6 to go take 120 s
    assert s.elapsed_s == 60.0 and s.eta_s == pytest.approx(120.0)
    line = s.line()
    assert line.startswith("4/10 finished · 2 running · 1 stopped by ASHA · 1 duplicate · "
                           "1 error · best 3.500 (b) · 1m00s elapsed · ETA 2m00s")
    assert s.untrainable == 0 and "untrainable" not in line
    B.rows["e"] = _row("e", "untrainable", float("nan"))
    s = snapshot(B(), planned=10, running=2, start=100.0, finished_at_start=1, now=160.0)
    assert s.untrainable == 1 and "1 duplicate · 1 untrainable · 1 error" in s.line()


@pytest.mark.parametrize("grace,rf,epochs,by_hand", [
    # rungs 1, 2, 4, 8, 16 below 30: 1 + 1/2 + 2/4 + 4/8 + 8/16 + 14/32
    (1, 2, 30, 1 + 0.5 + 0.5 + 0.5 + 0.5 + 14 / 32),
    # rungs 1, 3, 9 below 10: 1 + 2/3 + 6/9 + 1/27
    (1, 3, 10, 1 + 2 / 3 + 6 / 9 + 1 / 27),
    (2, 2, 8, 2 + 2 / 2 + 4 / 4),       # rungs 2, 4 below 8
    (5, 2, 5, 5),                       # no rung below the last epoch: every trial runs 5
])
def test_epochs_per_trial_under_asha_by_hand(grace, rf, epochs, by_hand):
    from ktg_search.search.progress import Schedule
    assert Schedule(epochs, grace, rf).epochs_per_trial() == pytest.approx(by_hand)


def test_epochs_per_trial_is_what_tunes_asha_trains_once_its_rungs_fill():
    """Tune's own ASHA bracket decides 3,000 trials of random quality, one after another:
    past the first trials (empty rungs promote everything) the mean epochs a trial trains
    is the schedule's figure."""
    import random
    from types import SimpleNamespace
    from ray.tune.schedulers.async_hyperband import _Bracket
    from ray.tune.schedulers.trial_scheduler import TrialScheduler
    from ktg_search.search.progress import Schedule
    rng = random.Random(0)
    for grace, rf, epochs in [(1, 2, 30), (1, 3, 10)]:
        bracket = _Bracket(grace, epochs, rf, 0)
        trained = []
        for i in range(3000):
            trial, quality = SimpleNamespace(trial_id=str(i)), rng.random()
            e = 0
            while e < epochs:
                e += 1
                if bracket.on_result(trial, e, quality) == TrialScheduler.STOP:
                    break
            trained.append(e)
        late = trained[1000:]
        assert sum(late) / len(late) == pytest.approx(
            Schedule(epochs, grace, rf).epochs_per_trial(), rel=0.05)
        assert sum(trained[:20]) / 20 > sum(late) / len(late)  # the first run longer


def test_eta_by_epochs_by_hand():
    """3 baselines of 30 epochs and 20 searched trials under rungs 1, 2, 4, 8, 16."""
    from ktg_search.search.progress import Schedule, eta_by_epochs
    sched = Schedule(30, 1, 2, baselines=3)
    rows = [_row("b1", "completed", 5.0, baseline="dcgan-sn", epochs=30, wall_s=300.0),
            _row("s1", "stopped", 1.0, epochs=1, wall_s=20.0),
            _row("s2", "stopped", 2.0, epochs=4, wall_s=40.0),
            _row("s3", "untrainable", float("nan"), epochs=0, wall_s=0.0),
            _row("s4", "duplicate", 2.0, duplicate_of="s2", epochs=0, wall_s=1.0)]
    per_epoch = (300 + 20 + 40) / (30 + 1 + 4)   # 0-epoch rows train nothing
    left = 2 * 30 + (23 - 5 - 2) * (2 / 4) * 3.4375  # 2 baselines; half the searched train
    assert eta_by_epochs(rows, sched, planned=23, parallel=2) == pytest.approx(
        left * per_epoch / 2)
    assert eta_by_epochs(rows[3:], sched, planned=23, parallel=2) is None  # nothing trained
    assert Schedule.of({"time_unit": "steps", "train": {"epochs": 30}}) is None
    assert Schedule.of({"grace_period": 1, "reduction_factor": 3, "train": {"epochs": 9}},
                       baselines=2) == Schedule(9, 1, 3.0, 2)
    # the snapshot takes it when given a schedule, the old pace without
    from types import SimpleNamespace
    book = SimpleNamespace(rows={r["trial_id"]: r for r in rows})
    s = snapshot(book, planned=23, running=2, start=0.0, finished_at_start=0, now=100.0,
                 schedule=sched)
    assert s.eta_s == pytest.approx(left * per_epoch / 2)
    s = snapshot(book, planned=23, running=2, start=0.0, finished_at_start=0, now=100.0)
    assert s.eta_s == pytest.approx(18 * 100 / 5)


def test_status_of_a_live_search_and_of_a_dead_one(tmp_path, capsys):
    run = _book(tmp_path, [_row("a", "completed", 2.0), _row("b", "stopped", 1.5)],
                started=["a", "b", "c", "d"])
    book = ResultsBook(run)
    book.journal_start(6, resumed=False)  # this process plays the running driver
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "demo: running"
    assert out[1].startswith("2/6 finished · 0 running")  # started before this driver
    book.on_start("e")
    assert main(["status", str(run), "--top", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("2/6 finished · 1 running") and "best 2.000 (a)" in out[1]
    assert out[2].startswith("top 1 graphs") and out[3].split()[0] == "a" and len(out) == 4
    # the header names the run's objective rule: absent = the default (best generator),
    # nested (train.objective) or flat (an old run.json)
    assert "the best generator's IS" in out[2]
    for config in ({"num_trials": 6, "train": {"objective": "weakest"}},
                   {"num_trials": 6, "objective": "weakest"}):
        (run / "run.json").write_text(json.dumps({"name": "demo", "config": config}))
        assert main(["status", str(run), "--top", "1"]) == 0
        assert "the weakest generator's IS" in capsys.readouterr().out.splitlines()[2]
    # a driver that is gone: not running, nothing counted as running, how to resume
    book._append({"event": "start", "time": time.time(), "planned": 6, "pid": 2 ** 22 + 7,
                  "host": os.uname().nodename, "finished_before": 2})
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("demo: not running (resume with `ktg search --resume")
    assert "0 running" in out[1] and "ETA -" in out[1]
    # the driver counts its baselines among the planned trials (6 searched + 2)
    book._append({"event": "start", "time": time.time(), "planned": 8, "pid": 2 ** 22 + 7,
                  "host": os.uname().nodename, "finished_before": 2})
    assert main(["status", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2/8 finished")
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_search_whose_every_trial_fails_exits_non_zero(ray_session, tmp_path, capsys):
    conf = tmp_path / "conf.json"
    # a data set smaller than one batch: every trial fails on it, once (no retries)
    conf.write_text(json.dumps({**TINY, "dataset": "synthetic:10", "num_trials": 2,
                                "gates": ["through"]}))
    rc = main(["search", "--config", str(conf), "--name", "f", "--storage-path",
               str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "every trial failed (2 of 2)" in err and "batch_size" in err
    from ktg_search.results.book import load_results
    df = load_results(tmp_path / "f")
    # the second trial samples the same graph; its original failed, so it trains it
    assert list(df.status) == ["error", "error"]


def test_an_untrainable_trial_line_names_its_dead_nodes_only():
    """The reason of a graph with two dead nodes is hundreds of characters; the trial line
    names the nodes and points at the table, which keeps the whole reason."""
    from ktg_search.method.graph import Graph
    from ktg_search.method.trainability import untrainable_reason
    from ktg_search.search.progress import trial_line
    graph = Graph.build(["dcgan-small"] * 3, {("D", 0): "through", (0, 1): "through",
                                              (2, 1): "linear_up", (0, 2): "through"})
    reason = untrainable_reason(graph)
    assert reason.count("learns only") == 2 and len(reason) > 300
    row = {"trial_id": "abc12345", "status": "untrainable", "epochs": 0,
           "objective": float("nan"), "error": reason}
    line = trial_line(row, 16, 3)
    assert line == ("[3/16] abc12345  untrainable  epochs 0  objective -  (nodes 1, 2: "
                    "output layer never trained; the full reason is in the results table)")
    error = {**row, "status": "error", "error": "CUDA out of memory"}  # others: as they are
    assert trial_line(error, 16, 3).endswith("  (CUDA out of memory)")
