"""`ktg compress`: the KD paper's compression study, tiny real trainings on CPU.

The table's numbers are checked against values computed here independently: parameter
counts of freshly built generators (and of the teacher's checkpoint tensors), IS / FID /
VoL read from each run's metrics.csv with `statistics`; the schemes are checked on the
graphs the runs trained; resuming is checked on the files' modification times."""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ktg_search import cli
from ktg_search.method.graph import Graph
from ktg_search.method.models import count_parameters
from ktg_search.registry import GENERATORS
from ktg_search.studies.compress import compress, parse_widths
from ktg_search.method.trainconfig import TrainConfig

torch.set_num_threads(2)

TINY = dict(dataset="digits", image_size=16, batch_size=32, epochs=1, device="cpu",
            eval_samples=40, max_iters_per_epoch=2, fid=False, d_width=8)
TINY_ARGS = ["--dataset", "digits", "--image-size", "16", "--batch-size", "32", "--device",
             "cpu", "--eval-samples", "40", "--max-iters-per-epoch", "2", "--no-fid",
             "--d-width", "8", "--epochs", "1"]
WIDTHS = [2, 1]


def ktg(argv: list[str]) -> int:
    return cli.main(argv)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A dcgan-w8 teacher made by `ktg pretrain` (one short epoch)."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    assert ktg(["pretrain", "--model", "dcgan-w8", "-o", str(path), *TINY_ARGS]) == 0
    return path


@pytest.fixture(scope="module")
def study(teacher, tmp_path_factory):
    """widths 2 and 1, the three schemes, one seed: 6 runs, one after the other."""
    out = tmp_path_factory.mktemp("compress") / "out"
    argv = ["compress", "--teacher", str(teacher), "--widths", ",".join(map(str, WIDTHS)),
            "--seeds", "1", "--no-ray", "-o", str(out), *TINY_ARGS]
    assert ktg(argv) == 0
    return out, argv


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def best_row(rows: list[dict], node: int) -> dict:
    """The first epoch of the highest IS of generator `node`, written out here."""
    vals = [float(r[f"is_g{node}"]) for r in rows]
    return rows[vals.index(max(vals))]


# ---- the table --------------------------------------------------------------------------
def test_table_against_independent_parameter_counts_and_run_files(study, teacher):
    out, _ = study
    df = pd.read_csv(out / "table.csv")
    ckpt = torch.load(teacher, weights_only=True)
    # the teacher's parameters from its checkpoint's tensors (batch-norm statistics are
    # buffers, not parameters), and from a freshly built generator of its model
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    teacher_params = sum(t.numel() for k, t in ckpt["generator"].items()
                         if not k.endswith(buffers))
    built_teacher = count_parameters(GENERATORS.get("dcgan-w8")(16, 1, 100))
    assert teacher_params == built_teacher
    assert df.loc[df.scheme == "teacher", "params"].item() == built_teacher
    teacher_vol = json.loads((out / "teacher.json").read_text())["vol"]
    assert len(df) == 1 + 3 * len(WIDTHS)
    for d in WIDTHS:
        student = count_parameters(GENERATORS.get(f"dcgan-w{d}")(16, 1, 100))
        for scheme in ("mse", "joint", "gan"):
            row = df[(df.scheme == scheme) & (df.width == d)].iloc[0]
            assert row.params == student
            assert row.compression == pytest.approx(built_teacher / student)
            node = 0 if scheme == "gan" else 1
            rows = metrics(out / f"{scheme}-w{d}" / "seed0")
            best = best_row(rows, node)
            assert row.is_mean == pytest.approx(float(best[f"is_g{node}"]))
            assert row.vol_ratio_mean == pytest.approx(float(best[f"vol_g{node}"]) /
                                                       teacher_vol)
            assert row.seeds == 1 and row.is_std == 0
            if node == 1:  # the frozen teacher in a kd run: the same VoL, same z
                assert float(best["vol_g0"]) == pytest.approx(teacher_vol, rel=1e-6)
    md = (out / "table.md").read_text()
    assert f"{built_teacher / count_parameters(GENERATORS.get('dcgan-w1')(16, 1, 100)):.1f}:1" \
        in md


def test_the_three_schemes_are_the_papers(study, teacher):
    out, _ = study
    for d in WIDTHS:
        mse, joint, gan = (Graph.load(out / f"{s}-w{d}" / "seed0" / "graph.json")
                           for s in ("mse", "joint", "gan"))
        assert gan.k == 1 and gan.nodes[0].model == f"dcgan-w{d}"
        assert not gan.nodes[0].pretrained and gan.gate("D", 0) == "through"
        for g, d_gate in ((mse, "cutoff"), (joint, "through")):
            assert [n.model for n in g.nodes] == ["dcgan-w8", f"dcgan-w{d}"]
            assert g.frozen_nodes() == [0] and g.transfer == "pixel_mse"
            assert g.gate(0, 1) == "through" and g.gate("D", 1) == d_gate
            assert Path(g.nodes[0].pretrained).resolve() == teacher.resolve()
        summary = json.loads((out / f"mse-w{d}" / "seed0" / "summary.json").read_text())
        assert summary["frozen"] == [0]


