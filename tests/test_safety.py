"""Issue 12's findings, reproduced on real files: shared files that would run code, writes
that destroyed what ktg did not make, and inputs that asked for unbounded resources. Each
now ends in a clean refusal (exit status 2, one message naming the file or value), with
no code run (the payloads would create a marker file) and nothing touched outside the
tool's outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ktg_search.errors import KtgError
from ktg_search.method.graph import resolve_graph
from shared_files import (TINY_TRAIN, ktg, png_header, poisoned_checkpoint, refused,
                          tree)

@pytest.fixture
def run(run_copy):
    return Path(run_copy)


def teacher_graph(tmp_path: Path, checkpoint: str) -> Path:
    """Node 1 is a frozen teacher (no incoming edge) that names `checkpoint`."""
    g = {"name": "shared", "nodes": [{"model": "dcgan-small"},
                                     {"model": "dcgan-small", "pretrained": checkpoint}],
         "edges": [{"src": "D", "dst": 0, "gate": "through"},
                   {"src": 1, "dst": 0, "gate": "through"}], "transfer": "image"}
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(g))
    return path


# ---- 1, 2, 5: checkpoints and weights are data ----------------------------------------------
@pytest.mark.parametrize("shell", [False, True], ids=["pathlib", "os.system"])
def test_1_train_refuses_a_poisoned_teacher_and_runs_nothing(tmp_path, capsys, shell):
    marker = tmp_path / "PWNED"
    poisoned_checkpoint(tmp_path / "teacher.pt", marker, shell=shell)
    graph = teacher_graph(tmp_path, "teacher.pt")
    out = tmp_path / "out"
    code, _, err = ktg(["train", graph, *TINY_TRAIN, "--out", out], capsys)
    refused(code, err, "teacher.pt", "refused")
    assert not marker.exists() and not out.exists()
    code, _, err = ktg(["validate", graph], capsys)
    refused(code, err, "teacher.pt")
    code, _, err = ktg(["compare", "kd-mse", "--teacher", tmp_path / "teacher.pt",
                        "--no-ray", *TINY_TRAIN, "--out", out], capsys)
    refused(code, err, "teacher.pt")
    assert not marker.exists() and not out.exists()


def test_1_truncated_teacher_is_a_message(tmp_path, capsys):
    from ktg_search.method.trainconfig import TrainConfig
    from ktg_search.method.training import Trainer
    t = Trainer(resolve_graph("dcgan-sn"), TrainConfig(device="cpu", eval_samples=10))
    t.export_generator(0, tmp_path / "t.pt")
    whole = (tmp_path / "t.pt").read_bytes()
    for n in (0, 10, len(whole) // 2, len(whole) - 10):
        (tmp_path / "cut.pt").write_bytes(whole[:n])
        code, _, err = ktg(["train", teacher_graph(tmp_path, "cut.pt"), *TINY_TRAIN,
                            "--out", tmp_path / "out"], capsys)
        refused(code, err, "cut.pt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("reeval", [False, True], ids=["no-reeval", "reeval"])
def test_2_report_refuses_poisoned_trial_checkpoints(run, tmp_path, capsys, reeval):
    marker = tmp_path / "PWNED"
    for f in run.glob("*/checkpoint_*/trainer.pt"):
        poisoned_checkpoint(f, marker)
    argv = ["report", run, "--reeval-top", "2", "--reeval-samples", "10"]
    argv += ["--only", "ranking", "reevaluation", "samples"] if reeval else \
        ["--no-reeval", "--only", "ranking", "samples"]
    code, _, _ = ktg(argv, capsys)
    assert code == 0 and not marker.exists()
    md = (run / "report" / "report.md").read_text()
    samples = md[md.index("## Samples"):]
    assert "refused" in samples and "trainer.pt" in samples
    if reeval:
        assert md.count("was refused") >= 3  # both re-evaluations and the samples
    from ktg_search.method.training import Trainer
    with pytest.raises(KtgError, match="refused"):
        Trainer.restore(next(run.glob("*/checkpoint_*/trainer.pt")))
    assert not marker.exists()


def test_5_inception_weights_are_loaded_as_data(run, tmp_path, capsys):
    from ktg_search.data.loading import load_dataset
    from ktg_search.data.metrics import get_extractor
    marker = tmp_path / "PWNED"
    weights = poisoned_checkpoint(tmp_path / "w.pth", marker,
                                  inner={"fc.weight": torch.zeros(1008, 2048)})
    with pytest.raises(KtgError, match="refused"):
        get_extractor("inception-v3-compat", load_dataset("digits", 16),
                      inception_weights=str(weights))
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN, "--extractor",
                        "inception-v3-compat", "--inception-weights", weights,
                        "--out", tmp_path / "o"], capsys)
    refused(code, err, "w.pth", "refused")
    # the same file named by a shared run.json, which the report's re-evaluation reads
    info = json.loads((run / "run.json").read_text())
    info["config"]["train"].update(extractor="inception-v3-compat",
                                   inception_weights=str(weights))
    (run / "run.json").write_text(json.dumps(info))
    code, _, err = ktg(["report", run, "--only", "reevaluation", "--reeval-top", "1",
                        "--reeval-samples", "10"], capsys)
    assert code == 0 and "refused" in err
    assert not marker.exists() and not (tmp_path / "o").exists()


# ---- 6: --where is not Python ----------------------------------------------------------------
@pytest.mark.parametrize("where", [
    "@load_results.__globals__['os'].system('touch {m}') == 0",
    "status.__class__.__init__.__globals__['os'].system('touch {m}') == 0",
    "__import__('os').system('touch {m}') == 0",
    "[c for c in ().__class__.__base__.__subclasses__()] == 0",
])
def test_6_query_where_runs_no_code(run, tmp_path, capsys, where):
    marker = tmp_path / "PWNED"
    code, _, err = ktg(["query", run, "--where", where.format(m=marker)], capsys)
    refused(code, err, "--where", "valid columns")
    assert not marker.exists()


def test_6_documented_filters_still_work(run, capsys):
    df = pd.read_parquet(run / "results.parquet")
    cases = {"status == 'stopped' and gate_D_1 == 'through'":
             (df.status == "stopped") & (df.gate_D_1 == "through"),
             "objective > 1 and transfer == 'feature_out'":
             (df.objective > 1) & (df.transfer == "feature_out"),
             "gate_0_1 in ['through', 'linear_up'] or isna(fid_g0)":
             df.gate_0_1.isin(["through", "linear_up"]) | df.fid_g0.isna()}
    for where, mask in cases.items():
        code, out, _ = ktg(["query", run, "--where", where, "--format", "json"], capsys)
        assert code == 0
        got = sorted(r["trial_id"] for r in json.loads(out))
        assert got == sorted(df[mask].trial_id), where
    assert sorted(df[cases["status == 'stopped' and gate_D_1 == 'through'"]].trial_id) == \
        ["aaaa0001_00000"]  # the filter selects something, so the comparison can fail


# ---- 7, 8, 9: writes never destroy what ktg did not make ----------------------------------
def test_7_report_out_dot_never_replaces_the_project(run, tmp_path, capsys, monkeypatch):
    project = run.parent
    (project / "report.html").write_text("my own page")
    (project / "notes.txt").write_text("precious")
    before = tree(project)
    monkeypatch.chdir(project)
    for out in (".", str(project), str(run), str(run / "train_ktg_aaaa0001_00000")):
        code, _, err = ktg(["report", run, "--no-reeval", "--only", "ranking", "--out", out],
                           capsys)
        refused(code, err)
    monkeypatch.chdir(run / "train_ktg_aaaa0001_00000")  # cwd inside the run: its parents
    code, _, err = ktg(["report", run, "--no-reeval", "--out", project], capsys)
    refused(code, err, "current directory")
    assert tree(project) == before


def test_8_a_link_in_a_shared_run_is_never_followed(run, tmp_path, capsys):
    docs = tmp_path / "victim" / "docs"
    docs.mkdir(parents=True)
    (docs / "report.html").write_text("the victim's report")
    (docs / "thesis.tex").write_text("years of work")
    (run / "report").symlink_to(Path("..") / "victim" / "docs")
    before = tree(tmp_path / "victim")
    code, _, err = ktg(["report", run, "--no-reeval", "--only", "ranking"], capsys)
    refused(code, err, "symbolic link")
    (run / "report").unlink()
    (run / "report").symlink_to(tmp_path / "victim" / "new")  # dangling
    code, _, err = ktg(["report", run, "--no-reeval", "--only", "ranking"], capsys)
    refused(code, err, "symbolic link")
    (run / "report").unlink()
    (run / "sub").symlink_to(tmp_path / "victim")  # a link on the way, inside the run
    code, _, err = ktg(["report", run, "--no-reeval", "--out", run / "sub" / "docs"], capsys)
    refused(code, err, "symbolic link")
    assert tree(tmp_path / "victim") == before and not (tmp_path / "victim" / "new").exists()
    # a folder ktg made (marker) is replaced, and so is RUN/report as ktg wrote it before
    # it had a marker (report.html, report.md, PNGs only); a folder named by --out is not
    (run / "sub").unlink()
    legacy = run / "report"
    legacy.mkdir()
    for name in ("report.html", "report.md", "curves.png"):
        (legacy / name).write_text("old")
    code, _, err = ktg(["report", run, "--no-reeval", "--only", "ranking", "--out", legacy],
                       capsys)
    refused(code, err, "no report made by ktg")
    assert ktg(["report", run, "--no-reeval", "--only", "ranking"], capsys)[0] == 0
    assert (legacy / ".ktg-report").is_file() and not (legacy / "curves.png").exists()
    assert ktg(["report", run, "--no-reeval", "--only", "ranking"], capsys)[0] == 0


def test_9_existing_outputs_need_force(run, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        taken = tmp_path / "taken"
        taken.mkdir()
        (taken / "checkpoint.pt").write_text("mine")
        (tmp_path / "best.json").write_text("mine")
        before = tree(tmp_path / "taken"), (tmp_path / "best.json").read_text()
        for argv in (["train", "dcgan-sn", *TINY_TRAIN, "--out", taken],
                     ["compare", "dcgan-sn", "--no-ray", *TINY_TRAIN, "--out", taken],
                     ["export", run, "--rank", "1", "-o", tmp_path / "best.json"],
                     ["export", run, "--rank", "1", "--output", tmp_path / "best.json"],
                     ["pretrain", "--model", "dcgan-small", *TINY_TRAIN, "-o",
                      tmp_path / "best.json"]):
            code, _, err = ktg(argv, capsys)
            refused(code, err, "--force")
        assert (tree(tmp_path / "taken"), (tmp_path / "best.json").read_text()) == before
        code, _, _ = ktg(["export", run, "--rank", "1", "--out", tmp_path / "best.json",
                          "--force"], capsys)
        assert code == 0 and json.loads((tmp_path / "best.json").read_text())["nodes"]
        # the umask decides the mode (0666 & ~umask), not mkstemp's private 0600
        assert (tmp_path / "best.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o007)
        assert ktg(["export", run, "--rank", "2", "-o", tmp_path / "b2.json"], capsys)[0] == 0
        assert (tmp_path / "b2.json").stat().st_mode & 0o777 == 0o660
        assert ktg(["report", run, "--no-reeval", "--only", "ranking"], capsys)[0] == 0
        assert (run / "report").stat().st_mode & 0o777 == 0o770
        assert (run / "report" / "report.md").stat().st_mode & 0o777 == 0o660
    finally:
        os.umask(old)


# ---- 10-13: resources and paths ----------------------------------------------------------------
@pytest.mark.parametrize("setting", [{"grace_period": 0}, {"reduction_factor": 1},
                                     {"reduction_factor": 0.5}])
def test_10_asha_settings_cannot_loop_the_report(run, capsys, setting):
    info = json.loads((run / "run.json").read_text())
    info["config"].update(setting)
    (run / "run.json").write_text(json.dumps(info))
    argv = ["report", str(run), "--no-reeval", "--only", "asha"]
    if "grace_period" in setting:  # once in a process of its own: a loop would hang here
        p = subprocess.run([sys.executable, "-m", "ktg_search.cli", *argv],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        code, err = p.returncode, p.stderr
    else:
        code, _, err = ktg(argv, capsys)
    refused(code, err, "run.json", next(iter(setting)))
    from ktg_search.report import asha_rungs
    with pytest.raises(KtgError):
        asha_rungs(pd.DataFrame(columns=["trial_id", "epoch"]), 8,
                   setting.get("grace_period", 1), setting.get("reduction_factor", 2))


def test_11_synthetic_size_is_bounded(tmp_path, capsys):
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN[2:], "--dataset",
                        "synthetic:2000000", "--out", tmp_path / "o"], capsys)
    refused(code, err, "2000000", "60000")
    code, _, err = ktg(["search", "--set", "dataset=synthetic:2000000", "--storage-path",
                        tmp_path / "runs", "--address", "no-such-ray:1"], capsys)
    refused(code, err, "2000000")
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()


def test_12_huge_images_are_refused_before_decoding(tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (20, 20), color=40 * i).save(folder / f"ok{i}.png")
    for name, (w, h) in {"bomb": (20000, 20000), "big": (13000, 13000),
                         "wide": (60000, 1000)}.items():
        png_header(folder / f"{name}.png", w, h)
        code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN[2:], "--dataset",
                            f"folder:{folder}", "--out", tmp_path / "o"], capsys)
        refused(code, err, f"{name}.png")
        assert "pixels" in err or "decompression bomb" in err.lower()
        (folder / f"{name}.png").unlink()
    (folder / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN[2:], "--dataset",
                        f"folder:{folder}", "--out", tmp_path / "o"], capsys)
    refused(code, err, "junk.png")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["..", "../../escape", "/abs", ".hidden"])
def test_13_a_graph_name_cannot_lead_outside_out(tmp_path, capsys, name):
    spec = resolve_graph("dcgan-sn").to_dict()
    spec["name"] = name
    (tmp_path / "g.json").write_text(json.dumps(spec))
    before = tree(tmp_path)
    out = tmp_path / "o" / "cmp"
    code, _, err = ktg(["compare", tmp_path / "g.json", "--seeds", "1", "--no-ray",
                        *TINY_TRAIN, "--out", out], capsys)
    assert code == 0, err
    after = tree(tmp_path)
    new = {p for p in after if p not in before}
    assert new and all(p.startswith("o") for p in new), sorted(new)
    labels = [p.name for p in out.iterdir() if p.is_dir()]
    assert labels and all(not lb.startswith(".") and "/" not in lb for lb in labels)
