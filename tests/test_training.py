"""The trainer: real training steps on CPU, each claim checked against an independent
computation or an untrained baseline."""
from __future__ import annotations

import math

import pytest
import torch

from ktg_search.method.graph import Graph, resolve_graph
from ktg_search.method.steps import read_losses  # train_step's device tensors as floats
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer

torch.set_num_threads(2)


def cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", image_size=16, batch_size=32, epochs=2, device="cpu",
                eval_samples=500, max_iters_per_epoch=6)
    base.update(kw)
    return TrainConfig(**base)


def params_of(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_same_seed_same_run_and_resume_is_exact(digits16, evaluator16, tmp_path):
    g = resolve_graph("through-2")
    a = Trainer(g, cfg(), data=digits16, evaluator=evaluator16)
    la = [a.train_epoch(), a.train_epoch()]
    b = Trainer(g, cfg(), data=digits16, evaluator=evaluator16)
    b.train_epoch()
    b.save(tmp_path / "ck.pt")
    c = Trainer.restore(tmp_path / "ck.pt", data=digits16, evaluator=evaluator16)
    lc = c.train_epoch()
    assert lc == la[1]  # resumed run continues bit-for-bit
    for pa, pc in zip(a.generators.parameters(), c.generators.parameters()):
        assert torch.equal(pa, pc)
    d = Trainer(g, cfg(seed=1), data=digits16, evaluator=evaluator16)
    assert d.train_epoch() != la[0]  # a different seed is a different run


def test_progress_counts_iterations_against_the_plan(digits16, evaluator16):
    t = Trainer(resolve_graph("mad-gan-2"), cfg(epochs=3), data=digits16,
                evaluator=evaluator16)
    assert t.total_iters == 3 * 6
    t.train_epoch()
    assert t.progress() == pytest.approx(6 / 18)


def test_cutoff_and_zero_weight_edges_are_never_computed(digits16, evaluator16):
    calls = []
    g = Graph.build(["dcgan-small"] * 2, {("D", 0): "through", ("D", 1): "through",
                                          (0, 1): "linear_up", (1, 0): "cutoff"},
                    transfer="image")
    t = Trainer(g, cfg(epochs=1), data=digits16, evaluator=evaluator16)
    inner = t.transfer

    class Counting:  # the trainer prepares each output once and compares per edge
        def prepare(self, out):
            return inner.prepare(out)

        def compare(self, src, dst, alpha, positions=None):
            calls.append(t.progress())
            return inner.compare(src, dst, alpha, positions)
    t.transfer = Counting()
    t.train_epoch()
    # 6 iterations; linear_up has weight 0 at p = 0 (first step), cutoff never
    assert len(calls) == 5
    assert min(calls) > 0


def test_transfer_gradient_reaches_destination_only(digits16, evaluator16):
    # node 0 learns nothing (D -> 0 cutoff, 1 -> 0 cutoff) but teaches node 1
    g = Graph.build(["dcgan-small"] * 2, {("D", 1): "through", (0, 1): "through"},
                    transfer="feature_out")
    t = Trainer(g, cfg(epochs=1), data=digits16, evaluator=evaluator16)
    before0, before1 = params_of(t.generators[0]), params_of(t.generators[1])
    t.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(before0, t.generators[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before1, t.generators[1].parameters()))


def test_frozen_teacher_stays_bit_identical(digits16, evaluator16, tmp_path):
    teacher = Trainer(resolve_graph("dcgan-sn"), cfg(epochs=1), data=digits16,
                      evaluator=evaluator16)
    teacher.train_epoch()
    teacher.export_generator(0, tmp_path / "teacher.pt")
    g = Graph.from_dict({"nodes": [{"model": "dcgan-small", "pretrained":
                                    str(tmp_path / "teacher.pt")}, {"model": "dcgan-small"}],
                         "edges": [{"src": 0, "dst": 1, "gate": "through"},
                                   {"src": "D", "dst": 1, "gate": "through"}],
                         "transfer": "image"})
    t = Trainer(g, cfg(epochs=1), data=digits16, evaluator=evaluator16)
    assert t.frozen == {0}
    state = {k: v.clone() for k, v in t.generators[0].state_dict().items()}
    for a, b in zip(teacher.generators[0].state_dict().values(), state.values()):
        assert torch.equal(a, b)  # loaded the checkpoint, not a fresh init
    t.train_epoch()
    for k_, v in t.generators[0].state_dict().items():
        assert torch.equal(v, state[k_]), k_  # parameters and BN buffers alike


def test_evaluation_scores_the_learning_generators_mixture(digits16, evaluator16, tmp_path):
    """`is_mix`: image j from learning generator j mod m, on the evaluation's z_j; checked
    against the evaluator on images interleaved here. A frozen teacher is not part of it,
    and one learning generator has no mixture row (it is the mixture)."""
    from ktg_search.method.training import EVAL_SEED
    t = Trainer(resolve_graph("through-3"), cfg(epochs=1), data=digits16,
                evaluator=evaluator16)
    t.train_epoch()
    row = t.evaluate()
    n = t.config.eval_samples
    z = torch.randn(n, t.config.nz, generator=torch.Generator().manual_seed(EVAL_SEED))
    images = [t.sample(i, n, z=z) for i in range(3)]
    by_hand = torch.stack([images[j % 3][j] for j in range(n)])
    want = evaluator16.score(by_hand)
    assert row["is_mix"] == pytest.approx(want["is"], rel=1e-5)
    assert row["fid_mix"] == pytest.approx(want["fid"], rel=1e-4)
    for i in range(3):
        assert row[f"is_g{i}"] == pytest.approx(evaluator16.score(images[i])["is"], rel=1e-5)
    # a frozen teacher (node 0) and one learner: no mixture
    t.export_generator(0, tmp_path / "teacher.pt")
    g = Graph.from_dict({"nodes": [{"model": "dcgan-small", "pretrained":
                                    str(tmp_path / "teacher.pt")}, {"model": "dcgan-small"}],
                         "edges": [{"src": 0, "dst": 1, "gate": "through"},
                                   {"src": "D", "dst": 1, "gate": "through"}],
                         "transfer": "image"})
    row = Trainer(g, cfg(epochs=1), data=digits16, evaluator=evaluator16).evaluate()
    assert "is_mix" not in row and {"is_g0", "is_g1"} <= set(row)


def test_non_finite_loss_ends_as_diverged_not_a_crash(digits16, evaluator16):
    t = Trainer(resolve_graph("through-2"), cfg(epochs=3), data=digits16,
                evaluator=evaluator16)
    t.run_epoch()
    with torch.no_grad():
        next(t.generators[1].parameters()).fill_(float("nan"))
    row = t.run_epoch()
    assert t.status == "diverged" and row["status"] == "diverged"
    assert math.isfinite(row["objective"])  # the best before divergence is kept
    assert t.fit() == t.history and len(t.history) == 2  # fit does not go on


@pytest.mark.parametrize("graph", ["dcgan-sn", "through-3"])
def test_one_epoch_beats_an_untrained_generator(digits16, evaluator16, graph):
    # one epoch is 28 steps: far from good digits (see README), but measurably better than
    # the untrained generator, whose near-constant images give IS ~ 1.00001
    g = resolve_graph(graph)
    t = Trainer(g, cfg(epochs=1, batch_size=64, max_iters_per_epoch=None, beta1=0.0,
                       beta2=0.9), data=digits16, evaluator=evaluator16)
    untrained = evaluator16.score_generator(lambda n: t.sample(0, n, seed=3), 500)
    row = t.run_epoch()
    best = max(row[f"is_g{i}"] for i in range(g.k))
    assert best > untrained["is"] + 2e-4, (best, untrained["is"])
    assert min(row[f"fid_g{i}"] for i in range(g.k)) < 0.8 * untrained["fid"]
    assert row["objective"] == pytest.approx(best)


@pytest.mark.parametrize("objective, rule", [
    ("best", lambda v, mix: max(v)), ("weakest", lambda v, mix: min(v)),
    ("mean", lambda v, mix: sum(v) / len(v)), ("mixture", lambda v, mix: mix)])
def test_the_objective_is_the_named_rule_over_the_generators(digits16, evaluator16,
                                                             objective, rule):
    t = Trainer(resolve_graph("mad-gan-3"), cfg(epochs=2, objective=objective),
                data=digits16, evaluator=evaluator16)
    rows = [t.run_epoch(), t.run_epoch()]
    now = [rule([r[f"is_g{i}"] for i in range(3)], r["is_mix"]) for r in rows]
    assert [r["objective_now"] for r in rows] == pytest.approx(now)
    # the objective is the best epoch's value, and that epoch's weights are the ones kept
    assert rows[-1]["objective"] == pytest.approx(max(now))
    assert t.best_epoch == 1 + now.index(max(now))
    # the four rules differ on these scores, so a wrong rule cannot pass
    scores = [rows[0][f"is_g{i}"] for i in range(3)]
    assert max(scores) > min(scores) and rows[0]["is_mix"] not in scores


def test_the_mixture_objective_of_one_scored_generator_is_its_own_is(digits16, evaluator16):
    # a target node: the objective looks at it alone, whatever the other nodes mix to
    d = resolve_graph("mad-gan-3").to_dict()
    d["target"] = 1
    t = Trainer(Graph.from_dict(d), cfg(epochs=1, objective="mixture"), data=digits16,
                evaluator=evaluator16)
    row = t.run_epoch()
    assert row["objective_now"] == pytest.approx(row["is_g1"]) and "is_mix" in row


def test_a_generator_without_a_score_leaves_the_epoch_unscored_unless_it_is_best():
    from ktg_search.method.scoring import objective_best, objective_mean, objective_weakest
    nan = float("nan")
    assert objective_best([2.0, nan, 3.0]) == 3.0
    assert math.isnan(objective_weakest([2.0, nan, 3.0]))
    assert math.isnan(objective_mean([2.0, nan]))
    assert objective_mean([1.0, 2.0, 4.5]) == pytest.approx(2.5)
    assert objective_weakest([4.0, 1.5, 3.0]) == 1.5
    assert all(math.isnan(f([])) for f in (objective_best, objective_weakest, objective_mean))
    from ktg_search.method.scoring import objective_mixture
    assert objective_mixture([1.0, 6.0], 4.25) == 4.25      # the mixture, not the parts
    assert math.isnan(objective_mixture([5.0, 6.0])) and math.isnan(objective_mixture([], nan))
    assert objective_best([2.0, 3.0], 9.0) == 3.0           # the others ignore it


def _d_step_loss_by_hand(t: Trainer, real: torch.Tensor, paper_steps: bool = False,
                         one_fake_class: bool = False) -> float:
    """Eq. 1 over a D step, with D called once per part as the paper's steps 1-3 do, on
    copies of the trainer's models and its next z; spectral norm's power iteration on the
    first call only (one per update of W). Averaged over every sample, or (paper_steps)
    as steps 1 and 2 repeated for each of the k generators: mean of k (real, G_i) pairs.
    `one_fake_class`: every generator's images are labelled class 0 (d_classes "fake")."""
    import copy
    import torch.nn.functional as F
    k, b = t.graph.k, real.shape[0]
    gens, d = copy.deepcopy(t.generators), copy.deepcopy(t.D)
    rng = torch.Generator().set_state(t.rng.get_state())
    z = torch.randn(k, b, t.config.nz, generator=rng)
    means = []
    with torch.no_grad():
        parts = [(real, k)] + [(gens[i](z[i])[0], 0 if one_fake_class else i)
                               for i in range(k)]
        for n, (x, label) in enumerate(parts):
            means.append(F.cross_entropy(d(x), torch.full((b,), label)).item())
            if n == 0:
                for m in d.modules():
                    if hasattr(m, "weight_u"):
                        m.training = False
    if paper_steps:
        return sum(means[0] + means[1 + i] for i in range(k)) / (2 * k)
    return sum(means) / (k + 1)


def _batches(data, n: int) -> list[torch.Tensor]:
    return [x for _, x in zip(range(n), data.batches(32, torch.Generator().manual_seed(0)))]


def test_batch_norm_discriminator_sees_real_and_fake_in_separate_passes(digits16,
                                                                        evaluator16):
    # the `dcgan` baseline: one D call over real + fake would pool their batch statistics
    (real,) = _batches(digits16, 1)
    auto = Trainer(resolve_graph("dcgan"), cfg(), data=digits16, evaluator=evaluator16)
    assert auto.d_per_part
    expected = _d_step_loss_by_hand(auto, real)
    assert auto.train_step(real)["d_loss"] == pytest.approx(expected, abs=1e-5)
    joint = Trainer(resolve_graph("dcgan"), cfg(d_passes="joint"), data=digits16,
                    evaluator=evaluator16)
    assert abs(joint.train_step(real)["d_loss"] - expected) > 1e-3  # the check has teeth


def test_spectral_norm_discriminator_same_loss_joint_or_per_part(digits16, evaluator16):
    # with SN, one call over the concatenation and one call per part are the same D (the
    # power iteration runs once per step either way), so the losses agree step after step
    batches = _batches(digits16, 3)
    runs = {}
    for mode in ("joint", "per_part"):
        t = Trainer(resolve_graph("through-3"), cfg(d_passes=mode), data=digits16,
                    evaluator=evaluator16)
        assert t.d_per_part == (mode == "per_part")
        expected = _d_step_loss_by_hand(t, batches[0])
        runs[mode] = [read_losses(t.train_step(x)) for x in batches]
        assert runs[mode][0]["d_loss"] == pytest.approx(expected, abs=1e-5)
    for a, b in zip(runs["joint"], runs["per_part"]):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key


def test_d_passes_setting_is_checked():
    with pytest.raises(Exception, match="d_passes.*'both'.*auto, joint, per_part"):
        cfg(d_passes="both").validate()


@pytest.mark.parametrize("key,default,value,by_hand,bad", [
    # paper_steps: real images half of the loss; fake: one class for every generator's
    # images (D judges real vs fake only)
    ("d_loss_weighting", "uniform", "paper_steps", {"paper_steps": True}, "half"),
    ("d_classes", "generators", "fake", {"one_fake_class": True}, "both")])
def test_d_step_settings_change_eq1_for_k3_and_not_for_k1(digits16, evaluator16, key,
                                                           default, value, by_hand, bad):
    (real,) = _batches(digits16, 1)
    k3 = Trainer(resolve_graph("mad-gan-3"), cfg(**{key: value}), data=digits16,
                 evaluator=evaluator16)
    expected = _d_step_loss_by_hand(k3, real, **by_hand)
    plain = _d_step_loss_by_hand(k3, real)
    assert abs(expected - plain) > 1e-3  # the two readings differ for k = 3
    assert k3.train_step(real)["d_loss"] == pytest.approx(expected, abs=1e-5)
    # for k = 1 the two readings are one and the same
    k1 = {v: Trainer(resolve_graph("dcgan-sn"), cfg(**{key: v}), data=digits16,
                     evaluator=evaluator16).train_step(real)["d_loss"].item()
          for v in (default, value)}
    assert k1[default] == pytest.approx(k1[value], abs=1e-6)
    with pytest.raises(Exception, match=f"{key}.*'{bad}'.*{default}, {value}"):
        cfg(**{key: bad}).validate()


@pytest.mark.parametrize("gate_0_1,judged", [("through", 1), ("correct", 2)])
def test_d_judges_only_the_images_an_active_edge_reads(digits16, evaluator16, gate_0_1,
                                                        judged):
    # node 0 never learns (no incoming edge) but teaches node 1; D's verdict on G_0's
    # images is needed only when the 0 -> 1 gate is `correct`
    g = Graph.build(["dcgan-small"] * 2, {("D", 1): "through", (0, 1): gate_0_1},
                    transfer="image")
    t = Trainer(g, cfg(), data=digits16, evaluator=evaluator16)
    sizes: list[int] = []
    t.D.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    batches = _batches(digits16, 3)
    for x in batches:
        t.train_step(x)
    b = 32
    # each step: the D step over real + 2 fake parts, then the G step over the judged parts
    assert sizes == [3 * b, judged * b] * len(batches)
    # and the losses are those of the literal reference, which runs D on every generator
    from ktg_search.method import reference
    eq = reference.equivalence(g, cfg(), digits16, batches, stepwise=True)
    assert eq["max_loss_diff"] < 1e-4 and not eq["adam_step_mismatch"]


# ---- the recipe's discriminator, transfer scale ------------------------------------------
@pytest.mark.parametrize("graph_d,recipe_d,built", [
    ("sn", None, "sn"), ("bn", None, "bn"), ("sn-cnn", None, "sn-cnn"),
    ("sn", "sn-cnn", "sn-cnn"), ("bn", "sn-cnn", "bn-cnn"), ("sn-cnn", "sn", "sn"),
    ("bn", "sn", "bn"), ("bn-cnn", "sn", "bn"), ("sn", "bn", "sn")])
def test_recipe_discriminator_rule(graph_d, recipe_d, built):
    # the graph keeps its normalisation, the recipe gives the architecture
    from ktg_search.method.trainconfig import effective_discriminator
    assert effective_discriminator(graph_d, recipe_d) == built


def test_recipe_discriminator_without_a_twin_is_one_clear_message():
    from ktg_search.method.trainconfig import effective_discriminator
    with pytest.raises(Exception, match="'sn-resnet' has no 'bn' twin.*'bn-resnet'"):
        effective_discriminator("bn", "sn-resnet")


def test_baselines_train_with_the_recipes_discriminator(digits16, evaluator16):
    from ktg_search.method.models import CNNDiscriminator, SNDiscriminator
    from torch import nn
    sn = Trainer(resolve_graph("dcgan-sn"), cfg(discriminator="sn-cnn", d_width=8),
                 data=digits16, evaluator=evaluator16)
    bn = Trainer(resolve_graph("dcgan"), cfg(discriminator="sn-cnn", d_width=8),
                 data=digits16, evaluator=evaluator16)
    plain = Trainer(resolve_graph("dcgan-sn"), cfg(d_width=8), data=digits16,
                    evaluator=evaluator16)
    assert (sn.d_kind, bn.d_kind, plain.d_kind) == ("sn-cnn", "bn-cnn", "sn")
    assert isinstance(sn.D, CNNDiscriminator) and isinstance(bn.D, CNNDiscriminator)
    assert isinstance(plain.D, SNDiscriminator)
    assert bn.d_per_part and not sn.d_per_part  # batch norm: one D call per part
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.D.modules())
    # the same layers: only the normalisation differs
    convs = [(m.in_channels, m.out_channels) for m in sn.D.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(m.in_channels, m.out_channels) for m in bn.D.modules()
                     if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("field,value,valid", [
    ("discriminator", "cnn", "one of sn, bn, sn-cnn, bn-cnn, sn-resnet, or null"),
    ("transfer_scale", "pixels", "one of plain, resolution")])
def test_recipe_settings_are_checked(field, value, valid):
    with pytest.raises(Exception, match=f"`{field}` is '{value}', but must be {valid}"):
        cfg(**{field: value}).validate()


@pytest.mark.parametrize("transfer,ratio", [("image", 1 / 16), ("feature_out", 1 / 4)])
def test_resolution_transfer_scale_in_training(digits16, evaluator16, transfer, ratio):
    # only transfer edges into node 1: its first G loss is the transfer loss alone, so at
    # 16 px the resolution-aware run reports exactly N / N_ref of the plain one
    g = Graph.build(["dcgan-small"] * 2, {("D", 0): "through", (0, 1): "through"},
                    transfer=transfer)
    (real,) = _batches(digits16, 1)
    losses = {s: read_losses(Trainer(g, cfg(transfer_scale=s), data=digits16,
                                         evaluator=evaluator16).train_step(real))
              for s in ("plain", "resolution")}
    assert losses["plain"]["g_loss_1"] > 0
    assert losses["resolution"]["g_loss_1"] == pytest.approx(
        ratio * losses["plain"]["g_loss_1"], rel=1e-5)
    assert losses["resolution"]["g_loss_0"] == pytest.approx(losses["plain"]["g_loss_0"],
                                                             rel=1e-6)
