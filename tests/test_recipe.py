"""Issue 10: one recipe for search, train and compare.

A graph file carries the search's training settings (`recipe`); `ktg export` writes it,
`ktg validate` checks it, `ktg train` uses it as defaults (flags > --preset > recipe >
TrainConfig's defaults), and every run records the recipe it used. Real trainings, tiny:
one iteration per epoch, 10 evaluation samples, no FID.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_files import ktg, refused

from ktg_search.method.trainconfig import MACHINE_FIELDS, RECIPE_FIELDS, recipe_of
from ktg_search.search.config import load_preset
from ktg_search.method.graph import resolve_graph
from ktg_search.files.safeload import load_checkpoint

# machine-local flags only: the training settings come from the recipe under test
MACHINE = ["--device", "cpu", "--max-iters-per-epoch", "1"]
RECIPE = {"epochs": 1, "batch_size": 16, "d_width": 8, "eval_samples": 10, "fid": False,
          "lr_g": 0.003, "lr_d": 0.0007, "discriminator": "sn-resnet", "ema_decay": 0.9}


def graph_with(tmp_path: Path, recipe, name: str = "g.json") -> Path:
    spec = resolve_graph("dcgan-sn").to_dict()
    spec["recipe"] = recipe
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return path


def trained_config(out: Path, seed: int = 0) -> dict:
    """The TrainConfig a run saved in its checkpoint (what training really used)."""
    return load_checkpoint(out / f"seed{seed}" / "checkpoint.pt", "test")["config"]


def test_export_writes_the_search_recipe_and_validate_and_train_accept_it(
        shared_run, tmp_path, capsys):
    best = tmp_path / "best.json"
    code, _, err = ktg(["export", shared_run, "--rank", "1", "-o", best], capsys)
    assert code == 0, err
    recipe = json.loads(best.read_text())["recipe"]
    search = json.loads((shared_run / "run.json").read_text())["config"]["train"]
    # the search's training settings, without the machine-local fields
    assert set(recipe) == set(RECIPE_FIELDS) and not set(recipe) & set(MACHINE_FIELDS)
    assert recipe["d_width"] == search["d_width"] == 8
    assert recipe["eval_samples"] == search["eval_samples"] == 20
    assert recipe["epochs"] == search["epochs"] and recipe["fid"] is False
    code, out, err = ktg(["validate", best], capsys)
    assert code == 0 and "recipe" in out, err
    # train on it: only --epochs 1 and machine flags given
    code, out, err = ktg(["train", best, *MACHINE, "--epochs", "1", "-o", tmp_path / "t"],
                         capsys)
    assert code == 0, err
    assert f"recipe: the recipe in {best}; flags override: epochs" in out
    used = trained_config(tmp_path / "t")
    assert {k: used[k] for k in recipe if k != "epochs"} == \
        {k: v for k, v in recipe.items() if k != "epochs"}
    assert used["epochs"] == 1


def test_train_uses_the_recipe_and_records_it(tmp_path, capsys):
    g = graph_with(tmp_path, RECIPE)
    code, out, err = ktg(["train", g, *MACHINE, "-o", tmp_path / "t"], capsys)
    assert code == 0, err
    assert f"recipe: the recipe in {g}" in out and "flags override" not in out
    used = trained_config(tmp_path / "t")
    for key, value in RECIPE.items():
        assert used[key] == value, key
    summary = json.loads((tmp_path / "t" / "seed0" / "summary.json").read_text())
    assert summary["recipe"]["lr_g"] == 0.003 and summary["recipe"]["discriminator"] == \
        RECIPE["discriminator"]
    assert json.loads((tmp_path / "t" / "seed0" / "graph.json").read_text())["recipe"] == \
        summary["recipe"]


def test_flags_override_the_recipe_and_preset_the_recipe(tmp_path, capsys):
    g = graph_with(tmp_path, RECIPE)
    # a flag over the recipe
    code, out, err = ktg(["train", g, *MACHINE, "--lr-g", "0.0005", "-o", tmp_path / "a"],
                         capsys)
    assert code == 0, err
    used = trained_config(tmp_path / "a")
    assert used["lr_g"] == 0.0005 and used["lr_d"] == 0.0007  # the rest is the recipe's
    assert used["discriminator"] == RECIPE["discriminator"]
    # --preset replaces the recipe entirely; flags still win over the preset
    quick = recipe_of(load_preset("quick").train)
    code, out, err = ktg(["train", g, *MACHINE, "--preset", "quick", "--epochs", "1",
                          "--eval-samples", "10", "--no-fid", "--d-width", "8",
                          "--batch-size", "16", "-o", tmp_path / "b"], capsys)
    assert code == 0, err
    assert "recipe: preset quick; flags override: batch_size, d_width, epochs, " \
           "eval_samples, fid" in out
    used = trained_config(tmp_path / "b")
    assert used["lr_g"] == quick["lr_g"] == 0.001 and used["beta1"] == quick["beta1"] == 0
    # the preset's, not the recipe's (they differ in both)
    assert used["discriminator"] == quick["discriminator"] != RECIPE["discriminator"]
    assert used["ema_decay"] == quick["ema_decay"] != RECIPE["ema_decay"]
    assert used["d_width"] == 8 and used["fid"] is False  # the flags'
    # --lr sets both rates; --lr-d wins over it
    code, out, err = ktg(["train", g, *MACHINE, "--lr", "0.002", "--lr-d", "0.0001",
                          "-o", tmp_path / "c"], capsys)
    assert code == 0, err
    used = trained_config(tmp_path / "c")
    assert (used["lr_g"], used["lr_d"]) == (0.002, 0.0001)


def test_without_preset_or_recipe_the_training_defaults(tmp_path, capsys):
    code, out, err = ktg(["train", "dcgan-sn", *MACHINE, "--epochs", "1", "--d-width", "8",
                          "--eval-samples", "10", "--no-fid", "-o", tmp_path / "t"], capsys)
    assert code == 0, err
    assert "recipe: the training defaults" in out
    used = trained_config(tmp_path / "t")
    assert used["lr_g"] == 2e-4 and used["beta2"] == 0.999 and used["batch_size"] == 64


@pytest.mark.parametrize("recipe, says", [
    ({"lr_g": -1}, ["lr_g", "-1", "0 < lr_g <= 1"]),
    ({"discriminator": "cnn"}, ["discriminator", "'cnn'", "sn-cnn", "sn-resnet"]),
    ({"lr": 0.001}, ["'lr'", "lr_g", "discriminator"]),
    ({"device": "cpu"}, ["'device'", "lr_g"]),          # machine-local: not a recipe key
    ({"image_size": 48}, ["image_size", "48", "16, 32, 64"]),
    ({"dataset": "nope"}, ["nope", "digits"]),
    ([1, 2], ["recipe", "JSON object"]),
])
def test_a_bad_recipe_is_refused_by_validate_train_and_compare(tmp_path, capsys, recipe,
                                                                 says):
    g = graph_with(tmp_path, recipe)
    code, _, err = ktg(["validate", g], capsys)
    refused(code, err, *says)
    for argv in (["train", g, *MACHINE, "-o", tmp_path / "t"],
                 # --preset replaces the values, but a bad file is still refused
                 ["train", g, *MACHINE, "--preset", "quick", "-o", tmp_path / "t"],
                 ["compare", g, "--no-ray", *MACHINE, "-o", tmp_path / "c"]):
        code, _, err = ktg(argv, capsys)
        refused(code, err, *says)
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()


def test_an_unknown_preset_is_one_message(tmp_path, capsys):
    for cmd in (["train", "dcgan-sn"], ["compare", "dcgan-sn", "--no-ray"]):
        code, _, err = ktg([*cmd, "--preset", "huge", "-o", tmp_path / "o"], capsys)
        refused(code, err, "--preset", "'huge'", "digits", "paper-cifar10", "quick")
    assert not (tmp_path / "o").exists()


def test_a_graph_without_recipe_stays_valid_and_writes_none():
    g = resolve_graph("dcgan-sn")
    assert g.recipe is None and "recipe" not in g.to_dict()


def test_compare_records_the_recipe_it_used(tmp_path, capsys):
    g = graph_with(tmp_path, RECIPE)  # compare does not take the graph's recipe
    code, out, err = ktg(["compare", g, "--no-ray", "--seeds", "1", "--preset", "quick",
                          *MACHINE, "--epochs", "1", "--eval-samples", "10", "--no-fid",
                          "--d-width", "8", "-o", tmp_path / "c"], capsys)
    assert code == 0, err
    assert "recipe: preset quick" in out
    run = tmp_path / "c" / "dcgan-sn" / "seed0"
    recipe = json.loads((run / "summary.json").read_text())["recipe"]
    assert recipe["lr_g"] == 0.001 and recipe["d_loss_weighting"] == "paper_steps"
    quick = recipe_of(load_preset("quick").train)
    assert recipe["d_width"] == 8 and recipe["discriminator"] == quick["discriminator"]
    assert recipe["transfer_scale"] == quick["transfer_scale"]
    assert json.loads((run / "graph.json").read_text())["recipe"] == recipe


# ---- graphs travel (issue 21): another data set, the rest of the recipe kept -------------------
def test_a_graph_trains_on_another_data_set_and_says_what_changed(tmp_path, capsys):
    # made for 3-channel synthetic images at 32 px, trained on digits (1 channel) at 16
    g = graph_with(tmp_path, {**RECIPE, "dataset": "synthetic:64", "image_size": 32})
    code, out, err = ktg(["train", g, *MACHINE, "--dataset", "digits", "--image-size", "16",
                          "-o", tmp_path / "t"], capsys)
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("graph travels")]
    assert line == [f"graph travels: {g} was made for synthetic:64 at 32 px; dataset "
                    f"synthetic:64 -> digits, image_size 32 -> 16 (1 channel: the "
                    f"generators' output and D's input follow the data set); the rest of "
                    f"its recipe is kept"], out
    used = trained_config(tmp_path / "t")
    assert used["dataset"] == "digits" and used["image_size"] == 16
    for key, value in RECIPE.items():             # everything else is the recipe's
        assert used[key] == value, key
    # the generator draws digits' one channel (the recipe's data set has 3)
    state = load_checkpoint(tmp_path / "t" / "seed0" / "checkpoint.pt", "test")
    out_w = [v for k, v in state["generators"][0].items() if k.endswith("weight")][-1]
    assert min(out_w.shape[:2]) == 1 and 3 not in out_w.shape[:2], out_w.shape
    # the recipe's own data set: no line; --preset: the graph's recipe is not used
    home = graph_with(tmp_path, {**RECIPE, "dataset": "digits", "image_size": 16}, "h.json")
    for graph, extra in ((home, []), (g, ["--preset", "quick", "--epochs", "1",
                                          "--eval-samples", "10", "--no-fid", "--dataset",
                                          "digits"])):
        code, out, err = ktg(["train", graph, *MACHINE, *extra, "-o", tmp_path / "u",
                              "--force"], capsys)
        assert code == 0 and "graph travels" not in out, err


def test_compare_says_which_graphs_travel(tmp_path, capsys):
    g = graph_with(tmp_path, {**RECIPE, "dataset": "synthetic:64", "image_size": 32})
    code, out, err = ktg(["compare", g, "--no-ray", "--seeds", "1", "--preset", "quick",
                          *MACHINE, "--epochs", "1", "--eval-samples", "10", "--no-fid",
                          "--d-width", "8", "-o", tmp_path / "c"], capsys)
    assert code == 0, err
    assert (f"graph travels: {g} was made for synthetic:64 at 32 px; dataset synthetic:64 "
            f"-> digits, image_size 32 -> 16 (channels follow the data set); like every "
            f"graph here it trains under the comparison's one recipe, not its own") in out
    summary = json.loads((tmp_path / "c" / "dcgan-sn" / "seed0" / "summary.json").read_text())
    assert summary["recipe"]["dataset"] == "digits" and summary["recipe"]["image_size"] == 16
