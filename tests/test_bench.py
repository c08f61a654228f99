"""`ktg bench`: the engine against the literal reference of the paper's algorithm.

The equivalence asserted here is real: two independent implementations of one iteration,
started from the same weights and fed the same batches and z, must report the same D and
G losses; the probes show that the check has teeth (a different number of spectral-norm
power iterations is caught).
"""
from __future__ import annotations

import pytest
import torch

from ktg_search.studies import bench
from ktg_search.method import reference
from ktg_search.method.graph import resolve_graph
from ktg_search.method.models import SNDiscriminator, same_sigma


def test_same_sigma_stops_the_power_iteration_only_inside():
    d = SNDiscriminator(16, 1, 4, ndf=8).train()
    x = torch.randn(2, 1, 16, 16)
    u0 = d.head.weight_u.clone()
    with same_sigma(d):
        y_in = d(x)
    assert torch.equal(d.head.weight_u, u0)   # no power iteration inside
    assert d.head.training                    # flags restored
    d(x)
    assert not torch.equal(d.head.weight_u, u0)  # torch's default again outside
    with same_sigma(d):
        y1, y2 = d(x), d(x)
    assert torch.equal(y1, y2)  # the same W / sigma on every call inside
    assert y_in.shape == (2, 4)


def test_small_bench_run_engine_matches_reference():
    msgs: list[str] = []
    res = bench.run_bench(steps=3, batch_size=32, cases=["digits-16"], progress=msgs.append,
                          eval_samples=200, probes=False)
    assert msgs and all(m.startswith("digits-16") for m in msgs)
    for key in ("steps", "batch_size", "cases", "max_loss_diff", "min_speedup",
                "peak_rss_mb", "targets", "equivalent", "fast_enough", "torch", "threads"):
        assert key in res, key
    (case,) = res["cases"]
    assert case["case"] == "digits-16" and case["channels"] == 1
    # the equivalence: same z draws, same Adam state, losses within 1e-4 over 5 steps
    assert case["same_z"] and case["adam_steps_match"]
    # every step from identical state: the same losses, on both graphs
    assert 0.0 <= case["loss_diff"]["through-3"] < bench.TARGET_LOSS_DIFF
    assert 0.0 <= case["loss_diff"]["mixed-3"] < bench.TARGET_LOSS_DIFF
    assert res["max_loss_diff"] < bench.TARGET_LOSS_DIFF and res["equivalent"]
    # free-running the gap only grows from rounding (Adam's first step); still small
    assert case["max_loss_diff_free"] < 10 * bench.TARGET_LOSS_DIFF
    for key in ("engine_steps_per_s", "reference_steps_per_s", "speedup", "eval_s",
                "eval_first_s", "peak_rss_mb", "matmul_gflops", "engine_gflops"):
        assert case[key] > 0, key
    # every timed step of both sides took time (a timer that never ran reads 0)
    for side in ("engine", "reference"):
        assert len(case["step_s"][side]) == 3
        assert all(t > 0 for t in case["step_s"][side]), side
    assert case["engine_steps_per_s"] == pytest.approx(3 / sum(case["step_s"]["engine"]))
    # the same arithmetic on both sides (FLOPs counted by torch, not by us), and the bound
    # is the reference's median step over the engine's FLOPs at the matmul rate
    assert case["engine_gflop"] > 0
    assert case["engine_gflop"] == pytest.approx(case["reference_gflop"], rel=1e-6)
    t_ref = sorted(case["step_s"]["reference"])[1]
    assert case["speedup_bound"] == pytest.approx(
        t_ref * case["matmul_gflops"] / case["engine_gflop"], rel=1e-6)
    assert set(case["eval_scores"]) >= {"is_g0", "is_g1", "is_g2"}
    text = bench.format_bench(res)
    assert "digits-16" in text and "speedup" in text
    # the m = 3 case (issue 20): multi-d-3 against through-3, timed in the same run
    md = res["multi_d"]
    assert md["graph_m3"] == "multi-d-3" and md["graph_m1"] == "through-3"
    assert md["steps"] == 3 and md["step_s_m1"] > 0 and md["step_s_m3"] > 0
    assert md["ratio"] == pytest.approx(md["step_s_m3"] / md["step_s_m1"])
    assert "m=3 costs" in text


def test_the_equivalence_check_can_fail(digits16):
    """Differences the check must see: a power iteration on every D call (torch's
    default for separate passes) is a different D; with no D edge active at p = 0 the
    engine leaves the generators' last conv without a gradient, so Adam counts one step
    fewer there than the literal "multiply by 0"."""
    cfg = bench._config("digits", 16, 32, max_iters_per_epoch=4)
    batches = bench._batches(digits16, 32, 2, seed=1)
    per_call = reference.equivalence(resolve_graph("through-3"), cfg, digits16, batches,
                                 sn="per_call")
    assert per_call["same_z"] and per_call["max_loss_diff"] > 10 * bench.TARGET_LOSS_DIFF
    zw = reference.equivalence(bench.zero_weight_graph(), cfg, digits16, batches)
    assert sorted(zw["adam_step_mismatch"]) == [f"G{i}.to_image.weight" for i in range(3)]


