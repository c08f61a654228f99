"""One evaluator rule: `method/evaluation.build_evaluator` is the only place an Evaluator is
built, and it runs on the device the run trains on unless the caller names another."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ktg_search.errors import KtgError
from ktg_search.method.evaluation import build_evaluator
from ktg_search.method.trainconfig import TrainConfig

PKG = Path(__file__).resolve().parents[1] / "ktg_search"


def test_evaluator_follows_the_config(digits16):
    cfg = TrainConfig(dataset="digits", image_size=16, device="cpu", eval_samples=300,
                      fid=False, extractor="classifier")
    ev = build_evaluator(digits16, cfg)
    assert ev.num_samples == 300 and ev.fid is False
    assert ev.extractor.device.type == "cpu"
    ev2 = build_evaluator(digits16, cfg, num_samples=50, fid=True)
    assert ev2.num_samples == 50 and ev2.fid is True


def test_evaluator_goes_to_the_training_device_unless_told(digits16):
    import torch
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU (the GPU case is in test_gpu.py)")
    cfg = TrainConfig(dataset="digits", image_size=16, device="cuda", eval_samples=100)
    # the training device is asked for (and refused here: no GPU), not a silent CPU
    with pytest.raises(KtgError, match="no GPU"):
        build_evaluator(digits16, cfg)
    # told otherwise: on the CPU
    assert build_evaluator(digits16, cfg, device="cpu").extractor.device.type == "cpu"


def test_the_trainer_builds_its_evaluator_on_its_device(digits16):
    from ktg_search.method.graph import resolve_graph
    from ktg_search.method.training import Trainer
    cfg = TrainConfig(dataset="digits", image_size=16, batch_size=32, device="cpu",
                      eval_samples=100, max_iters_per_epoch=1)
    t = Trainer(resolve_graph("through-3"), cfg, data=digits16)
    assert t.evaluator.extractor.device == t.device
    assert t.evaluator.num_samples == 100


def test_no_module_builds_an_evaluator_of_its_own():
    builders = []
    for f in PKG.rglob("*.py"):
        if f.name in ("evaluation.py", "metrics.py"):  # the rule itself, the class
            continue
        if re.search(r"(?<![\w.])Evaluator\(", f.read_text()):
            builders.append(str(f.relative_to(PKG)))
    assert builders == [], f"these build an Evaluator themselves: {builders}; use " \
                           f"method/evaluation.build_evaluator"
    # teeth: the pattern finds a direct construction
    assert re.search(r"(?<![\w.])Evaluator\(", "ev = Evaluator(data, device='cpu')")
    assert not re.search(r"(?<![\w.])Evaluator\(", "optuna.importance.PedAnovaImportanceEvaluator()")
