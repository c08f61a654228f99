"""Resume after a kill at any moment: the driver is SIGKILLed at named points of its
life (failpoints.py), resumed after each kill, and the finished search must look as if
nothing happened: every planned trial one row, no finished trial trained twice, the
study and the table agreeing."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest

from ktg_search.results.book import ResultsBook, load_history, load_results, read_journal
from shared_files import assert_rows_kept

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2, gates=["through", "cutoff"],
            num_trials=10, max_epochs=3, grace_period=1, reduction_factor=2,
            eval_samples=100, max_iters_per_epoch=4, fid=False, d_width=16, seed=21,
            concurrency=2)

# (point, n): die the n-th time the driver passes `point` in that session. Spread over a
# search's life: start-up, a trial asked but not started, a trial between two epochs
# (epoch 2 of 3 recorded, so its re-run must start from that checkpoint), a trial's last
# epoch recorded but the trial not yet ended, mid-training, between the study's record of
# a finished trial and ours, between the journal and the tables, after the tables, and
# before the final summary. Each is reached whatever graphs are sampled: the first two
# sessions report nothing, so in the third the first trial meets empty ASHA rungs and
# reaches epoch 2; the fourth re-runs that trial from epoch 2 to its last epoch; the
# kills before the last finish at most 8 of the 10 trials.
KILLS = [("startup", 1), ("suggested", 2), ("mid-result", 1), ("last-result", 1),
         ("result", 3), ("trial-told", 1), ("row-journaled", 1), ("tables-written", 1),
         ("final", 1)]


def _ktg(args: list[str], failpoint: str | None, cwd: Path) -> int:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("KTG_FAILPOINT", None)
    if failpoint:
        env["KTG_FAILPOINT"] = failpoint
    p = subprocess.Popen([sys.executable, "-m", "ktg_search.cli", *args], env=env, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True)
    out, _ = p.communicate(timeout=600)
    try:  # the driver is gone; so must be the Ray it started
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if p.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"ktg {' '.join(args)} exited {p.returncode}:\n{out[-3000:]}")
    return p.returncode


# the kill test's search has baselines too (issue 21): a killed search must never enqueue
# one twice, nor count one in num_trials, nor let ASHA stop one
BASELINES = ["mad-gan", "dcgan-sn"]


@pytest.mark.slow
def test_a_search_killed_anywhere_resumes_to_the_same_table(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({**TINY, "baselines": BASELINES}))
    run = tmp_path / "runs" / "k"
    seen = None  # the table the previous session left
    rechecked = 0  # rows that a later session saw again (the loop below checks those)
    for i, (point, n) in enumerate(KILLS):
        args = (["search", "--config", str(conf), "--name", "k", "--storage-path",
                 str(tmp_path / "runs")] if i == 0 else ["search", "--resume", str(run)])
        rc = _ktg(args, f"{point}:{n}", tmp_path)
        assert rc == -signal.SIGKILL, f"kill {i} at {point}:{n} was never reached"
        # rows once written never change (a finished trial is never trained again)
        now = load_results(run)
        if seen is not None:
            assert_rows_kept(seen, now)
            rechecked += len(seen)
        seen = now
        if point == "mid-result":  # the trial whose epoch 2 was the last word
            victim = [e for e in read_journal(run) if e.get("event") == "result"][-1]
            assert victim["result"]["epoch"] == 2, victim
    assert rechecked > 0, "no row was seen by two sessions: none was checked unchanged"
    assert _ktg(["search", "--resume", str(run)], None, tmp_path) == 0

    df = load_results(run)
    assert len(df) == TINY["num_trials"] + len(BASELINES) and df.trial_id.is_unique
    # each baseline once, trained to the end (never stopped early), whatever the kills
    base = df[df.baseline != ""]
    assert sorted(base.baseline) == sorted(BASELINES), base
    assert (base[base.status != "error"].epochs == TINY["max_epochs"]).all(), base
    # every row the journal ever recorded is there, once: no trial finished twice
    events = read_journal(run)
    row_events = Counter(e["trial_id"] for e in events if e.get("event") == "row")
    assert set(row_events) == set(df.trial_id) and max(row_events.values()) == 1
    # no epoch was trained twice, and every trained trial has epochs 1..n
    trained = df[df.status.isin(["completed", "stopped", "diverged"])]
    epochs = Counter((e["trial_id"], e["result"]["epoch"]) for e in events
                     if e.get("event") == "result"
                     and e["result"].get("status") not in ("duplicate", "untrainable",
                                                           "skipped"))
    assert max(epochs.values()) == 1, [k for k, v in epochs.items() if v > 1]
    hist = load_history(run)
    assert len(trained) > 0, "no trained trial to check"
    for _, r in trained.iterrows():
        h = hist[hist.trial_id == r.trial_id]
        assert sorted(h.epoch) == list(range(1, int(r.epochs) + 1)), r.trial_id
    assert set(hist.trial_id) <= set(trained.trial_id)
    # the trial killed between its epochs 2 and 3 was re-run from its epoch-2 checkpoint,
    # not from scratch
    h = hist[hist.trial_id == victim["trial_id"]].set_index("epoch")
    assert list(h.index) == [1, 2, 3] and h.loc[3, "restored_from"] == 2, h
    # the study agrees: one finished trial per row, none left running
    info = json.loads((run / "run.json").read_text())
    study = optuna.load_study(study_name=info["study_name"], storage=info["storage"])
    states = Counter(t.state.name for t in study.trials)
    assert states.get("RUNNING", 0) == 0 and len(study.trials) == len(df), states
    assert sorted(t.user_attrs["baseline"] for t in study.trials
                  if "baseline" in t.user_attrs) == sorted(BASELINES)
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert set(by_id) == set(df.trial_id)
    for _, r in df.iterrows():  # the value Optuna holds is the row's objective
        t = by_id[r.trial_id]
        if r.status == "error":
            assert t.state.name == "FAIL"
        elif math.isfinite(r.objective) and r.status != "duplicate":
            assert t.value == pytest.approx(r.objective, rel=1e-6)
    # the tables are the journal's view
    book = ResultsBook(run)
    assert set(book.rows) == set(df.trial_id)


# ---- the parts, one at a time -------------------------------------------------------------
def _book(tmp_path, **over):
    from ktg_search.search.config import SearchConfig
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text("{}")
    return ResultsBook(run, SearchConfig.from_dict({**TINY, **over}))


def _params(gate_d0="through"):
    return {"gate_D_0": gate_d0, "gate_D_1": "through", "gate_0_1": "cutoff",
            "gate_1_0": "cutoff", "model_0": "dcgan-small", "model_1": "dcgan-small",
            "transfer": "feature_out"}


def _epoch(e, obj):
    return {"epoch": e, "objective": obj, "objective_now": obj, "is_g0": obj,
            "is_g1": obj - 0.5, "status": "running", "restored_from": 0}


def test_a_torn_journal_line_loses_nothing_before_or_after_it(tmp_path):
    book = _book(tmp_path)
    book.on_result("a", _epoch(1, 1.5))
    with open(book.run_dir / "journal.jsonl", "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"event": "result", "trial_id": "a", "res')
    again = ResultsBook(book.run_dir, book.cfg)
    again.on_result("a", _epoch(2, 2.5))
    row = again.on_complete("a", _params(), _epoch(2, 2.5), None)
    assert row["epochs"] == 2 and row["objective"] == 2.5
    back = ResultsBook(book.run_dir)
    assert sorted(e for (_, e) in back.history) == [1, 2]
    assert back.rows["a"]["objective"] == 2.5


def test_a_duplicate_row_follows_its_original_the_other_rows_never_change(tmp_path):
    """What CI once met after a resume: a duplicate whose original was still training
    when the duplicate's row was written shows the original's best so far, then its
    final numbers once the original has a row; a trained row stays as written."""
    book = _book(tmp_path)
    book.on_result("orig", _epoch(1, 1.5))
    book.on_result("orig", _epoch(2, 2.0))
    dup = {"epoch": 2, "objective": 2.0, "status": "duplicate", "duplicate_of": "orig"}
    book.on_result("dup", dup)
    book.on_complete("dup", _params(), dup, None)
    book.on_result("other", _epoch(1, 1.1))
    book.on_complete("other", _params("linear_up"), _epoch(1, 1.1), None)
    book.write()
    before = load_results(book.run_dir)
    d = before.set_index("trial_id").loc["dup"]
    assert d.status == "duplicate" and d.epochs == 2 and d.objective == 2.0
    book.on_result("orig", _epoch(3, 2.75))
    book.on_complete("orig", _params(), _epoch(3, 2.75), None)
    book.write()
    after = load_results(book.run_dir)
    d = after.set_index("trial_id").loc["dup"]
    assert d.status == "duplicate" and d.epochs == 3 and d.objective == 2.75
    assert_rows_kept(before, after)
    # the check has teeth: a trained row whose epochs changed is caught
    changed = after.copy()
    changed.loc[changed.trial_id == "other", "epochs"] = 5
    with pytest.raises(AssertionError):
        assert_rows_kept(before, changed)


def _searcher(tmp_path, reruns=None):
    from ktg_search.search.config import SearchConfig
    from ktg_search.search.study import StudySearcher, open_optuna_storage
    space = SearchConfig.from_dict(TINY).space
    storage = open_optuna_storage(f"sqlite:///{tmp_path / 'study.db'}")
    s = StudySearcher(space=space.define_by_run, metric="objective", mode="max",
                      sampler=optuna.samplers.RandomSampler(seed=1), storage=storage,
                      study_name="s", reruns=reruns)
    s.set_search_properties("objective", "max", {})
    return s, storage


def test_the_study_records_every_outcome_and_each_epoch_once(tmp_path):
    s, storage = _searcher(tmp_path)
    for tid in ("done", "nan", "err"):
        config = s.suggest(tid)
        assert "gate_D_0" in config and "resume_of" not in config
    s.on_trial_result("done", {"objective": 1.25, "epoch": 1, "training_iteration": 1})
    # a restored trial's iteration counter restarts; its epoch does not repeat
    s.on_trial_result("done", {"objective": 1.5, "epoch": 2, "training_iteration": 1})
    s.on_trial_result("done", {"objective": 1.5, "epoch": 2, "training_iteration": 2})
    s.on_trial_complete("done", {"objective": 1.5})
    s.on_trial_complete("nan", {"objective": float("nan")})  # a skipped graph
    s.on_trial_complete("err", None, error=True)
    study = optuna.load_study(study_name="s", storage=storage)
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert by_id["done"].state.name == "COMPLETE" and by_id["done"].value == 1.5
    assert by_id["done"].intermediate_values == {1: 1.25, 2: 1.5}
    assert by_id["nan"].state.name == "PRUNED"   # Ray's class left it RUNNING
    assert by_id["err"].state.name == "FAIL"


def test_plan_resume_rebuilds_rows_and_reruns_from_the_journal_and_study(tmp_path):
    from ktg_search.search.resume import plan_resume
    from ktg_search.search.study import Rerun
    book = _book(tmp_path)
    s, storage = _searcher(tmp_path)
    ids = ["told_no_row", "row_not_told", "running", "asked_only"]
    configs = {tid: s.suggest(tid) for tid in ids}
    # told_no_row: the study finished it, the driver died before the row
    book.on_result("told_no_row", _epoch(1, 1.1))
    book.on_result("told_no_row", _epoch(2, 1.9))
    s.on_trial_complete("told_no_row", {"objective": 1.9})
    # row_not_told: the row made it, the study's record did not
    book.on_result("row_not_told", _epoch(1, 1.3))
    book.on_complete("row_not_told", configs["row_not_told"], _epoch(1, 1.3), None)
    # running: two epochs journaled; checkpoints of epochs 1, 2 and 3 on disk (3 never
    # reached the journal, so it must not be used)
    book.on_result("running", _epoch(1, 1.2))
    book.on_result("running", _epoch(2, 1.4))
    for e in (1, 2, 3):
        d = book.run_dir / f"train_ktg_{e}" / f"checkpoint_00000{e}"
        d.mkdir(parents=True)
        (d / "trial.json").write_text(json.dumps({"trial_id": "running", "epoch": e}))
    restored = ResultsBook(book.run_dir, book.cfg)  # what the resumed driver reads
    space = book.cfg.space
    plan = plan_resume(storage, "s", restored, space, str(book.run_dir))
    assert plan.recovered == 1 and plan.told == 1
    row = restored.rows["told_no_row"]
    assert row["status"] == "stopped" and row["epochs"] == 2 and row["objective"] == 1.9
    reruns = {r.trial_id: r for r in plan.reruns}
    assert set(reruns) == {"running", "asked_only"}
    assert [Path(p).name for p in reruns["running"].checkpoints] == \
        ["checkpoint_000002", "checkpoint_000001"]
    assert reruns["asked_only"].checkpoints == []
    study = optuna.load_study(study_name="s", storage=storage)
    told = [t for t in study.trials if t.user_attrs["trial_id"] == "row_not_told"][0]
    assert told.state.name == "COMPLETE" and told.value == 1.3
    # the re-runs are handed out first, as the same Optuna trials and logical trials
    s2, _ = _searcher(tmp_path, reruns=[reruns["running"]])
    again = s2.suggest("new-tune-id")
    assert again["resume_of"] == "running" and len(again["resume_from"]) == 2
    assert {k: again[k] for k in configs["running"]} == configs["running"]
    s2.on_trial_complete("new-tune-id", {"objective": 2.0})
    study = optuna.load_study(study_name="s", storage=storage)
    t = [t for t in study.trials if t.user_attrs["trial_id"] == "running"][0]
    assert t.state.name == "COMPLETE" and t.value == 2.0
    assert len(study.trials) == len(ids)  # nothing new was asked for the re-run
    assert isinstance(reruns["running"], Rerun)


def test_resumed_asha_cuts_at_the_percentile_of_the_seeded_rung():
    import numpy as np
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from ktg_search.search.resume import ResumableASHA
    values = {f"t{i}": v for i, v in enumerate([1.0, 2.0, 3.0, 4.0, 5.0])}
    sched = ResumableASHA(time_attr="epoch", max_t=8, grace_period=1, reduction_factor=2)
    sched.seed({tid: [(1, v), (2, v + 0.1)] for tid, v in values.items()})
    sched.set_search_properties("objective", "max")
    # rung 1 holds the five seeded values: the cutoff is their 50th percentile
    rung1 = dict((m, rec) for m, rec in sched._brackets[0]._rungs)[1]
    assert rung1 == values
    cutoff = np.nanpercentile(list(values.values()), 50)
    assert cutoff == pytest.approx(3.0)
    new = SimpleNamespace(trial_id="new")
    sched._trial_info["new"] = sched._brackets[0]
    assert sched.on_trial_result(None, new, {"epoch": 1, "objective": 2.5}) == \
        TrialScheduler.STOP
    new2 = SimpleNamespace(trial_id="new2")
    sched._trial_info["new2"] = sched._brackets[0]
    assert sched.on_trial_result(None, new2, {"epoch": 1, "objective": 3.5}) == \
        TrialScheduler.CONTINUE


def test_a_received_run_json_cannot_redirect_the_resume(tmp_path):
    from ktg_search.errors import KtgError
    from ktg_search.search.runinfo import resume_info as read_run_info
    from ktg_search.search.config import SearchConfig
    run = tmp_path / "copied-run"
    run.mkdir()
    base = {"name": "x", "config": SearchConfig.from_dict(TINY).to_dict(), "study_name": "x",
            "storage": "sqlite:////home/someone/runs/x/optuna.db",
            "tune_path": "/home/someone/runs/x"}
    (run / "run.json").write_text(json.dumps(base))
    info = read_run_info(run)  # a moved run: its own study and experiment, here
    assert info.tune_path == str(run) and info.storage == f"sqlite:///{run / 'optuna.db'}"
    for key, value in (("tune_path", "file:///elsewhere"), ("tune_path", "s3://b/x"),
                       ("storage", "postgresql://u@db/ktg"),
                       ("storage", "sqlite:////elsewhere/other.db"),
                       ("storage", "journal:/elsewhere/optuna.log")):
        (run / "run.json").write_text(json.dumps({**base, key: value}))
        with pytest.raises(KtgError, match="--allow-external-storage") as e:
            read_run_info(run)
        assert value in str(e.value)
        assert getattr(read_run_info(run, allow_external=True), key) == value


def test_a_trial_killed_half_sampled_is_completed_as_the_same_optuna_trial(tmp_path):
    from ktg_search.search.resume import plan_resume
    book = _book(tmp_path)
    s, storage = _searcher(tmp_path)
    study = optuna.load_study(study_name="s", storage=storage)
    half = study.ask()  # Optuna stores each suggestion at once: the driver died after one
    half.suggest_categorical("gate_D_0", ["through", "cutoff"])
    plan = plan_resume(storage, "s", ResultsBook(book.run_dir, book.cfg),
                       book.cfg.space, str(book.run_dir))
    assert len(plan.reruns) == 1 and plan.reruns[0].params is None
    s2, _ = _searcher(tmp_path, reruns=plan.reruns)
    config = s2.suggest("tune-1")
    assert config["gate_D_0"] == half.params["gate_D_0"] and "gate_1_0" in config
    assert "resume_of" not in config
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 1 and study.trials[0].user_attrs["trial_id"] == "tune-1"


def test_the_row_says_which_alpha_the_trial_trained_with(tmp_path):
    # a searched alpha comes from the trial's params; without one, the config's alpha
    book = _book(tmp_path, alphas=[100.0, 1000.0])
    row = book.on_complete("t1", {**_params(), "alpha": 100.0}, None, None)
    assert row["alpha"] == 100.0 and json.loads(row["graph"])["alpha"] == 100.0
    book = _book(tmp_path, alpha=30.0)
    row = book.on_complete("t2", _params(), None, None)
    assert row["alpha"] == 30.0
    assert row["graph_key"] != book.on_complete(
        "t3", {**_params(), "alpha": 31.0}, None, None)["graph_key"]
