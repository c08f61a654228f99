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