@pytest.mark.parametrize("weighting", ["paper_steps", "uniform"])  # quick's, digits'
def test_recipe_case_matches_the_reference_and_the_check_can_fail(digits16, monkeypatch,
                                                                   weighting):
    """The issue-10 recipe (standard-CNN SN D, either D loss weighting, EMA,
    resolution-aware alpha): the reference implements each piece itself; dropping one of
    them there is seen."""
    cfg = bench._config("digits", 16, 32, max_iters_per_epoch=4,
                        **{**bench.RECIPE, "d_loss_weighting": weighting})
    batches = bench._batches(digits16, 32, 3, seed=1)
    graph = resolve_graph("through-3-image")
    eq = reference.equivalence(graph, cfg, digits16, batches, stepwise=True)
    assert eq["d_kind"] == "sn-cnn" and eq["same_z"] and not eq["adam_step_mismatch"]
    assert eq["max_loss_diff"] < bench.TARGET_LOSS_DIFF
    assert eq["ema_diff"] is not None and eq["ema_diff"] < bench.TARGET_LOSS_DIFF
    # teeth 1: a reference that ignores the resolution-aware scale (plain alpha / N)
    plain = reference.ReferenceTrainer._transfer_loss
    monkeypatch.setattr(reference.ReferenceTrainer, "_transfer_loss",
                        lambda self, s, d: self.transfer(s, d, self.graph.alpha))
    eq_plain = reference.equivalence(graph, cfg, digits16, batches, stepwise=True)
    assert eq_plain["max_loss_diff"] > 10 * bench.TARGET_LOSS_DIFF
    monkeypatch.setattr(reference.ReferenceTrainer, "_transfer_loss", plain)
    # teeth 2: a reference without the EMA update
    monkeypatch.setattr(reference.ReferenceTrainer, "_ema_update", lambda self: None)
    eq_ema = reference.equivalence(graph, cfg, digits16, batches, stepwise=True)
    assert eq_ema["max_loss_diff"] < bench.TARGET_LOSS_DIFF
    assert eq_ema["ema_diff"] > 10 * bench.TARGET_LOSS_DIFF


def test_one_fake_class_matches_the_reference_and_the_check_can_fail(digits16, monkeypatch):
    """d_classes = fake in the engine and in the reference (its own per-part passes); a
    reference that keeps the identity classes is seen."""
    cfg = bench._config("digits", 16, 32, max_iters_per_epoch=4,
                        **{**bench.RECIPE, "d_classes": "fake"})
    batches = bench._batches(digits16, 32, 3, seed=1)
    graph = resolve_graph("mad-gan-3")
    eq = reference.equivalence(graph, cfg, digits16, batches, stepwise=True)
    assert eq["same_z"] and eq["max_loss_diff"] < bench.TARGET_LOSS_DIFF
    monkeypatch.setattr(reference, "fake_class", lambda i, d_classes="generators": i)
    eq_ids = reference.equivalence(graph, cfg, digits16, batches, stepwise=True)
    assert eq_ids["max_loss_diff"] > 10 * bench.TARGET_LOSS_DIFF


def test_reference_gates_written_from_the_definitions():
    right = torch.tensor([True, False, True])
    assert reference.gate_factor("cutoff", 0.3, right) is None  # not computed at all
    assert reference.gate_factor("through", 0.3, right).tolist() == [1.0, 1.0, 1.0]
    assert reference.gate_factor("linear_up", 0.25, right).tolist() == [0.25] * 3
    assert reference.gate_factor("linear_down", 0.25, right).tolist() == [0.75] * 3
    assert reference.gate_factor("correct", 0.3, right).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="sideways"):
        reference.gate_factor("sideways", 0.3, right)


def test_the_check_sees_the_correct_gates_verdict(digits16, monkeypatch):
    """mixed-3 has correct gates on D -> 2 and 1 -> 0: the reference computes their verdict
    itself, so a reference that reads D's verdict the other way round is caught."""
    cfg = bench._config("digits", 16, 32, max_iters_per_epoch=4)
    batches = bench._batches(digits16, 32, 2, seed=1)
    eq = reference.equivalence(bench.mixed_graph(), cfg, digits16, batches, stepwise=True)
    assert eq["max_loss_diff"] < bench.TARGET_LOSS_DIFF
    plain = reference.gate_factor
    monkeypatch.setattr(reference, "gate_factor", lambda g, p, right: plain(g, p, ~right))
    flipped = reference.equivalence(bench.mixed_graph(), cfg, digits16, batches,
                                    stepwise=True)
    assert flipped["max_loss_diff"] > 10 * bench.TARGET_LOSS_DIFF
