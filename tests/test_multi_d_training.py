"""Training with several discriminators and MGGAN's regrouping (issue 20): real steps on
CPU, checked against today's numbers, hand-computed schedules and uninterrupted runs."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from ktg_search.errors import KtgError
from ktg_search.method.graph import Graph, resolve_graph
from ktg_search.method.regroup import LrRule, check_regroup, regroup_iterations, roles_at
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(2)
SMALL = {"model": "dcgan-small"}

# train_step's losses of the first 3 iterations, seed 3, recorded with main's code
# (3aeae9c, before several Ds existed) on one machine. The last bits of a float32
# convolution depend on the kernels torch picks for the CPU it runs on (another CPU gave
# g_loss_0 1.1000531911849976 for 1.100053310394287), so against these figures a one-D graph
# must agree to float32 rounding; bit identity is checked on the machine that runs the test,
# against that commit's code (below).
BEFORE_MULTI_D = "3aeae9c"
MAIN_LOSSES = {
    "mad-gan-2": [
        {"d_loss": 1.109137773513794, "g_loss_0": 1.100053310394287,
         "g_loss_1": 1.0967110395431519},
        {"d_loss": 1.0585402250289917, "g_loss_0": 1.0842636823654175,
         "g_loss_1": 1.0713660717010498},
        {"d_loss": 1.0307283401489258, "g_loss_0": 1.0823599100112915,
         "g_loss_1": 1.0593489408493042}],
    "through-2": [
        {"d_loss": 1.109137773513794, "g_loss_0": 4.163516998291016,
         "g_loss_1": 4.16017484664917},
        {"d_loss": 1.050389289855957, "g_loss_0": 3.5426714420318604,
         "g_loss_1": 3.5328528881073},
        {"d_loss": 1.0140830278396606, "g_loss_0": 3.5672552585601807,
         "g_loss_1": 3.55013370513916}]}


def cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", image_size=16, batch_size=32, epochs=1, device="cpu",
                eval_samples=500, max_iters_per_epoch=3, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def steps(t: Trainer, n: int) -> list[dict]:
    rows = []
    for real in t.data.batches(t.config.batch_size, t.rng):
        if len(rows) == n:
            break
        rows.append({k: float(v) for k, v in t.train_step(real).items()})
    return rows


@pytest.mark.parametrize("name", sorted(MAIN_LOSSES))
def test_one_d_losses_match_the_recorded_figures(name, digits16):
    t = Trainer(resolve_graph(name), cfg(), data=digits16, evaluator=object())
    assert t.multi is None
    got = steps(t, 3)
    assert [sorted(r) for r in got] == [sorted(r) for r in MAIN_LOSSES[name]]
    for row, want in zip(got, MAIN_LOSSES[name], strict=True):
        for key, value in want.items():  # float32 has 24 bits: 1e-6 is a few ulps
            assert row[key] == pytest.approx(value, rel=1e-6, abs=0), (key, row)


# the same steps in a fresh interpreter, from whichever checkout is on PYTHONPATH
_STEPS = """
import json, sys, torch
torch.set_num_threads(2)
from ktg_search.data.loading import load_dataset
from ktg_search.method.graph import resolve_graph
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer
c = TrainConfig(dataset="digits", image_size=16, batch_size=32, epochs=1, device="cpu",
                eval_samples=500, max_iters_per_epoch=3, seed=3)
out = {}
for name in sys.argv[1:]:
    t = Trainer(resolve_graph(name), c, data=load_dataset("digits", 16), evaluator=object())
    rows = []
    for real in t.data.batches(c.batch_size, t.rng):
        if len(rows) == 3:
            break
        rows.append({k: float(v) for k, v in t.train_step(real).items()})
    out[name] = rows
