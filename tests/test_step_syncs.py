"""A training step reads nothing back from the device (method/steps.py).

On a GPU every read of a device value (`.item()`, `float(t)`, `if t:`, `.cpu()`,
`.tolist()`, `.numpy()`) stalls the host until the device catches up. Here, on the CPU,
every such call made by the project's code (or a test's subclass) during real training
steps is counted through wrappers on `torch.Tensor`; torch's own internals are left out
(Adam reads its CPU step counter, which is on the host on a GPU too), and so is
`Gate.weight` (registry.py), which reads a one-element tensor it makes on the host itself
to learn a gate's constant factor: a host tensor on a GPU machine too, so no stall.
tests/test_gpu.py
checks the same on a GPU with torch's sync debug mode, which also sees torch's internals.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from ktg_search.method.graph import Graph, resolve_graph
from ktg_search.method.steps import read_losses
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(2)
TORCH_DIR = str(Path(torch.__file__).parent)
READS = ("item", "cpu", "tolist", "numpy", "__float__", "__bool__", "__int__")
HOST_ONLY = {("registry.py", "weight")}  # reads of host tensors made there (see above)


def cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", image_size=16, batch_size=32, epochs=2, device="cpu",
                eval_samples=500, max_iters_per_epoch=4, seed=5)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def host_reads(monkeypatch):
    """A list that grows by (method, caller file:line) for every read of a tensor's value
    made outside torch itself."""
    seen: list[tuple[str, str]] = []

    def wrap(name):
        inner = getattr(torch.Tensor, name)

        def counted(self, *a, **kw):
            caller = sys._getframe(1)
            where = caller.f_code.co_filename
            host_only = (Path(where).name, caller.f_code.co_name) in HOST_ONLY
            if not where.startswith(TORCH_DIR) and not host_only:
                seen.append((name, f"{where}:{caller.f_lineno}"))
            return inner(self, *a, **kw)
        return counted
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, wrap(name))
    return seen


def batches(t: Trainer, n: int) -> list[torch.Tensor]:
    it = iter(t.data.batches(t.config.batch_size, torch.Generator().manual_seed(1)))
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("graph", ["through-3", "mad-gan-2"])
def test_a_step_reads_nothing_back(digits16, host_reads, graph):
    t = Trainer(resolve_graph(graph), cfg(), data=digits16, evaluator=object())
    real = batches(t, 3)
    host_reads.clear()
    for x in real:
        losses = t.train_step(x)
    assert host_reads == []
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in losses.values())


def test_the_wrappers_see_every_kind_of_read(host_reads):
    """The counter itself can fail: each kind of read, made here, is seen."""
    x = torch.ones(())
    x.item(), x.cpu(), x.tolist(), x.numpy(), float(x), int(x)
    if x:
        pass
    assert [name for name, _ in host_reads] == ["item", "cpu", "tolist", "numpy",
                                                "__float__", "__int__", "__bool__"]


def test_an_item_put_back_into_the_step_is_counted(digits16, host_reads):
    """Teeth: the step as it was before (every loss read with `.item()` in the shared G
    update) makes the count fail: k + 1 reads a step."""
    class Before(Trainer):
        def generator_update(self, *args):
            losses = super().generator_update(*args)
            return {key: v.item() for key, v in losses.items()}
    t = Before(resolve_graph("through-3"), cfg(), data=digits16, evaluator=object())
    real = batches(t, 2)
    host_reads.clear()
    for x in real:
        t.train_step(x)
    assert len(host_reads) == 2 * 4
    assert all(name == "item" and "test_step_syncs" in where for name, where in host_reads)


def test_an_epoch_reads_its_losses_once_and_keeps_them(digits16, host_reads):
    """One read per epoch; the means are those of the steps' losses."""
    a = Trainer(resolve_graph("through-2"), cfg(), data=digits16, evaluator=object())
    b = Trainer(resolve_graph("through-2"), cfg(), data=digits16, evaluator=object())
    host_reads.clear()
    row = a.train_epoch()
    assert len(host_reads) == 1, host_reads
    assert "steps.py" in host_reads[0][1]
    sums: dict[str, float] = {}
    for real in b.data.batches(32, b.rng):  # the same data order and z stream as a's
        if b.iteration == 4:
            break
        for key, v in read_losses(b.train_step(real)).items():
            sums[key] = sums.get(key, 0.0) + v
    assert row == {key: v / 4 for key, v in sums.items()}


def test_a_loss_gone_non_finite_mid_epoch_is_found_at_its_end(digits16, evaluator16):
    """NaN weights put in after the 2nd of 4 steps: the epoch ends diverged (every loss
    NaN), run_epoch records it and the best objective of the epoch before is kept."""
    class Breaks(Trainer):
        break_at = None

        def train_step(self, real):
            if self.iteration == self.break_at:
                with torch.no_grad():
                    next(self.generators[1].parameters()).fill_(float("nan"))
            return super().train_step(real)
    t = Breaks(resolve_graph("through-2"), cfg(epochs=3), data=digits16,
               evaluator=evaluator16)
    first = t.run_epoch()
    assert first["status"] == "running" and math.isfinite(first["objective"])
    t.break_at = t.iteration + 2
    row = t.run_epoch()
    assert t.status == "diverged" and row["status"] == "diverged"
    assert all(math.isnan(row[key]) for key in row if "loss" in key)
    assert row["objective"] == first["objective"]
    assert t.fit() == t.history and len(t.history) == 2


