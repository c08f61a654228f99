"""`ktg compare`, `ktg pretrain` and the distillation graphs: tiny real trainings on CPU.

The table is checked against numbers this file recomputes from the per-run files with
`statistics`, not with the code under test; the distillation claims are checked with eq. 5
written out here and with the teacher's tensors compared bit for bit."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch

import ktg_search.results.runs as runs
from ktg_search import cli
from ktg_search.studies.compare import compare
from ktg_search.results.runs import aggregate
from ktg_search.method.teachers import apply_teacher
from ktg_search.errors import KtgError
from ktg_search.method.graph import builtin_graphs, resolve_graph
from ktg_search.method.models import count_parameters
from ktg_search.registry import GENERATORS
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(2)

TINY = dict(dataset="digits", image_size=16, batch_size=32, epochs=1, device="cpu",
            eval_samples=200, max_iters_per_epoch=4, d_width=16)
TINY_ARGS = ["--dataset", "digits", "--image-size", "16", "--batch-size", "32",
             "--device", "cpu", "--eval-samples", "200", "--max-iters-per-epoch", "4"]


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **kw})


def ktg(argv: list[str]) -> int:
    return cli.main(argv)


def params_of(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A dcgan-medium teacher made by `ktg pretrain` (tiny: one short epoch)."""
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    assert ktg(["pretrain", "--model", "dcgan-medium", "--epochs", "1", "-o", str(path),
                *TINY_ARGS[:-1], "8"]) == 0
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["model"] == "dcgan-medium" and ckpt["config"]["image_size"] == 16
    return path


# ---- 1. every built-in graph trains ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(builtin_graphs()))
def test_every_builtin_graph_trains_one_epoch(name, digits16, evaluator16, request):
    g = resolve_graph(name)
    if any(n.pretrained for n in g.nodes):
        g = apply_teacher(g, request.getfixturevalue("teacher"))
    t = Trainer(g, cfg(max_iters_per_epoch=2), data=digits16, evaluator=evaluator16)
    before = [params_of(x) for x in t.generators]
    row = t.run_epoch()
    assert row["status"] == "completed" and t.iteration == 2
    assert t.frozen == set(g.frozen_nodes())
    for i in range(g.k):
        assert math.isfinite(row[f"is_g{i}"]) and row[f"is_g{i}"] >= 1.0 - 1e-4
        assert math.isfinite(row[f"fid_g{i}"])
        changed = any(not torch.equal(a, b) for a, b in
                      zip(before[i], t.generators[i].parameters()))
        assert changed == (i in g.learning_nodes()), (i, g.learning_nodes())


def test_kd_graphs_are_the_papers_two_schemes():
    for name, d_gate in (("kd-mse", "cutoff"), ("kd-joint", "through")):
        g = resolve_graph(name)
        assert g.transfer == "pixel_mse" and g.frozen_nodes() == [0]
        assert g.learning_nodes() == [1]
        assert g.gate(0, 1) == "through" and g.gate("D", 1) == d_gate
        assert "--teacher" in g.description and "pixel MSE" in g.description
        teacher, student = (count_parameters(GENERATORS.get(n.model)(16, 1, 100))
                            for n in g.nodes)
        assert teacher > 2 * student  # a compression, not a copy
    # eq. 4 at the paper's best CelebA a = 0.0001: transfer weight (1 - a) / a
    assert resolve_graph("kd-joint").alpha == pytest.approx((1 - 1e-4) / 1e-4)