def test_figure_and_sample_grids_are_pngs(study):
    from PIL import Image
    out, _ = study
    for name in ["fig1.png"] + [f"samples_w{d}.png" for d in WIDTHS]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = Image.open(out / name).size
        assert w > 200 and h > 100
    # one row per scheme and the teacher: the grid for 4 rows is taller than for 2
    assert Image.open(out / "samples_w2.png").size[1] > 3 * 16


# ---- resuming ------------------------------------------------------------------------------
def test_rerun_resumes_only_the_missing_run(study, capsys):
    out, argv = study
    runs = sorted(out.glob("*-w*/seed0"))
    assert len(runs) == 6
    before = {r: (r / "summary.json").stat().st_mtime_ns for r in runs}
    victim = out / "joint-w1" / "seed0"
    (victim / "summary.json").unlink()             # killed before its summary was written
    (out / "gan-w2" / ".run-killed").mkdir()       # a sequential run's temporary folder
    time.sleep(0.05)
    assert ktg(argv) == 0
    printed = capsys.readouterr().out
    assert "1 run(s) trained, 5 resumed from earlier" in printed
    for r in runs:
        if r == victim:
            assert (r / "summary.json").is_file()
        else:
            assert (r / "summary.json").stat().st_mtime_ns == before[r], r
    assert not (out / "gan-w2" / ".run-killed").exists()
    df = pd.read_csv(out / "table.csv")
    assert len(df) == 7 and df.is_mean.notna().all()


def test_other_settings_are_refused_without_force(study, capsys):
    out, argv = study
    stamp = (out / "table.csv").stat().st_mtime_ns
    i = argv.index("--seeds")
    other = argv[:i + 1] + ["2"] + argv[i + 2:]
    assert ktg(other) == 2
    err = capsys.readouterr().err
    assert "other settings (seeds differ)" in err and "--force" in err
    assert (out / "table.csv").stat().st_mtime_ns == stamp


