"""`ktg compare --resume`: a killed or extended comparison keeps the runs it finished.

Tiny real trainings on CPU (no Ray: the resume rule is the same on both paths, the files
are written by the same `runs.train_one`). Each kept run is checked by its bytes, each
trained one by counting the calls of the real `train_one`; the table is recomputed from
the run files with `statistics`."""
from __future__ import annotations

import json
import shutil
import statistics

import pandas as pd
import pytest
import torch

import ktg_search.results.runs as runs
from ktg_search import cli
from ktg_search.errors import KtgError
from ktg_search.method.graph import Graph, resolve_graph
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.studies.compare import _Job, compare, same_run, settings_of

TINY = dict(dataset="digits", image_size=16, batch_size=32, epochs=1, device="cpu",
            eval_samples=100, max_iters_per_epoch=3, d_width=8, fid=False)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw})


@pytest.fixture
def counted(monkeypatch):
    """The real train_one, with the (graph name, seed) of every call recorded."""
    calls: list[tuple[str, int]] = []
    real = runs.train_one

    def train_one(graph, config, out, **kw):
        calls.append((graph.name, config.seed))
        return real(graph, config, out, **kw)
    monkeypatch.setattr(runs, "train_one", train_one)
    return calls


def best_is(out, label, seed) -> float:
    s = json.loads((out / label / f"seed{seed}" / "summary.json").read_text())
    return max(s["best_is"])


def test_resume_keeps_finished_runs_trains_the_rest_and_added_seeds(tmp_path, counted):
    out = tmp_path / "cmp"
    compare(["dcgan-sn"], cfg(), out, seeds=2, use_ray=False, progress=False)
    assert counted == [("dcgan-sn", 0), ("dcgan-sn", 1)]
    seed0 = (out / "dcgan-sn" / "seed0" / "summary.json").read_bytes()
    first_seed1 = best_is(out, "dcgan-sn", 1)
    # a run killed in flight: its folder lacks summary.json (written last)
    (out / "dcgan-sn" / "seed1" / "summary.json").unlink()
    counted.clear()
    result = compare(["dcgan-sn"], cfg(), out, seeds=3, use_ray=False, progress=False,
                     resume=True)
    assert counted == [("dcgan-sn", 1), ("dcgan-sn", 2)]       # seed 0 kept
    assert (out / "dcgan-sn" / "seed0" / "summary.json").read_bytes() == seed0
    # a run is deterministic per seed: the retrained seed 1 scores what the first did
    assert best_is(out, "dcgan-sn", 1) == pytest.approx(first_seed1, abs=1e-9)
    scores = [best_is(out, "dcgan-sn", s) for s in range(3)]
    row = pd.read_csv(out / "table.csv").iloc[0]
    assert row.seeds == 3 and result.table.iloc[0].seeds == 3
    assert row.is_mean == pytest.approx(statistics.fmean(scores))
    assert row.is_std == pytest.approx(statistics.stdev(scores))
    # everything finished: a second resume trains nothing
    counted.clear()
    compare(["dcgan-sn"], cfg(), out, seeds=3, use_ray=False, progress=False, resume=True)
    assert counted == []


def test_a_folder_written_before_a_setting_existed_still_resumes(tmp_path, counted):
    """compare.json and each run's recipe written before d_classes existed (the key
    absent) are the default's runs: kept, not refused; the other value is refused."""
    out = tmp_path / "cmp"
    compare(["mad-gan-2"], cfg(), out, seeds=1, use_ray=False, progress=False)
    for f, key in ((out / "compare.json", "config"),
                   (out / "mad-gan-2" / "seed0" / "summary.json", "recipe")):
        d = json.loads(f.read_text())
        assert d[key].pop("d_classes") == "generators"
        f.write_text(json.dumps(d))
    kept = (out / "mad-gan-2" / "seed0" / "summary.json").read_bytes()
    counted.clear()
    compare(["mad-gan-2"], cfg(), out, seeds=1, use_ray=False, progress=False, resume=True)
    assert counted == []
    assert (out / "mad-gan-2" / "seed0" / "summary.json").read_bytes() == kept
    with pytest.raises(KtgError, match="d_classes"):
        compare(["mad-gan-2"], cfg(d_classes="fake"), out, seeds=1, use_ray=False,
                progress=False, resume=True)


def test_resume_refuses_other_settings_and_force_retrains(tmp_path, counted):
    out = tmp_path / "cmp"
    compare(["dcgan-sn"], cfg(), out, seeds=1, use_ray=False, progress=False)
    before = (out / "dcgan-sn" / "seed0" / "summary.json").read_bytes()
    counted.clear()
    with pytest.raises(KtgError, match=r"other settings \(.*epochs.*\).*--force"):
        compare(["dcgan-sn"], cfg(epochs=2), out, seeds=1, use_ray=False, progress=False,
                resume=True)
    assert counted == [] and \
        (out / "dcgan-sn" / "seed0" / "summary.json").read_bytes() == before
    compare(["dcgan-sn"], cfg(epochs=2), out, seeds=1, use_ray=False, progress=False,
            resume=True, force=True)
    assert counted == [("dcgan-sn", 0)]
    assert json.loads((out / "dcgan-sn" / "seed0" / "summary.json").read_text())["epochs"] == 2
    assert json.loads((out / "compare.json").read_text()) == settings_of(cfg(epochs=2))


