"""Bad input named in issue 12 and the flags of issue 11: one message naming the bad value
and the valid ones, exit status 2, nothing written. Also: every checkpoint ktg writes is
plain data (loads with weights_only=True), and every TrainConfig field a search can set is
reachable through SearchConfig."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from ktg_search.cli import build_parser
from ktg_search.method.graph import resolve_graph
from ktg_search.search.config import load_preset
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer
from shared_files import TINY_TRAIN, ktg, refused


# ---- graph files ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, says", [
    ('{"name": "\\ud800", "nodes": [{"model": "dcgan-small"}]}', "`name`"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"nodes": [{"model": "dcgan-small"}], "alpha": ' + "7" * 5000 + "}", "digits"),
    ('{"nodes": [{"model": "dcgan-small"}], "alpha": 1e999}', "`alpha`"),
    ("\ufeff{}", "not valid JSON"),
])
def test_graph_files_that_broke_the_parser(tmp_path, capsys, text, says):
    path = tmp_path / "g.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, _, err = ktg(["validate", path], capsys)
    refused(code, err, str(path), says)


def test_validate_checks_pretrained_files_unless_told_not_to(tmp_path, capsys):
    spec = {"nodes": [{"model": "dcgan-small"}, {"model": "dcgan-small",
                                                 "pretrained": "teacher.pt"}],
            "edges": [{"src": 1, "dst": 0, "gate": "through"}]}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(spec))
    code, _, err = ktg(["validate", path], capsys)
    refused(code, err, str(tmp_path / "teacher.pt"), "--no-files")
    assert ktg(["validate", path, "--no-files"], capsys)[0] == 0
    # a real checkpoint of another model is named too
    from ktg_search.method.graph import Graph
    medium = Graph.build(["dcgan-medium"], {("D", 0): "through"})
    Trainer(medium, TrainConfig(device="cpu")).export_generator(0, tmp_path / "teacher.pt")
    code, _, err = ktg(["validate", path], capsys)
    refused(code, err, "'dcgan-medium'", "'dcgan-small'")
    spec["nodes"][1]["model"] = "dcgan-medium"
    path.write_text(json.dumps(spec))
    assert ktg(["validate", path], capsys)[0] == 0


# ---- search configs and --set -----------------------------------------------------------------
@pytest.mark.parametrize("setting, says", [
    ({"k": "3"}, "`k` is '3'"), ({"gates": None}, "`gates`"), ({"batch_size": "64"},
                                                               "`batch_size`"),
    ({"dataset": 5}, "`dataset`"), ({"beta1": 5}, "0 <= beta1 < 1"), ({"d_width": 0},
                                                                       "d_width"),
    ({"device": "tpu"}, "cuda:N"), ({"k": 2.5}, "`k` is 2.5"), ({"alpha": "x"}, "alpha"),
    ({"alpha": -1}, "0 < alpha"), ({"seed": "s"}, "`seed`"), ({"nz": 1e9}, "nz <= 1024"),
    ({"d_width": 1e6}, "d_width <= 1024"), ({"eval_samples": 1e12}, "eval_samples <="),
    ({"grace_period": 9, "max_epochs": 4}, "grace_period <= max_epochs"),
    ({"dataset": "synthetic:2000000"}, "60000"), ({"lr_g": float("nan")}, "lr_g"),
    ({"objective": "worst"},
     "`objective` is 'worst', but must be one of best, weakest, mean, mixture"),
])
def test_search_configs_with_wrong_types_and_ranges(tmp_path, capsys, setting, says):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(setting))
    code, _, err = ktg(["search", "--config", conf, "--storage-path", tmp_path / "runs"],
                       capsys)
    refused(code, err, str(conf), says)
    sets = [f"--set={k}={json.dumps(v)}" for k, v in setting.items()]
    code, _, err = ktg(["search", *sets, "--storage-path", tmp_path / "runs"], capsys)
    refused(code, err, says)
    assert not (tmp_path / "runs").exists()


def test_set_k_abc_names_the_value_and_the_range(capsys, tmp_path):
    code, _, err = ktg(["search", "--set", "k=abc", "--storage-path", tmp_path], capsys)
    refused(code, err, "`k` is 'abc'", "1 <= k <= 6")


def test_every_train_field_a_search_sets_is_reachable_with_set():
    """For every TrainConfig field, `--set` reaches it: a value other than the default,
    chosen from the field's declared check, arrives in the search's `train` section, by
    its flat key (`lr_g`, and `max_epochs` for `epochs`) and by its section key
    (`train.lr_g`). A TrainConfig field that `--set` cannot reach fails here."""
    from ktg_search.files.checks import field_checks
    checks = field_checks(TrainConfig)
    aliases = {"epochs": "max_epochs"}  # a search trains up to max_epochs
    base = load_preset("quick")
    assert set(checks) == {f.name for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(TrainConfig):
        key = aliases.get(f.name, f.name)
        value = _another_valid_value(f.name, checks[f.name], getattr(base.train, f.name))
        cfg = base.with_overrides([f"{key}={json.dumps(value)}"])
        assert getattr(cfg.train, f.name) == value, f.name
        cfg = base.with_overrides([f"train.{f.name}={json.dumps(value)}"])
        assert getattr(cfg.train, f.name) == value, f.name
    assert base.with_overrides(["d_passes=per_part"]).train.d_passes == "per_part"


def _another_valid_value(name: str, check, current):
    if check.kind in ("choice",):
        return next(v for v in (check.choices() if callable(check.choices) else
                                check.choices) if v != current)
    if check.kind == "device":
        return "cpu" if current != "cpu" else "auto"
    if check.kind == "bool":
        return not current
    if check.kind == "text":
        return "synthetic:64" if name == "dataset" else "some/where"
    if check.kind == "int":
        lo = check.lo if check.lo is not None else 0
        return lo + 1 if current != lo + 1 else lo + 2
    if check.kind == "float":
        hi = check.hi if check.hi is not None else 1.0
        return hi / 4 if not math.isclose(hi / 4, current or 0) else hi / 8
    raise AssertionError(check.kind)


# ---- run directories, tables, outputs, training values ---------------------------------------
def test_malformed_run_json_under_resume_is_one_message(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    cfg = load_preset("quick").to_dict()
    for info, says in [({"name": "r"}, "`config`"), ({"name": 5, "config": cfg}, "`name`"),
                       ({"name": "r", "config": {**cfg, "grace_period": 0}}, "grace_period"),
                       ({"name": "r", "config": {**cfg, "space": {**cfg["space"], "k": "3"}}},
                        "`k` is '3'"), ([], "object")]:
        (run / "run.json").write_text(json.dumps(info))
        code, _, err = ktg(["search", "--resume", run, "--address", "no-ray:1"], capsys)
        refused(code, err, "run.json", says)
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
@pytest.mark.parametrize("table", ["results.parquet", "history.parquet"])
def test_corrupt_tables_under_query_export_report(run, tmp_path, capsys, damage, table):
    whole = (run / table).read_bytes()
    (run / table).write_bytes({"empty": b"", "truncated": whole[:len(whole) // 2],
                               "random": bytes(range(256)) * 4}[damage])
    commands = [["report", run, "--no-reeval", "--only", "ranking"]]
    if table == "results.parquet":
        commands += [["query", run], ["export", run, "--rank", "1", "-o", tmp_path / "b.json"]]
    for argv in commands:
        code, _, err = ktg(argv, capsys)
        refused(code, err, table)
    assert not (tmp_path / "b.json").exists() and not (run / "report").exists()


def test_output_of_the_wrong_kind(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = ktg(["export", run, "--rank", "1", "-o", tmp_path], capsys)
    refused(code, err, "is a directory")
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN, "--out", tmp_path / "file"], capsys)
    refused(code, err, "is a file")
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN, "--out", tmp_path / "file" / "x"],
                       capsys)
    refused(code, err, "is a file")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("argv, says", [
    (["--d-width", "0"], "d_width"), (["--betas", "1.5", "0.9"], "beta1"),
    (["--betas", "0.5", "1"], "beta2"), (["--lr", "0"], "lr_g"), (["--lr", "inf"], "lr_g"),
    (["--eval-samples", "1000000"], "eval_samples"), (["--device", "gpu"], "device"),
    (["--epochs", "0"], "epochs"), (["--seeds", "0"], "--seeds"),
])
def test_training_values(tmp_path, capsys, argv, says):
    code, _, err = ktg(["train", "dcgan-sn", *TINY_TRAIN, *argv, "--out", tmp_path / "o"],
                       capsys)
    refused(code, err, says)
    assert not (tmp_path / "o").exists()


def test_an_unknown_objective_flag_names_the_valid_ones(tmp_path, capsys):
    from ktg_search.cli import main
    with pytest.raises(SystemExit) as e:  # a choices flag: argparse's own usage error
        main(["train", "dcgan-sn", *TINY_TRAIN, "--objective", "worst", "--out",
              str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'worst'" in err and all(f"'{n}'" in err
                                    for n in ("best", "weakest", "mean", "mixture"))
    assert not (tmp_path / "o").exists()


def test_bench_steps_are_bounded(capsys):
    for steps in ("0", "-3", "100000"):
        code, _, err = ktg(["bench", "--steps", steps], capsys)
        refused(code, err, "--steps")


def test_bench_case_must_be_a_known_case(capsys):
    with pytest.raises(SystemExit) as e:  # a choices flag: argparse's own usage error
        ktg(["bench", "--case", "digits-32", "--case", "cifar-32"], capsys)
    out, err = capsys.readouterr()
    refused(e.value.code, err.splitlines()[-1], "cifar-32", "--case",
            "digits-32-recipe-uniform", "digits-16")
    assert out == ""  # refused before any timing


# ---- one set of flags (issue 11) --------------------------------------------------------------
def test_every_writing_command_takes_o_out_and_the_old_spelling():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for cmd in ("train", "compare", "report", "export", "pretrain"):
        options = {s for a in sub.choices[cmd]._actions for s in a.option_strings}
        assert {"-o", "--out"} <= options, cmd
        if cmd != "report":  # the report replaces only its own folder: no --force needed
            assert "--force" in options, cmd
    for cmd in ("export", "pretrain"):  # the spelling they had before
        assert "--output" in {s for a in sub.choices[cmd]._actions for s in a.option_strings}


# ---- the checkpoints ktg writes are plain data -------------------------------------------------
def test_checkpoints_ktg_writes_load_with_weights_only(tmp_path, digits16, evaluator16):
    from ktg_search.data.extractors import classifier_path
    from ktg_search.files.safeload import load_checkpoint
    cfg = TrainConfig(device="cpu", batch_size=32, epochs=1, eval_samples=20,
                      max_iters_per_epoch=2, d_width=8)
    t = Trainer(resolve_graph("mad-gan-2"), cfg, data=digits16, evaluator=evaluator16)
    t.fit()
    t.save(tmp_path / "trainer.pt")
    t.export_generator(1, tmp_path / "g.pt")
    for f in (tmp_path / "trainer.pt", tmp_path / "g.pt", classifier_path(digits16)):
        torch.load(f, weights_only=True)  # raises on anything but plain types
        load_checkpoint(f)
    back = Trainer.restore(tmp_path / "trainer.pt", data=digits16, evaluator=evaluator16)
    assert back.epoch == t.epoch and back.history == t.history
    assert torch.equal(back.rng.get_state(), t.rng.get_state())
    assert len(back.generators) == len(t.generators) == 2  # mad-gan-2's two generators
    for a, b in zip(back.generators, t.generators):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


@pytest.fixture
def run(run_copy):
    return Path(run_copy)