# ---- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", ["3", "16,x", "8,8"])
def test_unknown_width_is_one_message(widths, teacher, tmp_path, capsys):
    out = tmp_path / "o"
    assert ktg(["compress", "--teacher", str(teacher), "--widths", widths, "-o", str(out),
                "--no-ray", *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--widths" in err and not out.exists()


def test_missing_teacher_is_one_message(tmp_path, capsys):
    out = tmp_path / "o"
    assert ktg(["compress", "--teacher", str(tmp_path / "nope.pt"), "-o", str(out),
                "--no-ray", *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt" in err and "ktg pretrain" in err
    assert not out.exists()


def test_teacher_of_another_data_set_or_size_is_refused(teacher, tmp_path, capsys):
    ckpt = torch.load(teacher, weights_only=True)
    ckpt["dataset"] = "mnist"
    other = tmp_path / "mnist-teacher.pt"
    torch.save(ckpt, other)
    out = tmp_path / "o"
    assert ktg(["compress", "--teacher", str(other), "-o", str(out), "--no-ray",
                *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert "dataset='mnist'" in err and "dataset='digits'" in err and not out.exists()
    args = [a if a != "16" else "32" for a in TINY_ARGS]  # --image-size 32
    assert ktg(["compress", "--teacher", str(teacher), "-o", str(out), "--no-ray",
                *args]) == 2
    err = capsys.readouterr().err
    assert "image_size=16" in err and "image_size=32" in err and not out.exists()


def test_parse_widths():
    assert parse_widths("16, 8,4,2") == [16, 8, 4, 2]


# ---- slower: Ray, two seeds, a real kill -------------------------------------------------------
@pytest.mark.slow
def test_ray_runs_two_seeds_and_the_std_is_over_the_seeds(ray_session, teacher, tmp_path):
    out = tmp_path / "ray"
    res = compress(teacher, TrainConfig(**TINY), out, [1], seeds=2, schemes=["mse", "gan"],
                   use_ray=True, progress=False)
    assert res["trained"] == 4
    df = pd.read_csv(out / "table.csv")
    for scheme, node in (("mse", 1), ("gan", 0)):
        vals = [float(best_row(metrics(out / f"{scheme}-w1" / f"seed{s}"), node)
                      [f"is_g{node}"]) for s in (0, 1)]
        row = df[df.scheme == scheme].iloc[0]
        assert row.is_mean == pytest.approx(statistics.fmean(vals))
        assert row.is_std == pytest.approx(statistics.stdev(vals))


@pytest.mark.slow
def test_sigkill_mid_study_then_rerun_trains_only_what_is_missing(teacher, tmp_path):
    import signal
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "ktg_search.cli", "compress", "--teacher", str(teacher),
            "--widths", "2,1", "--schemes", "mse,gan", "--seeds", "1", "--no-ray",
            "-o", str(out), *TINY_ARGS]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    # killed right after its second run is written (a named point: polling for files
    # raced, since a tiny run can end between two polls and the study with it)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env={**env, "KTG_FAILPOINT": "compress-run:2"})
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    done = {s.parent: s.stat().st_mtime_ns for s in out.glob("*-w*/seed0/summary.json")}
    assert len(done) == 2
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{4 - len(done)} run(s) trained, {len(done)} resumed" in r.stdout
    for run, stamp in done.items():
        assert (run / "summary.json").stat().st_mtime_ns == stamp
    df = pd.read_csv(out / "table.csv")
    assert len(df) == 5 and all(math.isfinite(v) for v in df.is_mean)


# ---- VoL ratio in `ktg train`'s table --------------------------------------------------------
def test_train_table_shows_the_students_vol_over_the_teachers(study):
    from ktg_search.results.runs import RunSummary, seed_table
    out, _ = study
    run = out / "joint-w2" / "seed0"
    summary = RunSummary(**json.loads((run / "summary.json").read_text()))
    rows = metrics(run)
    best = best_row(rows, 1)
    ratio = float(best["vol_g1"]) / float(best_row(rows, 0)["vol_g0"])
    table = seed_table(Graph.load(run / "graph.json"), [summary])
    student = [ln for ln in table.splitlines() if ln.startswith("| G1 ")][0]
    assert f"({ratio:.3f} +- 0.000 of the teacher's)" in student
    teacher_line = [ln for ln in table.splitlines() if ln.startswith("| G0 ")][0]
    assert "of the teacher's" not in teacher_line
    gan = RunSummary(**json.loads((out / "gan-w2" / "seed0" / "summary.json").read_text()))
    assert "of the teacher's" not in seed_table(Graph.load(out / "gan-w2" / "seed0" /
                                                           "graph.json"), [gan])


def test_pretrain_takes_a_presets_recipe_under_the_flags(tmp_path, capsys):
    """`ktg pretrain --preset digits`: the teacher trains with the preset's recipe (read
    here from the preset file itself), the flags given still win."""
    preset = json.loads((Path(__file__).resolve().parents[1] / "ktg_search" / "search"
                         / "presets" / "digits.json").read_text())["train"]
    path = tmp_path / "t.pt"
    assert ktg(["pretrain", "--model", "dcgan-w8", "--preset", "digits", "-o", str(path),
                *TINY_ARGS]) == 0
    assert "recipe: preset digits; flags override:" in capsys.readouterr().out
    cfg = torch.load(path, map_location="cpu", weights_only=True)["config"]
    given = {"d_width": 8, "epochs": 1, "eval_samples": 40, "fid": False}
    for key in ("d_loss_weighting", "discriminator", "lr_g", "lr_d", "beta1", "beta2",
                "ema_decay", "ema_start", "transfer_scale"):
        assert cfg[key] == preset[key], key
    for key, value in given.items():
        assert cfg[key] == value and preset[key] != value, key
    assert ktg(["pretrain", "--model", "dcgan-w8", "--preset", "nope", "-o",
                str(tmp_path / "u.pt"), *TINY_ARGS]) == 2
    assert "--preset 'nope' is unknown; valid: " in capsys.readouterr().err
    assert not (tmp_path / "u.pt").exists()


def _row(scheme, width, comp, is_, is_sd, vol=float("nan"), vol_sd=float("nan")):
    return {"scheme": scheme, "width": width, "params": round(1000 / comp),
            "compression": comp, "is_mean": is_, "is_std": is_sd, "fid_mean": 1.0,
            "fid_std": 0.1, "vol_ratio_mean": vol, "vol_ratio_std": vol_sd}


def test_the_studys_answers_from_hand_made_rows():
    """The three answers on rows whose figures are worked out by hand: the 80% crossing
    linear in log(ratio), the pooled-std verdicts of students against the GAN and of joint
    against MSE by VoL."""
    from ktg_search.studies.compress_table import answers, keep_point
    rows = [_row("teacher", 64, 1.0, 10.0, float("nan"), 1.0),
            _row("mse", 16, 10.0, 9.0, 0.1, 0.90, 0.01),
            _row("joint", 16, 10.0, 9.5, 0.0, 0.95, 0.02),
            _row("gan", 16, 10.0, 8.0, 0.3),
            _row("mse", 8, 100.0, 8.5, 0.1, 0.90, 0.01),
            _row("joint", 8, 100.0, 7.5, 0.0, 0.91, 0.02),
            _row("gan", 8, 100.0, 8.4, 0.3),
            _row("mse", 4, 1000.0, 6.0, 0.1),
            _row("gan", 4, 1000.0, 6.2, 0.0)]
    # mse keeps 8.0 = 0.8 * 10 at 100:1 (8.5), not at 1000:1 (6.0):
    # log10 r = 2 + (8 - 8.5) / (6 - 8.5) = 2.2; joint: 1 + (8 - 9.5) / (7.5 - 9.5) = 1.75
    mse, joint = keep_point(rows, "mse"), keep_point(rows, "joint")
    assert mse["crossing"] == pytest.approx(10 ** 2.2, rel=1e-9)
    assert joint["crossing"] == pytest.approx(10 ** 1.75, rel=1e-9)
    assert (mse["last_kept"][2], mse["first_lost"][2]) == (8, 4)
    said = answers(rows)
    assert len(said) == 4
    assert "mse up to 100:1 (d=8, 85%), below at 1,000:1 (d=4, 60%); crossing ~158:1" in said[0]
    assert "joint up to 10:1 (d=16, 95%), below at 100:1 (d=8, 75%); crossing ~56:1" in said[0]
    # mse - gan: 1 / hypot(.1, .3) = 3.16; 0.1 / 0.316 = 0.32; -0.2 / 0.1 = -2
    assert "at 1 of 3 widths (in pooled std: d=16 +3.2, d=8 +0.3, d=4 -2.0)" in said[1]
    # joint - gan: 1.5 / 0.3 = 5; -0.9 / 0.3 = -3 (no joint at d=4)
    assert "at 1 of 2 widths (in pooled std: d=16 +5.0, d=8 -3.0)" in said[2]
    # joint - mse VoL ratio: 0.05 / hypot(.01, .02) = 2.24; 0.01 / 0.0224 = 0.45
    assert "at 1 of 2 widths (joint - mse, in std: d=16 +0.050 (+2.2), d=8 +0.010 (+0.4))" \
        in said[3]
    # every ratio kept, and none kept: the point lies outside the study
    high = [dict(r, is_mean=9.0) if r["scheme"] == "mse" else r for r in rows]
    assert keep_point(high, "mse")["crossing"] is None
    assert "mse at every ratio measured, up to 1,000:1" in answers(high)[0]
    low = [dict(r, is_mean=5.0) if r["scheme"] == "mse" else r for r in rows]
    assert keep_point(low, "mse")["last_kept"] is None
    assert "mse at no ratio measured: below already at 10:1" in answers(low)[0]


def test_a_frozen_teacher_is_scored_once_and_the_same_as_scored_anew(teacher):
    from ktg_search.method.training import Trainer
    from ktg_search.studies.compress import student_graph
    graph = student_graph("joint", 2, "dcgan-w8", str(teacher))   # G0 frozen, G1 learns
    trainer = Trainer(graph, TrainConfig(**{**TINY, "fid": True, "eval_samples": 60}))
    first = trainer.evaluate()
    calls = []
    hook = trainer.generators[0].register_forward_hook(lambda *a: calls.append(1))
    cached = trainer.evaluate()
    assert calls == []                   # the teacher drew no image the second time
    trainer._frozen_scores.clear()       # scored anew: the same numbers, to the last bit
    anew = trainer.evaluate()
    hook.remove()
    assert calls and cached == first == anew
    assert set(first) >= {"is_g0", "fid_g0", "vol_g0", "is_g1", "fid_g1", "vol_g1"}
    # another sample count is scored on its own, not read from the first one's
    trainer.evaluate(num_samples=30)
    assert sorted(trainer._frozen_scores) == [(0, 30), (0, 60)]


def test_a_study_written_before_a_setting_existed_still_resumes(tmp_path):
    """compress.json whose recipe lacks a setting added since (d_classes): the default's
    study, resumed; the same file with the other value is refused, naming the key."""
    from ktg_search.errors import KtgError
    from ktg_search.method.trainconfig import recipe_of
    from ktg_search.studies.compress import SETTINGS, open_output
    settings = {"kind": "ktg compress", "teacher_sha256": "ab" * 32, "schemes": ["mse"],
                "widths": [4], "seeds": 1, "seed0": 0, "recipe": recipe_of(TrainConfig())}
    old = json.loads(json.dumps(settings))
    assert old["recipe"].pop("d_classes") == "generators"
    out = tmp_path / "study"
    out.mkdir()
    (out / SETTINGS).write_text(json.dumps(old))
    assert open_output(out, settings, force=False) == (out, True)
    other = {**settings, "recipe": recipe_of(TrainConfig(d_classes="fake"))}
    with pytest.raises(KtgError, match="d_classes"):
        open_output(out, other, force=False)