def test_a_folder_without_settings_is_not_resumed_without_force(tmp_path, capsys):
    out = tmp_path / "cmp"
    compare(["dcgan-sn"], cfg(), out, seeds=1, use_ray=False, progress=False)
    (out / "compare.json").unlink()                # as ktg compare wrote it before --resume
    code = cli.main(["compare", "dcgan-sn", "--resume", "--no-ray", "--seeds", "1",
                     "--dataset", "digits", "--epochs", "1", "--batch-size", "32",
                     "--d-width", "8", "--eval-samples", "100", "--no-fid",
                     "--max-iters-per-epoch", "3", "--device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "compare.json" in err and "--force" in err and "Traceback" not in err


def test_same_run_names_what_differs(tmp_path):
    out = tmp_path / "cmp"
    compare(["dcgan-sn"], cfg(), out, seeds=1, use_ray=False, progress=False)
    run = out / "dcgan-sn" / "seed0"
    graph = resolve_graph("dcgan-sn")
    assert same_run(_Job("dcgan-sn", graph, 0, run), cfg(), {}) is None
    assert "seed 0, not 1" in same_run(_Job("dcgan-sn", graph, 1, run), cfg(), {})
    other = Graph.from_dict({**graph.to_dict(), "discriminator": "bn"})
    assert same_run(_Job("dcgan-sn", other, 0, run), cfg(), {}) == "another graph"
    assert same_run(_Job("dcgan-sn", graph, 0, run), cfg(lr_g=0.001), {}) == \
        "another recipe (lr_g)"
    # the graph's name and description are not its training: a renamed file is the same run
    renamed = Graph.from_dict({**graph.to_dict(), "name": "x", "description": "y"})
    assert same_run(_Job("dcgan-sn", renamed, 0, run), cfg(), {}) is None


def test_a_teacher_of_other_bytes_is_another_run(tmp_path, counted):
    teacher = tmp_path / "t.pt"
    assert cli.main(["pretrain", "--model", "dcgan-medium", "--epochs", "1", "-o",
                     str(teacher), "--dataset", "digits", "--batch-size", "32",
                     "--eval-samples", "100", "--max-iters-per-epoch", "3",
                     "--device", "cpu"]) == 0
    out = tmp_path / "cmp"
    compare(["kd-mse"], cfg(), out, seeds=1, teacher=teacher, use_ray=False,
            progress=False)
    summary = json.loads((out / "kd-mse" / "seed0" / "summary.json").read_text())
    import hashlib
    assert summary["teachers"] == {"0": hashlib.sha256(teacher.read_bytes()).hexdigest()}
    # the same teacher at another path is the same run
    moved = tmp_path / "moved.pt"
    shutil.copy(teacher, moved)
    counted.clear()
    compare(["kd-mse"], cfg(), out, seeds=1, teacher=moved, use_ray=False, progress=False,
            resume=True)
    assert counted == []
    # other bytes: refused, named
    ckpt = torch.load(teacher, weights_only=False)
    g = ckpt["generator"]
    key = next(iter(g))
    g[key] = g[key] + 1.0
    torch.save(ckpt, moved)
    with pytest.raises(KtgError, match="another teacher checkpoint"):
        compare(["kd-mse"], cfg(), out, seeds=1, teacher=moved, use_ray=False,
                progress=False, resume=True)
    assert counted == []


def test_an_interrupted_compare_keeps_its_finished_runs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cmp"
    real = runs.train_one
    calls = []

    def interrupted(graph, config, out_dir, **kw):
        calls.append(config.seed)
        if len(calls) == 2:        # Ctrl-C in the second run, after it wrote a file
            out_dir.mkdir(parents=True)
            (out_dir / "metrics.csv").write_text("epoch\n1\n")
            raise KeyboardInterrupt
        return real(graph, config, out_dir, **kw)
    monkeypatch.setattr(runs, "train_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare(["dcgan-sn"], cfg(), out, seeds=3, use_ray=False, progress=False)
    assert (out / "dcgan-sn" / "seed0" / "summary.json").is_file()
    assert not (out / "dcgan-sn" / "seed1").exists()
    assert "1 of 3 runs finished and are kept" in capsys.readouterr().err
    assert not (out / "table.md").exists()
    calls.clear()
    monkeypatch.setattr(runs, "train_one", lambda *a, **kw: (calls.append(a[1].seed),
                                                             real(*a, **kw))[1])
    compare(["dcgan-sn"], cfg(), out, seeds=3, use_ray=False, progress=False, resume=True)
    assert calls == [1, 2] and (out / "table.md").is_file()


@pytest.mark.parametrize("ray", [False, True], ids=["no-ray", "ray"])
def test_sigkill_after_a_run_then_resume_trains_only_the_rest(tmp_path, ray):
    """SIGKILL at the named point right after a run's folder is written (polling for files
    would race: a tiny run can end between two polls); then `--resume` keeps that run
    byte for byte and trains the rest."""
    import os
    import signal
    import subprocess
    import sys
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "ktg_search.cli", "compare", "dcgan-sn", "--seeds", "3",
            "--dataset", "digits", "--epochs", "1", "--batch-size", "32", "--d-width", "8",
            "--eval-samples", "100", "--no-fid", "--max-iters-per-epoch", "3",
            "--device", "cpu", "-o", str(out), *([] if ray else ["--no-ray"])]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env={**env, "KTG_FAILPOINT": "compare-run:1"})
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    done = {s.parent: s.read_bytes() for s in out.glob("dcgan-sn/seed*/summary.json")}
    assert len(done) >= 1, p.stderr[-2000:]   # on Ray a second may have landed too
    r = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(done)} of 3 runs kept" in r.stderr and f"{3 - len(done)} to train" in r.stderr
    for run, summary in done.items():
        assert (run / "summary.json").read_bytes() == summary
    df = pd.read_csv(out / "table.csv")
    scores = [best_is(out, "dcgan-sn", s) for s in range(3)]
    assert df.seeds[0] == 3 and df.is_mean[0] == pytest.approx(statistics.fmean(scores))