print(json.dumps(out))
"""


def _run_steps(checkout: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    res = subprocess.run([sys.executable, "-c", _STEPS, *sorted(MAIN_LOSSES)], env=env,
                         cwd=checkout, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_one_d_losses_bit_identical_to_the_code_before_several_ds(tmp_path):
    """Today's code and the commit before several discriminators existed, on this
    machine, in two fresh interpreters: the same floats, bit for bit."""
    repo = Path(__file__).resolve().parents[1]
    archive = tmp_path / "before.tar"
    made = subprocess.run(["git", "-C", str(repo), "archive", "-o", str(archive),
                           BEFORE_MULTI_D, "ktg_search"], capture_output=True, text=True)
    if made.returncode != 0:  # a checkout without its history (an sdist, a shallow clone)
        pytest.skip(f"commit {BEFORE_MULTI_D} is not in this checkout's history: "
                    f"{made.stderr.strip()[:200]}")
    before = tmp_path / "before"
    with tarfile.open(archive) as tar:
        tar.extractall(before, filter="data")
    old, new = _run_steps(before), _run_steps(repo)
    assert set(old) == set(new) == set(MAIN_LOSSES)
    assert new == old  # exact: the same kernels on the same machine


def mggan(k=2, regroup=None, **extra) -> Graph:
    spec = {"nodes": [SMALL] * k, "discriminators": k,
            "edges": [{"src": f"D{j}", "dst": j, "gate": "through"} for j in range(k)],
            **extra}
    if regroup is not None:
        spec["regroup"] = regroup
    return Graph.from_dict(spec)


def test_each_d_trains_on_the_generators_it_faces(digits16):
    """D1 faces only G1: its loss is the cross-entropy over real (class k) + G1's fakes,
    recomputed here on copies of D1 and G1 taken before the step."""
    import copy
    g = mggan()
    t = Trainer(g, cfg(), data=digits16, evaluator=object())
    assert len(t.multi.nets) == 2 and t.multi.nets[0] is t.D
    assert t.multi.faced(0) == [0] and t.multi.faced(1) == [1]
    d1 = copy.deepcopy(t.multi.nets[1])
    g1 = copy.deepcopy(t.generators[1])
    d0 = [p.detach().clone() for p in t.D.parameters()]
    real = next(iter(digits16.batches(32, t.rng)))
    saved = t.rng.get_state()
    z_d = torch.randn(2, 32, t.config.nz, generator=t.rng)  # the D step's z, replayed
    t.rng.set_state(saved)
    with torch.no_grad():
        logits = d1(torch.cat([real.float(), g1(z_d[1])[0]]))
    labels = torch.tensor([2] * 32 + [1] * 32)
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    row = t.train_step(real)
    assert row["d_loss_1"] == pytest.approx(expected, rel=1e-5)
    assert row["d_loss"] == pytest.approx((row["d_loss_0"] + row["d_loss_1"]) / 2)
    # both discriminators and both their optimizers stepped
    assert any(not torch.equal(a, b) for a, b in zip(d1.parameters(),
                                                     t.multi.nets[1].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, t.D.parameters()))
    assert t.multi.opts[1].state and t.multi.opts[0] is t.opt_d


def test_generator_adversarial_term_sums_over_its_discriminators(digits16):
    """G0 faced by D0 and D1 (both through): L_0 = L_{D0,0} + L_{D1,0}; G1 by D1 only.
    The logits each D gave in the G step are recorded by hooks and the losses recomputed
    from them by the equation."""
    g = Graph.from_dict({"nodes": [SMALL] * 2, "discriminators": 2, "edges": [
        {"src": "D0", "dst": 0, "gate": "through"}, {"src": "D1", "dst": 0, "gate": "through"},
        {"src": "D1", "dst": 1, "gate": "through"}]})
    t = Trainer(g, cfg(), data=digits16, evaluator=object())
    assert t.multi.faced(1) == [0, 1]
    seen = {}

    def hook(j):
        def record(module, inputs, output):
            if not next(module.parameters()).requires_grad:  # the G step: D is fixed
                seen[j] = output.detach().float()
        return record
    for j, net in enumerate(t.multi.nets):
        net.register_forward_hook(hook(j))
    row = t.train_step(next(iter(digits16.batches(32, t.rng))))
    ce = torch.nn.functional.cross_entropy
    fake = torch.full((32,), 2)
    l00 = ce(seen[0], fake).item()                     # D0 judged G0 only
    l10, l11 = (ce(x, fake).item() for x in seen[1].view(2, 32, 3))  # D1: G0 then G1
    assert row["g_loss_0"] == pytest.approx(l00 + l10, rel=1e-5)
    assert row["g_loss_1"] == pytest.approx(l11, rel=1e-5)
    # teeth: one D's term alone is not the loss
    assert row["g_loss_0"] != pytest.approx(l00, rel=1e-2)


def run_epochs(t: Trainer, n: int) -> list[dict]:
    return [t.train_epoch() for _ in range(n)]


def test_checkpoint_holds_every_d_and_resume_is_exact(digits16, tmp_path):
    g = mggan(k=3)
    a = Trainer(g, cfg(epochs=2), data=digits16, evaluator=object())
    la = run_epochs(a, 2)
    b = Trainer(g, cfg(epochs=2), data=digits16, evaluator=object())
    run_epochs(b, 1)
    b.save(tmp_path / "ck.pt")
    c = Trainer.restore(tmp_path / "ck.pt", data=digits16, evaluator=object())
    assert c.train_epoch() == la[1]
    for x, y in zip(a.multi.nets, c.multi.nets):
        assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters()))
    # teeth: a restore that dropped D2's weights would not be the same run
    d = Trainer.restore(tmp_path / "ck.pt", data=digits16, evaluator=object())
    d.multi.nets[2].load_state_dict(Trainer(g, cfg(), data=digits16,
                                            evaluator=object()).multi.nets[2].state_dict())
    assert d.train_epoch() != la[1]


def test_one_d_checkpoint_without_multi_key_still_loads(digits16, tmp_path):
    t = Trainer(resolve_graph("mad-gan-2"), cfg(), data=digits16, evaluator=object())
    t.train_epoch()
    state = t.state_dict()
    del state["multi_d"]  # what every checkpoint written before several Ds holds
    torch.save(state, tmp_path / "old.pt")
    u = Trainer.restore(tmp_path / "old.pt", data=digits16, evaluator=object())
    assert u.iteration == 3 and u.multi is None
    # a several-D graph refuses a one-D checkpoint, naming both
    two = Trainer(mggan(), cfg(), data=digits16, evaluator=object())
    with pytest.raises(KtgError, match="holds one discriminator, but the graph has 2"):
        two.load_state_dict(state, "old.pt")


# ---- regrouping ----------------------------------------------------------------------
def test_regroup_schedule_by_the_interval_rule():
    r = check_regroup({"T0": 4, "xi": 1.5, "T_max": 8}, 2)
    # T: 4, 6, 8 (capped), 8 -> regroup at 4, 10, 18, 26, 34
    assert regroup_iterations(r, 34) == [4, 10, 18, 26, 34]
    assert regroup_iterations(r, 33) == [4, 10, 18, 26]
    r = check_regroup({"T0": 1, "xi": 1.1, "T_max": 100}, 2)
    expected, at, interval = [], 1.0, 1.0
    while round(at) <= 20:
        expected.append(round(at))
        interval = min(interval * 1.1, 100.0)
        at += interval
    assert regroup_iterations(r, 20) == expected


def test_pairings_are_derangements_and_seeded():
    r = check_regroup({"T0": 2, "xi": 2, "T_max": 2, "seed": 5}, 4)
    seen = [roles_at(r, 4, i) for i in range(0, 12)]
    assert seen[0] == ([0, 1, 2, 3], 0) and seen[1] == ([0, 1, 2, 3], 0)
    for before, after in zip(seen, seen[1:]):
        if after[1] != before[1]:  # a regrouping: every role gets another network
            assert sorted(after[0]) == [0, 1, 2, 3]
            assert all(x != y for x, y in zip(before[0], after[0]))
        else:
            assert after[0] == before[0]
    assert [n for _, n in seen] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    other = check_regroup({"T0": 2, "xi": 2, "T_max": 2, "seed": 6}, 4)
    assert [roles_at(other, 4, i)[0] for i in range(12)] != [s[0] for s in seen]
    # with two discriminators the only other pairing is the swap
    two = check_regroup({"T0": 3}, 2)
    assert roles_at(two, 2, 3)[0] == [1, 0] and roles_at(two, 2, 200)[0] == [0, 1]


def test_resume_between_regroupings_matches_an_uninterrupted_run(digits16, tmp_path):
    """Regroup after 2, 5 (T: 2, 3) and 9 iterations; 3 iterations an epoch; the "kill"
    (save, then restore in a fresh trainer) falls between the regroupings at 2 and 5."""
    g = mggan(k=3, regroup={"T0": 2, "xi": 1.5, "T_max": 4, "seed": 1,
                            "lr_rule": {"a": 1, "delta": 0.5, "max_ratio": 1.5,
                                        "vrl_max": 10.0}})
    a = Trainer(g, cfg(epochs=4), data=digits16, evaluator=object())
    pairings_a, la = [], []
    for _ in range(4):
        la.append(a.train_epoch())
        pairings_a.append((a.iteration, list(a.multi.roles), a.multi.regroupings))
    b = Trainer(g, cfg(epochs=4), data=digits16, evaluator=object())
    b.train_epoch()
    b.save(tmp_path / "ck.pt")
    del b
    c = Trainer.restore(tmp_path / "ck.pt", data=digits16, evaluator=object())
    pairings_c, lc = [pairings_a[0]], []
    for _ in range(3):
        lc.append(c.train_epoch())
        pairings_c.append((c.iteration, list(c.multi.roles), c.multi.regroupings))
    assert lc == la[1:]
    assert pairings_c == pairings_a
    assert [n for _, _, n in pairings_a] == [1, 2, 2, 3]  # regroupings by 3, 6, 9, 12 its
    assert c.multi.lr.state_dict() == a.multi.lr.state_dict()
    assert c.opt_g.param_groups[0]["lr"] == a.opt_g.param_groups[0]["lr"]


def test_lr_rule_follows_algorithm_1():
    r = check_regroup({"T0": 10, "xi": 2, "T_max": 10,
                       "lr_rule": {"a": 2, "delta": 0.1, "max_ratio": 1.2,
                                   "vrl_max": 0.5}}, 2)
    rule = LrRule(r)
    # regroupings at 10, 20: regions [8, 12] and [18, 22]; back to L0 at 13 and 23
    factors = {}
    for i in range(1, 25):
        factors[i] = rule.update(i, 1.0)  # a flat loss: VRL = 0 <= 0.5 from i = 2 on
    assert factors[7] == 1.0
    assert factors[8] == pytest.approx(1.1)
    assert factors[9] == pytest.approx(1.2)  # 1.21 capped at 1.2 x L0
    assert factors[12] == pytest.approx(1.2)
    assert factors[13] == 1.0 and factors[17] == 1.0
    assert factors[18] == pytest.approx(1.1)
    # a loss that moves a lot (VRL > threshold) does not raise the rate
    moving = LrRule(r)
    for i in range(1, 13):
        f = moving.update(i, 1.0 if i % 2 else 3.0)
    assert f == 1.0 and moving.scale == 1.0
    assert math.isclose(LrRule(check_regroup({"lr_rule": False}, 2)).update(9, 1.0), 1.0)


@pytest.mark.parametrize("regroup, expected", [
    ({"xi": 1.0}, "regroup.xi is 1.0; valid: a number > 1"),
    ({"xi": 0.5}, "regroup.xi is 0.5"),
    ({"T0": 0}, "regroup.T0 is 0; valid: an integer from 1"),
    ({"T0": 2.5}, "regroup.T0 is 2.5"),
    ({"T0": 10, "T_max": 5}, "regroup.T_max is 5; valid: an integer from T0 (10)"),
    ({"lr_rule": {"max_ratio": -1}}, "regroup.lr_rule.max_ratio is -1"),
    ({"lr_rule": {"delta": -0.1}}, "regroup.lr_rule.delta is -0.1"),
    ({"lr_rule": {"speed": 1}}, "regroup.lr_rule has 'speed'; valid: false, true"),
    ({"period": 3}, "`regroup` has 'period'; valid: an object with fields T0, T_max"),
])
def test_bad_regroup_settings(regroup, expected):
    with pytest.raises(KtgError) as e:
        mggan(regroup=regroup)
    assert expected in str(e.value)
