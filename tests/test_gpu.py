"""Tests that need a CUDA GPU (marked `gpu`; skipped without one). `make gpu-check` runs
this file with `-m gpu` on a machine that has only torch and pytest: no Ray, Optuna,
torch-fidelity or filelock, so nothing here may need them."""
from __future__ import annotations

import math

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]


def _trainer(amp: str = "off", graph: str = "through-3"):
    from ktg_search.data.loading import load_dataset
    from ktg_search.method.graph import resolve_graph
    from ktg_search.method.trainconfig import TrainConfig
    from ktg_search.method.training import Trainer
    data = load_dataset("digits", 16)
    cfg = TrainConfig(dataset="digits", image_size=16, batch_size=32, epochs=1,
                      device="cuda", amp=amp, seed=0, max_iters_per_epoch=4,
                      discriminator="sn-cnn", d_width=32)
    return Trainer(resolve_graph(graph), cfg, data=data)


def _batch(trainer) -> torch.Tensor:
    return next(iter(trainer.data.batches(32, torch.Generator().manual_seed(1)))).float()


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_steps_on_the_gpu_give_finite_losses_and_move_the_weights(amp):
    t = _trainer(amp)
    assert all(p.is_cuda for p in t.D.parameters())
    before = [p.detach().clone() for p in t.generators[0].parameters()]
    real = _batch(t)
    for _ in range(3):
        losses = t.train_step(real)
    assert t.status == "running"
    assert all(math.isfinite(float(v)) for v in losses.values()), losses
    assert any(not torch.equal(a, b) for a, b in
               zip(before, t.generators[0].parameters(), strict=True))


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_a_step_on_the_gpu_never_synchronises(amp):
    """torch's sync debug mode raises on any host synchronisation (`.item()`, a blocking
    copy, `if t:`), torch's own included; the first step runs before it (cuDNN's
    benchmark mode picks its algorithms there)."""
    t = _trainer(amp)
    real = _batch(t)
    t.train_step(real)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            losses = t.train_step(real)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v.is_cuda and v.dim() == 0 for v in losses.values())
    assert t.noise.on_device


def test_an_epoch_on_the_gpu_synchronises_once():
    """An epoch reads its losses back once (steps.LossSums.read), nothing else."""
    import warnings
    t = _trainer()
    t.train_step(_batch(t))  # warm-up (cuDNN benchmark mode)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            row = t.train_epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, syncs
    assert t.status == "running" and all(math.isfinite(v) for v in row.values())


def test_samples_come_back_to_the_host_in_range():
    t = _trainer()
    x = t.sample(0, 8, seed=3)
    assert x.device.type == "cpu" and x.shape == (8, 1, 16, 16)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_a_checkpoint_made_on_the_gpu_resumes_exactly(tmp_path):
    from ktg_search.method.training import Trainer
    t = _trainer()
    real = _batch(t)
    t.train_step(real)
    path = tmp_path / "state.pt"
    t.save(path)
    u = Trainer.restore(path, data=t.data)
    # z is drawn on the GPU from a generator the checkpoint carries
    assert u.noise.on_device and torch.equal(u.noise.gen.get_state(), t.noise.gen.get_state())
    a, b = t.train_step(real), u.train_step(real)
    assert a.keys() == b.keys()
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4), key


def test_the_trainer_scores_on_the_gpu():
    pytest.importorskip("filelock", reason="the classifier extractor's cache needs filelock")
    pytest.importorskip("torch_fidelity", reason="IS/FID need torch-fidelity")
    t = _trainer()
    assert t.evaluator.extractor.device.type == "cuda"
