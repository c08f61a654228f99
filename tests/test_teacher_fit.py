"""A teacher from a run: the exported checkpoint says what it was trained on, and a run
on another data set, channel count or image size refuses it with one clear KtgError
(exit status 2); old checkpoints without those keys still load where they fit."""
from __future__ import annotations

import pytest
import torch

from ktg_search.errors import KtgError
from ktg_search.method.graph import Graph, resolve_graph
from ktg_search.method.teachers import load_pretrained
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def teacher(digits16, evaluator16, tmp_path_factory):
    spec = resolve_graph("dcgan-sn").to_dict()
    spec.update(nodes=[{"model": "dcgan-w4"}])
    cfg = TrainConfig(dataset="digits", image_size=16, batch_size=32, epochs=1,
                      device="cpu", eval_samples=500, max_iters_per_epoch=1)
    t = Trainer(Graph.from_dict(spec), cfg, data=digits16, evaluator=evaluator16)
    path = tmp_path_factory.mktemp("teacher") / "t.pt"
    t.export_generator(0, path)
    return path, t.generators[0].state_dict()


def test_the_checkpoint_names_its_data(teacher):
    ckpt = torch.load(teacher[0], weights_only=True)
    assert (ckpt["dataset"], ckpt["channels"], ckpt["image_size"]) == ("digits", 1, 16)
    model, g = load_pretrained(str(teacher[0]), 16, 1, 100, "digits")
    assert model == "dcgan-w4"
    for a, b in zip(g.state_dict().values(), teacher[1].values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("size,channels,dataset,bad", [
    (16, 1, "mnist", "dataset='digits'"), (16, 3, "digits", "channels=1"),
    (32, 1, "digits", "image_size=16")])
def test_a_teacher_for_another_run_is_refused(teacher, size, channels, dataset, bad):
    with pytest.raises(KtgError) as e:
        load_pretrained(str(teacher[0]), size, channels, 100, dataset)
    msg = str(e.value)
    assert bad in msg and "ktg pretrain" in msg and str(teacher[0]) in msg
    assert e.value.__class__ is KtgError  # the CLI's exit status 2


def test_an_old_checkpoint_without_the_keys_still_loads_where_it_fits(teacher, tmp_path):
    ckpt = torch.load(teacher[0], weights_only=True)
    for key in ("dataset", "channels", "image_size"):
        del ckpt[key]
    torch.save(ckpt, tmp_path / "old.pt")
    model, _ = load_pretrained(str(tmp_path / "old.pt"), 16, 1, 100, "digits")
    assert model == "dcgan-w4"
    with pytest.raises(KtgError, match="dataset='digits'"):  # config still says digits
        load_pretrained(str(tmp_path / "old.pt"), 16, 1, 100, "mnist")
    with pytest.raises(KtgError, match="does not fit"):  # no channel key: the shapes
        load_pretrained(str(tmp_path / "old.pt"), 16, 3, 100, "digits")