# ---- 2. the table equals the per-run files -----------------------------------------------
def rows_of(run_dir: Path) -> tuple[list[dict], dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((run_dir / "summary.json").read_text())


def recompute(run_dir: Path, eval_at: str) -> tuple[float, float, list[float], float]:
    """(IS, FID) of the run's best learning generator, every generator's IS and the
    mixture's IS, from metrics.csv alone."""
    rows, summary = rows_of(run_dir)
    k = len(summary["params"])
    nodes = [i for i in range(k) if i not in summary["frozen"]]
    per_node = []
    for i in range(k):
        pts = [(float(r[f"is_g{i}"]), float(r[f"fid_g{i}"])) for r in rows]
        per_node.append(max(pts, key=lambda p: p[0]) if eval_at == "best" else pts[-1])
    best = max(nodes, key=lambda i: per_node[i][0])
    # the mixture of the learning generators at its own best / last epoch; one learner
    # is its own mixture
    mix = ([float(r["is_mix"]) for r in rows] if len(nodes) > 1 else
           [float(r[f"is_g{nodes[0]}"]) for r in rows])
    mix_at = max(mix) if eval_at == "best" else mix[-1]
    return per_node[best][0], per_node[best][1], [p[0] for p in per_node], mix_at


def check_table(df: pd.DataFrame, run_dirs: dict[str, list[Path]], eval_at: str) -> None:
    assert list(df.graph) == list(run_dirs)
    for label, dirs in run_dirs.items():
        r = df[df.graph == label].iloc[0]
        scores = [recompute(d, eval_at) for d in dirs]
        is_, fid = [s[0] for s in scores], [s[1] for s in scores]
        assert r.seeds == len(dirs) and r.eval_at == eval_at
        assert r.is_mean == pytest.approx(statistics.fmean(is_))
        assert r.fid_mean == pytest.approx(statistics.fmean(fid))
        if len(dirs) > 1:
            assert r.is_std == pytest.approx(statistics.stdev(is_))
            assert r.fid_std == pytest.approx(statistics.stdev(fid))
        assert int(r.k) == len(scores[0][2]), (label, r.k)  # k as the run files say
        for i in range(int(r.k)):
            assert r[f"is_g{i}"] == pytest.approx(statistics.fmean(s[2][i] for s in scores))
        assert r.is_mix_mean == pytest.approx(statistics.fmean(s[3] for s in scores))


@pytest.fixture(scope="module")
def compared(ray_session, tmp_path_factory):
    """2 graphs x 2 seeds, 2 epochs each, as Ray tasks on the session's local Ray."""
    out = tmp_path_factory.mktemp("compare") / "out"
    return compare(["dcgan-sn", "mad-gan-2"], cfg(epochs=2), out, seeds=2, eval_at="best",
                   use_ray=True, progress=False)


def test_compare_table_equals_statistics_of_the_run_files(compared):
    out, df = compared.out, compared.table
    assert set(compared.run_dirs) == {"dcgan-sn", "mad-gan-2"}
    for label, dirs in compared.run_dirs.items():
        assert dirs == [out / label / "seed0", out / label / "seed1"]
        for d in dirs:
            rows, summary = rows_of(d)
            assert len(rows) == 2 and summary["status"] == "completed"
            assert (d / "checkpoint.pt").exists() and (d / "samples_g0.png").exists()
    check_table(df, compared.run_dirs, "best")
    # the seeds are different runs, so the spread is real
    assert (df.is_std > 0).all() and (df.fid_std > 0).all()
    assert list(df.params_g0) == [count_parameters(GENERATORS.get("dcgan-small")(16, 1))] * 2
    assert list(df.epochs) == [2, 2] and list(df.k) == [1, 2]
    # both files hold the same table; the CSV names the runs it was computed from
    csv_df = pd.read_csv(out / "table.csv")
    assert csv_df.is_mean.tolist() == pytest.approx(df.is_mean.tolist())
    assert csv_df.runs[1] == "mad-gan-2/seed0;mad-gan-2/seed1"
    md = (out / "table.md").read_text()
    for _, r in df.iterrows():
        assert (f"| {r.graph} | 2 | 2 | {r.is_mean:.3f} +- {r.is_std:.3f} | "
                f"{r.fid_mean:.2f} +- {r.fid_std:.2f} | "
                f"{r.is_mix_mean:.3f} +- {r.is_mix_std:.3f} |") in md
    # k = 1: the mixture is the generator; k = 2: two generators' images, not the best one's
    assert df.is_mix_mean[0] == pytest.approx(df.is_mean[0])
    assert df.is_mix_mean[1] != pytest.approx(df.is_mean[1])
    # `ktg train`'s per-seed table: a mixture row for the two learners, none for one
    for label in ("dcgan-sn", "mad-gan-2"):
        sums = [runs.RunSummary(**rows_of(d)[1]) for d in compared.run_dirs[label]]
        table = runs.seed_table(resolve_graph(label), sums)
        if label == "dcgan-sn":
            assert "mixture" not in table and all(math.isnan(r.best_is_mix) for r in sums)
            continue
        best_mix = [max(float(r["is_mix"]) for r in rows_of(d)[0])
                    for d in compared.run_dirs[label]]
        assert [r.best_is_mix for r in sums] == pytest.approx(best_mix)
        assert (f"| {statistics.fmean(best_mix):.3f} +- {statistics.stdev(best_mix):.3f} |"
                in table.splitlines()[-1]) and table.splitlines()[-1].startswith("| mixture")


# ---- 3. distillation --------------------------------------------------------------------------
def eq3_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The KD paper's eq. 3 written out (kd-mse's loss since issue 22): the squared
    difference summed over the pixels; batch mean."""
    return float((a.double() - b.double()).pow(2).flatten(1).sum(1).mean())


def test_kd_mse_student_approaches_the_frozen_teacher(teacher, digits16, evaluator16):
    g = apply_teacher(resolve_graph("kd-mse"), teacher)
    t = Trainer(g, cfg(epochs=2, max_iters_per_epoch=6), data=digits16,
                evaluator=evaluator16)
    saved = torch.load(teacher, weights_only=False)["generator"]
    z = torch.randn(256, 100, generator=torch.Generator().manual_seed(99))
    dist = [eq3_distance(t.sample(0, 256, z=z), t.sample(1, 256, z=z))]
    for _ in range(2):
        t.train_epoch()
        dist.append(eq3_distance(t.sample(0, 256, z=z), t.sample(1, 256, z=z)))
    # no D edge into the student: only the transfer edge can move it towards the teacher
    assert dist[2] < dist[1] < dist[0] and dist[2] < 0.5 * dist[0], dist
    teacher_now = t.generators[0].state_dict()
    assert set(teacher_now) == set(saved)
    for name, p in t.generators[0].named_parameters():
        assert torch.equal(p, saved[name]), name
    buffers = list(t.generators[0].named_buffers())
    assert len(buffers) > 0, "the teacher has no BN buffer to check"
    for name, b in buffers:
        assert torch.equal(b, saved[name]), name  # BN statistics: frozen too


# ---- 4. --eval-at best vs last -----------------------------------------------------------
class Collapsing(Trainer):
    """A real run whose curve is not monotone: after epoch 2's training the generator's
    output layer is zeroed, so every image is the same grey square (IS 1)."""

    def train_epoch(self):
        losses = super().train_epoch()
        if self.epoch == 2:
            with torch.no_grad():
                self.generators[0].to_image.weight.zero_()
        return losses


def test_eval_at_last_and_best_differ_on_a_non_monotone_curve(compared, digits16,
                                                               evaluator16, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(runs, "Trainer", Collapsing)
    runs.train_one(resolve_graph("dcgan-sn"), cfg(epochs=2), tmp_path / "collapse",
                   data=digits16, evaluator=evaluator16)
    rows, _ = rows_of(tmp_path / "collapse")
    first, last = float(rows[0]["is_g0"]), float(rows[1]["is_g0"])
    assert last < first  # the curve this test needs
    dirs = {**compared.run_dirs, "collapsing": [tmp_path / "collapse"]}
    best, at_last = aggregate(dirs, "best"), aggregate(dirs, "last")
    check_table(best, dirs, "best")
    check_table(at_last, dirs, "last")
    b, l_ = best.set_index("graph").loc["collapsing"], at_last.set_index("graph").loc[
        "collapsing"]
    assert b.is_mean == pytest.approx(first) and l_.is_mean == pytest.approx(last)
    assert l_.fid_mean == pytest.approx(float(rows[1]["fid_g0"])) != b.fid_mean
    # a best epoch is never worse than the last one
    assert (best.is_mean >= at_last.is_mean - 1e-12).all()


# ---- 5. bad input: one message, exit 2, nothing written --------------------------------------
def test_unknown_graph_lists_the_valid_ones(capsys, tmp_path):
    out = tmp_path / "out"
    assert ktg(["compare", "dcgan-sn", "no-such-graph", "--dataset", "digits",
                "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "ktg compare: error:" in err and "'no-such-graph'" in err
    for name in builtin_graphs():
        assert name in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("argv, expect", [
    (["kd-mse"], "--teacher PATH"),
    (["dcgan-sn", "--seeds", "0"], "`--seeds >= 1`"),
    (["dcgan-sn", "--dataset", "nope"], "valid: "),
    (["dcgan-sn", "dcgan-sn"], "both named 'dcgan-sn'"),
    (["kd-joint", "--teacher", "missing.pt"], "does not exist"),
])
def test_bad_compare_input_fails_before_writing(argv, expect, capsys, tmp_path):
    out = tmp_path / "out"
    assert ktg(["compare", *argv, "--out", str(out), "--no-ray", *TINY_ARGS[-2:]]) == 2
    assert expect in capsys.readouterr().err
    assert not out.exists()


def test_wrong_teacher_model_is_named(teacher, capsys, tmp_path):
    g = resolve_graph("kd-mse").to_dict()
    g["nodes"][0]["model"] = "dcgan-large"
    (tmp_path / "g.json").write_text(json.dumps(g))
    out = tmp_path / "out"
    assert ktg(["compare", str(tmp_path / "g.json"), "--teacher", str(teacher), "--out",
                str(out), "--no-ray", *TINY_ARGS]) == 2
    err = capsys.readouterr().err
    assert "'dcgan-medium'" in err and "'dcgan-large'" in err and not out.exists()


def test_a_failed_run_leaves_nothing_half_written(monkeypatch, tmp_path):
    calls = []

    def failing(graph, config, out, **kw):
        calls.append(out)
        out.mkdir(parents=True)
        (out / "metrics.csv").write_text("epoch\n1\n")
        if len(calls) == 2:
            raise RuntimeError("disk full")
    monkeypatch.setattr(runs, "train_one", failing)
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="disk full"):
        compare(["dcgan-sn"], cfg(), out, seeds=2, use_ray=False, progress=False)
    assert len(calls) == 2 and not out.exists()
    # an OUT that existed before is refused without force; with it, it keeps what it
    # held and only this call's files go
    old = tmp_path / "old"
    (old / "notes").mkdir(parents=True)
    calls.clear()
    with pytest.raises(KtgError, match="--force"):
        compare(["dcgan-sn"], cfg(), old, seeds=2, use_ray=False, progress=False)
    assert not calls
    with pytest.raises(RuntimeError):
        compare(["dcgan-sn"], cfg(), old, seeds=2, use_ray=False, progress=False, force=True)
    assert sorted(p.name for p in old.iterdir()) == ["notes"]


def test_compare_cli_runs_a_kd_graph_and_reports_its_compression(teacher, capsys, tmp_path):
    out = tmp_path / "kd"
    assert ktg(["compare", "kd-mse", "--teacher", str(teacher), "--seeds", "1", "--epochs",
                "1", "--no-ray", "--eval-at", "last", "--out", str(out), *TINY_ARGS[:-1],
                "2"]) == 0
    printed = capsys.readouterr().out
    df = pd.read_csv(out / "table.csv")
    medium, small = (count_parameters(GENERATORS.get(m)(16, 1)) for m in
                     ("dcgan-medium", "dcgan-small"))
    assert (df.params_g0[0], df.params_g1[0]) == (medium, small)
    assert df.frozen[0] == 0 and df.best_node[0] == 1 and df.eval_at[0] == "last"
    assert df.compression[0] == pytest.approx(medium / small)
    assert f"{medium / small:.1f}x smaller" in printed
    summary = json.loads((out / "kd-mse" / "seed0" / "summary.json").read_text())
    assert summary["frozen"] == [0]
    assert df.is_mean[0] == pytest.approx(summary["last_is"][1])  # the student, not G0


def test_ctrl_c_stops_a_parallel_compare_at_once_and_leaves_nothing(tmp_path):
    """SIGINT while the Ray runs train: the command ends within seconds (not after a run
    finishes: each would take minutes here), says so, exits 130 and removes OUT."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "cmp"
    argv = [sys.executable, "-m", "ktg_search.cli", "compare", "dcgan-sn", "--seeds", "2",
            "--dataset", "digits", "--epochs", "500", "--batch-size", "32", "--d-width", "8",
            "--eval-samples", "10", "--no-fid", "--device", "cpu", "-o", str(out)]
    # a terminal's Ctrl-C: SIGINT handled by default in the child even when this test runs
    # as a background job of a non-interactive shell (`cmd &`), whose children inherit
    # SIGINT ignored and would never see it (a CI run found that)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "compare.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None and \
            not (log.exists() and "Started a local Ray instance" in log.read_text()):
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()
    time.sleep(3)  # the two runs are training now
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("compare did not stop within 45 s of Ctrl-C")
    assert time.monotonic() - sent < 45
    assert p.returncode == 130 and "ktg compare: interrupted" in err
    assert not out.exists()
