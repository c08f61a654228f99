"""A real search on a real local Ray: OptunaSearch + ASHA, duplicates, the results table,
query and export, and resume after a SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from ktg_search.cli import main
from ktg_search.method.graph import Graph
from ktg_search.results.book import load_history, load_results
from ktg_search.search.config import SearchConfig, load_preset
from ktg_search.search.driver import run_search
from shared_files import assert_rows_kept, stray_checkpoints

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2, gates=["through", "cutoff"],
            num_trials=16, max_epochs=3, grace_period=1, reduction_factor=2,
            eval_samples=100, max_iters_per_epoch=4, fid=True, d_width=16, seed=3,
            objective="best",  # the default rule (the quick preset's is the weakest)
            baselines=False)   # counts trials; test_baselines.py has searches with them


def _search(spec: dict, name: str, tmp_path_factory):
    cfg = SearchConfig.from_dict({**spec, "preset": "quick"})
    return run_search(cfg, name=name, storage_path=str(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="module")
def tiny_run(ray_session, tmp_path_factory):
    return _search(TINY, "tiny", tmp_path_factory)


def test_every_trial_is_one_row_with_the_documented_columns(tiny_run):
    df = load_results(tiny_run)
    assert len(df) == TINY["num_trials"] and df.trial_id.is_unique
    for col in ["trial_id", "status", "graph", "graph_key", "n_generators", "transfer",
                "alpha", "model_0", "model_1", "gate_D_0", "gate_D_1", "gate_0_1", "gate_1_0",
                "objective", "best_epoch", "epochs", "is_best_g0", "is_best_g1", "fid_g0",
                "fid_g1", "is_mix_best", "seed", "wall_s", "error"]:
        assert col in df.columns, col
    assert set(df.status) <= {"completed", "stopped", "diverged", "error", "duplicate",
                              "untrainable", "skipped"}
    assert (df.status == "completed").any()
    # the objective is the best IS reached by the best generator, from the history
    hist = load_history(tiny_run)
    for _, r in df[df.status.isin(["completed", "stopped"])].iterrows():
        h = hist[hist.trial_id == r.trial_id]
        best = h[["is_g0", "is_g1"]].max(axis=1).max()
        assert r.objective == pytest.approx(best)
        assert r.epochs == h.epoch.max()
        assert r.is_best_g0 == pytest.approx(h.is_g0.max())
        assert r.is_mix_best == pytest.approx(h.is_mix.max())  # both generators learn
    # completed trials ran max_epochs; stopped ones fewer (ASHA stops at least one of the
    # trials that reach a rung below the median of those before them)
    assert (df[df.status == "completed"].epochs == TINY["max_epochs"]).all()
    stopped = df[df.status == "stopped"]
    assert len(stopped) >= 1
    assert (stopped.epochs < TINY["max_epochs"]).all()


def test_no_trial_trains_an_untrainable_graph(tiny_run):
    """Issue 27: a graph the rule calls untrainable is recorded at once, 0 epochs, with
    its reason, and `--where` finds it; every other graph is trained."""
    from ktg_search.method.trainability import untrainable_reason
    from ktg_search.results.where import filter_rows
    df = load_results(tiny_run)
    for _, r in df.iterrows():
        reason = untrainable_reason(Graph.from_json(r.graph))
        assert (r.status == "untrainable") == (reason is not None), (r.status, reason)
        if reason is not None:
            assert r.epochs == 0 and r.error == reason
    # the seed samples some (half the space: per node 3 of 4 ways, 3^2 - 1 of 16)
    assert (df.status == "untrainable").any()
    picked = filter_rows(df, "status == 'untrainable'")
    assert list(picked.trial_id) == list(df[df.status == "untrainable"].trial_id)


def test_graph_column_rebuilds_the_sampled_graph(tiny_run):
    df = load_results(tiny_run)
    edges = Graph.edge_list(2)
    assert len(edges) == 2 * 2, edges  # D -> 0, D -> 1, 0 -> 1, 1 -> 0
    sampled = df[df.status != "skipped"]
    assert len(sampled) > 0, "no sampled trial to rebuild"
    for _, r in sampled.iterrows():
        g = Graph.from_json(r.graph)
        assert g.canonical_key() == r.graph_key
        for s, t in edges:
            assert g.gate(s, t) == r[f"gate_{s}_{t}"]


# a space of two graphs (k = 1: the one D -> 0 edge, through or linear_up) and three
# trials: by pigeonhole at least one trial samples a graph already sampled
SMALL_SPACE = dict(TINY, k=1, gates=["through", "linear_up"], num_trials=3, max_epochs=1)


@pytest.fixture(scope="module")
def small_space_run(ray_session, tmp_path_factory):
    return _search(SMALL_SPACE, "small-space", tmp_path_factory)


def test_duplicates_point_at_an_original_with_the_same_key(small_space_run):
    df = load_results(small_space_run)
    assert len(df) == SMALL_SPACE["num_trials"]
    trained = df[~df.status.isin(["duplicate", "untrainable", "skipped"])]
    assert trained.graph_key.is_unique  # no graph was trained twice
    assert 1 <= len(trained) <= 2
    dups = df[df.status == "duplicate"]
    assert len(dups) == len(df) - len(trained) >= 1
    for _, r in dups.iterrows():
        orig = df[df.trial_id == r.duplicate_of].iloc[0]
        assert orig.graph_key == r.graph_key
        assert r.objective == pytest.approx(orig.objective, nan_ok=True)


def test_optuna_study_holds_every_trial(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["storage"].startswith("sqlite:///")
    study = optuna.load_study(study_name=info["study_name"], storage=info["storage"])
    assert len(study.trials) == TINY["num_trials"]
    gates = {p for t in study.trials for k, p in t.params.items() if k.startswith("gate_")}
    assert gates <= set(TINY["gates"])


def test_query_and_export_round_trip(tiny_run, tmp_path, capsys):
    df = load_results(tiny_run)
    assert main(["query", str(tiny_run), "--where", "status == 'completed'", "--format",
                 "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["trial_id"] for r in rows) == sorted(df[df.status == "completed"].trial_id)
    assert main(["query", str(tiny_run), "--sort", "objective", "--top", "3", "--format",
                 "csv", "--columns", "trial_id", "objective"]) == 0
    got = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    want = df.sort_values("objective", ascending=False).head(3)
    assert list(got.trial_id) == list(want.trial_id)
    assert main(["query", str(tiny_run), "--where", "nonexistent > 1"]) == 2
    assert "nonexistent" in capsys.readouterr().err
    out = tmp_path / "best.json"
    assert main(["export", str(tiny_run), "--rank", "1", "-o", str(out)]) == 0
    best = df[df.status != "duplicate"].sort_values("objective", ascending=False).iloc[0]
    assert Graph.load(out).canonical_key() == best.graph_key
    assert main(["export", str(tiny_run), "--rank", "999", "-o", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_space_size_and_presets():
    cfg = load_preset("quick")
    # 1 model, 4 gates on 9 edges, 1 transfer kind, 3 alphas
    assert cfg.space.size() == 1 ** 2 * 4 ** 9 * 1 * 3
    assert load_preset("paper-cifar10").train.epochs == 200
    with pytest.raises(Exception, match="unknown preset 'nope'.*quick"):
        load_preset("nope")
    with pytest.raises(Exception, match="reduction_factor"):
        cfg.with_overrides(["reduction_factor=1"])


@pytest.mark.slow
def test_resume_after_sigkill_loses_and_repeats_nothing(ray_session, tmp_path):
    """Kill the driver mid-search; --resume finishes it; finished trials keep their rows."""
    root = tmp_path / "runs"
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({**TINY, "num_trials": 6, "concurrency": 1, "seed": 11}))
    # the driver SIGKILLs itself once its second finished trial is in the tables (a named
    # point, failpoints.py: polling the tables raced with trials that end between polls)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "KTG_FAILPOINT": "tables-written:2"}
    cmd = [sys.executable, "-m", "ktg_search.cli", "search", "--config", str(conf),
           "--name", "r", "--storage-path", str(root)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    run = root / "r"
    try:
        p.communicate(timeout=300)
    finally:
        try:  # the driver is gone; so must be the Ray it started
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert p.returncode == -signal.SIGKILL
    before = load_results(run)
    assert len(before) == 2
    assert main(["search", "--resume", str(run)]) == 0
    after = load_results(run)
    assert len(after) == 6 and after.trial_id.is_unique
    assert_rows_kept(before, after)  # finished trials were not retrained


@pytest.mark.slow
def test_asha_can_count_images_seen_instead_of_epochs(ray_session, tmp_path):
    """time_unit = images: rungs are images seen (steps x batch), whatever an epoch is."""
    per_epoch = TINY["max_iters_per_epoch"] * TINY["batch_size"]  # 128 images
    cfg = SearchConfig.from_dict({**TINY, "preset": "quick", "time_unit": "images",
                                  "grace_period": per_epoch, "num_trials": 8, "seed": 9})
    run = run_search(cfg, name="img", storage_path=str(tmp_path))
    df, hist = load_results(run), load_history(run)
    trained = hist.trial_id.unique()
    assert len(trained) >= 3
    # the clock the trainable reports: images = steps x batch
    assert (hist.images == hist.iteration * TINY["batch_size"]).all()
    assert (hist.iteration == hist.epoch * TINY["max_iters_per_epoch"]).all()
    # stopped trials stopped exactly at a rung: 128 or 256 images (grace x 2^i)
    stopped = df[df.status == "stopped"]
    assert not stopped.empty
    for _, r in stopped.iterrows():
        last = hist[hist.trial_id == r.trial_id].images.max()
        assert last in (per_epoch, 2 * per_epoch)
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["time_unit"] == "images"


def test_a_search_leaves_no_checkpoint_scratch_behind(tiny_run):
    """Every epoch's checkpoint is written to a per-process scratch folder that Tune
    copies into the run; after the search none of this study's is left in the temp dir
    (trials ASHA stopped inside `report` used to leave one 8 MB folder per epoch)."""
    from ktg_search.search.workers import remove_scratch
    study = json.loads((tiny_run / "run.json").read_text())["study_name"]
    assert remove_scratch(study) == 0  # none was left to remove
    # nor any other folder holding one of this search's epoch checkpoints
    strays = stray_checkpoints(load_results(tiny_run).trial_id)
    assert strays == [], strays
    assert any(tiny_run.rglob("checkpoint_*/trainer.pt"))  # Tune's copies are in the run


def test_removing_scratch_takes_one_study_exactly(tmp_path, monkeypatch):
    import tempfile
    from ktg_search.search.workers import checkpoint_scratch, remove_scratch
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine, other = checkpoint_scratch("a"), tmp_path / "ktg-ckpt-a-b-123"
    other.mkdir()
    (mine / "trainer.pt").write_bytes(b"x")
    again = checkpoint_scratch("a")  # the next epoch: the same folder, emptied
    assert again == mine and list(mine.iterdir()) == []
    assert remove_scratch("a") == 1 and not mine.exists() and other.exists()
    assert remove_scratch("a-b") == 1 and not other.exists()