def mggan(lr_rule: bool = True) -> Graph:
    rule = {"a": 1, "delta": 0.5, "max_ratio": 1.5, "vrl_max": 10.0} if lr_rule else False
    return Graph.from_dict({
        "nodes": [{"model": "dcgan-small"}] * 2, "discriminators": 2,
        "edges": [{"src": f"D{j}", "dst": j, "gate": "through"} for j in range(2)],
        "regroup": {"T0": 4, "xi": 1.5, "T_max": 6, "seed": 1, "lr_rule": rule}})


def test_several_discriminators_read_back_only_where_the_lr_rule_compares(digits16,
                                                                          host_reads):
    """MGGAN's rule compares the mean G loss of consecutive iterations within `a` of a
    regrouping: the step reads it there (once), nowhere else; without the rule, never."""
    t = Trainer(mggan(), cfg(max_iters_per_epoch=12), data=digits16,
                evaluator=object())
    needed = [i for i in range(1, 13) if t.multi.lr.needs_loss(i)]
    assert needed == [2, 3, 4, 5, 8, 9, 10, 11]  # regroupings at 4 and 10 (a = 1)
    real = batches(t, 12)
    host_reads.clear()
    per_step = []
    for x in real:
        before = len(host_reads)
        t.train_step(x)
        per_step.append(len(host_reads) - before)
    assert [i for i, n in enumerate(per_step, 1) if n] == needed
    assert set(per_step) == {0, 1}
    u = Trainer(mggan(lr_rule=False), cfg(), data=digits16, evaluator=object())
    host_reads.clear()
    for x in real[:3]:
        u.train_step(x)
    assert host_reads == []


def test_the_lr_rule_reading_only_near_regroupings_gives_the_same_rates():
    """LrRule fed L(i) at every iteration (as before) and only where `needs_loss(i)`:
    the same factors at every iteration."""
    from ktg_search.method.regroup import LrRule, check_regroup
    r = check_regroup({"T0": 5, "xi": 1.5, "T_max": 9, "seed": 0,
                       "lr_rule": {"a": 2, "delta": 0.2, "max_ratio": 1.6,
                                   "vrl_max": 0.3}}, 2)
    every, sparse = LrRule(r), LrRule(r)
    losses = [1.0 + 0.1 * math.sin(i) + (0.5 if i % 7 == 0 else 0.0) for i in range(60)]
    factors = []
    for i in range(1, 60):
        f = every.update(i, losses[i])
        g = sparse.update(i, losses[i] if sparse.needs_loss(i) else None)
        assert f == g, i
        factors.append(f)
    assert any(f != 1.0 for f in factors)  # the rule did raise the rate somewhere
    assert sum(sparse.needs_loss(i) for i in range(1, 60)) < 59


def test_bf16_autocast_on_the_cpu_stays_near_fp32(digits16):
    """bf16 autocast (amp="bf16") on the CPU: a few steps from the same weights and z as
    fp32, finite losses within BF16_TOL of fp32's (tolerance: see BF16_TOL)."""
    rows = {}
    for amp in ("off", "bf16"):
        t = Trainer(resolve_graph("through-3"), cfg(amp=amp), data=digits16,
                    evaluator=object())
        rows[amp] = [read_losses(t.train_step(x)) for x in batches(t, 3)]
    for f32, b16 in zip(rows["off"], rows["bf16"], strict=True):
        assert f32.keys() == b16.keys()
        for key in f32:
            assert math.isfinite(b16[key])
            assert abs(b16[key] - f32[key]) <= BF16_TOL * max(1.0, abs(f32[key])), key
    # and bf16 did change the arithmetic (else the test compares fp32 with itself)
    assert rows["off"] != rows["bf16"]


# bf16 keeps 8 significant bits: every operand autocast rounds has a relative error of at
# most 2^-9 (0.2 %). A loss here goes through about 5 rounded layers (G's deconvolutions, D's
# convolutions), whose worst-case errors add: 5 * 2^-9 ~ 1 % of the loss on the first step
# (the same weights). The next steps add Adam's part: each weight moves by about lr = 2e-4
# whatever its gradient's size, so bf16 changes a weight only where it flips a gradient's
# sign, which moves the losses by far less than the first step's rounding. So 1 % of
# max(1, |loss|) is the worst case of the rounding; measured (through-3, digits 16 px,
# batch 32, seed 5, 3 steps): at most 0.07 % (the roundings are random and mostly cancel).
BF16_TOL = 0.01
