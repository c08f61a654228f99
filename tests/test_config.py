"""A search config nests its training (`train`, a TrainConfig) and its space (`space`, a
SpaceSpec). --set reaches them by section (`train.x`, `space.x`) or by the flat alias;
flat files written before the sections (a run.json, a config file, a preset) read to the
same config as the nested form; a wrong section or field is one message naming the valid
ones."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from shared_files import ktg, refused

import ktg_search
from ktg_search.search.config import (ALIASES, SECTIONS, SearchConfig, load_config_file,
                                      load_preset, presets)
from ktg_search.errors import KtgError
from ktg_search.search.runinfo import read_run_info, resume_info
from ktg_search.search.space import SpaceSpec
from ktg_search.method.trainconfig import TrainConfig

# the `config` of a run.json as ktg wrote it before the sections (the quick preset,
# dataclasses.asdict of the flat SearchConfig of commit 56c7fe6)
OLD_FLAT_QUICK = {
    "preset": "quick", "dataset": "digits", "image_size": 16, "batch_size": 32, "nz": 100,
    "lr_g": 0.001, "lr_d": 0.001, "beta1": 0.0, "beta2": 0.9, "d_width": 32,
    "d_passes": "auto", "d_loss_weighting": "paper_steps", "discriminator": "sn-cnn",
    "ema_decay": 0.0, "ema_start": 0, "transfer_scale": "resolution", "eval_samples": 500,
    "extractor": "classifier", "fid": True, "inception_weights": None, "data_root": None,
    "device": "auto", "amp": "off", "max_iters_per_epoch": None, "seed": 0, "k": 3,
    "gates": ["through", "cutoff", "linear_up", "linear_down"],
    "target_model": "dcgan-small", "models": ["dcgan-small"], "transfer": ["feature_out"],
    "alpha": 1000.0, "alphas": [100.0, 1000.0, 10000.0], "target_node": False,
    "num_trials": 24, "max_epochs": 8, "time_unit": "epochs", "grace_period": 1,
    "reduction_factor": 2.0, "sampler": "random", "storage": None, "study_name": None,
    "concurrency": None, "cpus_per_trial": 1.0, "gpus_per_trial": 0.0,
    "duplicate_wait_s": 900.0}


def test_no_field_name_is_in_two_sections():
    """The flat alias (`lr_g` = `train.lr_g`) is only unambiguous while no name is a
    field of two sections, or of a section and the search itself: a new clashing field
    fails here."""
    names = {"search": [f.name for f in fields(SearchConfig) if f.name not in SECTIONS],
             **{s: [f.name for f in fields(c)] for s, c in SECTIONS.items()},
             "aliases": list(ALIASES)}
    seen: dict[str, str] = {}
    for where, group in names.items():
        for name in group:
            assert name not in seen, f"{name!r} is in both {seen[name]} and {where}"
            seen[name] = where
    assert set(SECTIONS) == {"train", "space"}
    assert {f.name: f.default_factory for f in fields(SearchConfig)
            if f.name in SECTIONS} == {"train": TrainConfig, "space": SpaceSpec}


def test_the_sections_are_a_trainconfig_and_a_spacespec():
    cfg = load_preset("quick")
    assert isinstance(cfg.train, TrainConfig) and isinstance(cfg.space, SpaceSpec)
    # each section's values are the file's (read here as plain JSON); a search trains
    # each graph for at most train.epochs
    raw = json.loads((Path(ktg_search.__file__).parent / "search" / "presets" / "quick.json").read_text())
    assert cfg.train.epochs == raw["train"]["epochs"] and cfg.space.k == raw["space"]["k"]
    assert cfg.num_trials == raw["num_trials"] and cfg.grace_period == raw["grace_period"]
    assert cfg.space.alpha_values == tuple(raw["space"]["alphas"])
    assert cfg.train.lr_g == raw["train"]["lr_g"] != TrainConfig().lr_g


def test_dotted_and_flat_keys_set_the_same_fields():
    dotted = SearchConfig().with_overrides(
        ["train.lr_g=0.003", "train.epochs=5", "train.discriminator=sn-cnn",
         "space.k=2", "space.alphas=10,100", "space.gates=through,cutoff"])
    flat = SearchConfig().with_overrides(
        ["lr_g=0.003", "max_epochs=5", "discriminator=sn-cnn", "k=2", "alphas=10,100",
         "gates=through,cutoff"])
    assert dotted == flat
    assert dotted.train.lr_g == 0.003 and dotted.train.epochs == 5
    assert dotted.space.alphas == (10.0, 100.0) and dotted.space.k == 2
    # a section field alone is its alias too (`epochs` as well as the old `max_epochs`)
    assert SearchConfig().with_overrides(["epochs=5"]) == \
        SearchConfig().with_overrides(["train.epochs=5"])
    # search settings stay plain keys
    assert SearchConfig().with_overrides(["num_trials=7"]).num_trials == 7


@pytest.mark.parametrize("item,named", [
    ("train.k=2", ["'train.k'", "train.lr_g", "train.epochs"]),
    ("space.lr_g=1", ["'space.lr_g'", "space.k", "space.alphas"]),
    ("model.k=2", ["'model'", "train.<field>", "space.<field>"]),
    ("train.max_epochs=2", ["'train.max_epochs'", "train.epochs"]),
    ("nope=1", ["'nope'", "num_trials", "train.<field>", "lr_g", "space.<field>", "alphas"]),
])
def test_a_wrong_section_or_field_names_the_valid_ones(item, named):
    with pytest.raises(KtgError) as e:
        SearchConfig().with_overrides([item])
    for text in named:
        assert text in str(e.value)


def test_a_flat_run_json_reads_to_the_nested_config(tmp_path):
    """A run directory written before the sections: report, export, status and resume read
    its flat config as the same SearchConfig the nested form gives."""
    run = tmp_path / "old-run"
    run.mkdir()
    info = {"name": "old-run", "config": OLD_FLAT_QUICK, "storage":
            f"sqlite:///{run / 'optuna.db'}", "study_name": "old-run", "space_size": 786432,
            "tune_path": str(run), "created": "2026-01-01T00:00:00"}
    (run / "run.json").write_text(json.dumps(info, indent=2))
    # the quick preset as it was when such a run.json was written
    quick = load_preset("quick").with_overrides(
        ["num_trials=24", "grace_period=1", "space.alphas=100,1000,10000",
         "train.objective=best", "baselines=false"])   # no run had baselines then
    assert read_run_info(run)["config"] == quick
    assert resume_info(run).config == quick
    # and the nested form of the same run
    (run / "run.json").write_text(json.dumps({**info, "config": quick.to_dict()}))
    assert read_run_info(run)["config"] == quick
    nested = json.loads((run / "run.json").read_text())["config"]
    assert set(nested["train"]) == {f.name for f in fields(TrainConfig)}
    assert set(nested["space"]) == {f.name for f in fields(SpaceSpec)}
    assert "max_epochs" not in nested and "lr_g" not in nested


def test_a_flat_config_file_reads_like_the_nested_one(tmp_path):
    flat = {"preset": "digits", "lr_g": 0.003, "max_epochs": 5, "k": 2,
            "alphas": [10, 100], "num_trials": 7, "description": "mine"}
    nested = {"preset": "digits", "num_trials": 7, "description": "mine",
              "train": {"lr_g": 0.003, "epochs": 5}, "space": {"k": 2, "alphas": [10, 100]}}
    mixed = {"preset": "digits", "num_trials": 7, "lr_g": 0.003, "train": {"epochs": 5},
             "space": {"k": 2}, "alphas": [10, 100]}
    cfgs = []
    for i, d in enumerate((flat, nested, mixed)):
        (tmp_path / f"c{i}.json").write_text(json.dumps(d))
        cfgs.append(load_config_file(str(tmp_path / f"c{i}.json")))
    assert cfgs[0] == cfgs[1] == cfgs[2]
    # the fields the file names, over the preset's
    digits = load_preset("digits")
    assert cfgs[0].train.lr_g == 0.003 and cfgs[0].train.epochs == 5
    assert cfgs[0].train.batch_size == digits.train.batch_size == 32
    assert cfgs[0].space.models == digits.space.models and cfgs[0].space.k == 2
    assert cfgs[0] == digits.with_overrides(["train.lr_g=0.003", "train.epochs=5",
                                             "space.k=2", "space.alphas=[10, 100]",
                                             "num_trials=7"])


@pytest.mark.parametrize("config,says", [
    ({"train": {"nope": 1}}, ["'train.nope'", "train.lr_g", "train.epochs"]),
    ({"space": {"lr_g": 1}}, ["'space.lr_g'", "space.k", "space.alphas"]),
    ({"model": {"k": 2}}, ["'model'", "num_trials", "train.<field>", "space.<field>"]),
    ({"train": 5}, ["`train` must be a JSON object", "int"]),
    ({"space": ["k"]}, ["`space` must be a JSON object", "list"]),
    ({"lr_g": 0.1, "train": {"lr_g": 0.2}}, ["`lr_g`", "`train.lr_g`", "give it once"]),
    ({"max_epochs": 3, "train": {"epochs": 4}}, ["`max_epochs`", "`train.epochs`"]),
    ({"train": {"lr_g": 5}}, ["`lr_g` is 5", "0 < lr_g <= 1"]),
    ({"space": {"k": 9}}, ["`k` is 9", "1 <= k <= 6"]),
])
def test_an_unknown_or_bad_nested_key_is_one_message(tmp_path, capsys, config, says):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(config))
    with pytest.raises(KtgError) as e:
        load_config_file(str(conf))
    for text in says:
        assert text in str(e.value)
    code, _, err = ktg(["search", "--config", conf, "--storage-path", tmp_path / "runs"],
                       capsys)
    refused(code, err, str(conf), *says)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", list(presets()))
def test_the_nested_config_round_trips_through_json(name):
    cfg = load_preset(name).with_overrides(["concurrency=2", "train.data_root=/d"])
    text = json.dumps(cfg.to_dict())
    back = SearchConfig.from_dict(json.loads(text))
    assert back == cfg and json.dumps(back.to_dict()) == text
    assert isinstance(back.space.gates, tuple) and isinstance(back.space.alphas, tuple)


def test_alpha_and_alphas_stay_as_written():
    """`alphas` empty means `alpha` alone: a later --set of either means what it says,
    however often the config went through a file."""
    paper = SearchConfig.from_dict(load_preset("paper-cifar10").to_dict())
    assert paper.space.alphas == () and paper.space.alpha_values == (1000.0,)
    assert paper.with_overrides(["alpha=500"]).space.alpha_values == (500.0,)
    quick = SearchConfig.from_dict(load_preset("quick").to_dict())
    assert quick.with_overrides(["alphas=[]"]).space.alpha_values == (1000.0,)


def test_the_listing_commands_show_every_preset_and_graph(capsys):
    """`ktg presets` / `ktg graphs --format json`: one row per file, values read from it."""
    from ktg_search.cli import main
    from ktg_search.method.graph import builtin_graphs
    assert main(["presets", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(presets())
    for name, path in presets().items():
        raw = json.loads(Path(path).read_text())
        assert (rows[name]["trials"], rows[name]["max_epochs"], rows[name]["k"]) == \
            (raw["num_trials"], raw["train"]["epochs"], raw["space"]["k"])
    assert main(["graphs", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("name,k,transfer,description")
    assert sorted(ln.split(",")[0] for ln in lines[1:]) == sorted(builtin_graphs())
