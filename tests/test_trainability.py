"""The trainability rule (method/trainability.py) against a one-step autograd probe of
the real Trainer, and the trainable count of a space against enumeration."""
from __future__ import annotations

import itertools
import math

import optuna
import pytest
import torch

from ktg_search.data.loading import load_dataset
from ktg_search.method.graph import Graph, builtin_graphs, resolve_graph
from ktg_search.method.trainability import (output_dead_nodes, trainable_gate_count,
                                            untrainable_reason)
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer
from ktg_search.registry import GATES, TRANSFERS, transfer_layers
from ktg_search.search.config import load_preset, presets
from ktg_search.search.space import SpaceSpec

PROGRESS = (0.0, 0.5, 1.0)
N_RANDOM = 200


def test_gate_metadata_matches_weights():
    """`blocks` is the truth of the gate function: zero weight at every progress."""
    for name in GATES:
        gate = GATES.get(name)
        never = not gate.needs_verdict and all(gate.weight(p) == 0 for p in PROGRESS)
        assert gate.blocks == never, name
    assert [n for n in GATES if GATES.get(n).blocks] == ["cutoff"]


def test_transfer_metadata_matches_implementation():
    for name in TRANSFERS:
        impl = TRANSFERS.get(name).kind()
        layers = None if impl.layers is None else tuple(impl.layers)
        assert transfer_layers(name) == layers, name


@pytest.fixture(scope="module")
def probe_setup():
    cfg = TrainConfig(dataset="synthetic:16", image_size=16, batch_size=4, epochs=1,
                      nz=8, d_width=8, device="cpu", fid=False, eval_samples=10,
                      discriminator="sn")
    data = load_dataset(cfg.dataset, cfg.image_size)
    real = next(iter(data.batches(cfg.batch_size, torch.Generator().manual_seed(0))))
    return cfg, data, real


_cache: dict[tuple, set[int]] = {}
_trainers: dict[tuple, Trainer] = {}


def probe_output_learners(graph: Graph, setup) -> set[int]:
    """The learning nodes whose output layer (`to_image`) gets a non-zero gradient in one
    real G step at p = 0, 0.5 or 1.

    The probe runs the Trainer's own `train_step`. Two substitutions, both outside what the
    rule decides: `correct` (per sample) is probed as `through` (it passes the samples on
    which the source is right, and at some step of a run there are such samples; a random
    D may call none right in one step), and a pretrained node is probed without its
    checkpoint (frozen and dead nodes alike are not learning nodes, whose edges the
    trainer detaches). Cached by the exact gate assignment (no renumbering: the answer
    names nodes)."""
    cfg, data, real = setup
    gates = {e: ("through" if g == "correct" else g) for e, g in graph.gates.items()}
    key = (tuple(n.model for n in graph.nodes), graph.transfer,
           tuple(sorted((str(s), t, g) for (s, t), g in gates.items())))
    if key in _cache:
        return _cache[key]
    g = Graph([type(n)(n.model) for n in graph.nodes], gates, graph.transfer,
              graph.alpha, "sn", discriminators=graph.m)
    # one Trainer per (models, transfer), built for every node learning, then pointed at
    # this graph: train_step reads the graph's gates and the learning nodes from it
    base = (key[0], graph.transfer, graph.m)
    if base not in _trainers:
        every = {e: "through" for e in Graph.edge_list(g.k, g.m)}
        _trainers[base] = Trainer(Graph(g.nodes, every, g.transfer, g.alpha, "sn",
                                        discriminators=g.m), cfg,
                                  data=data, evaluator=object())
    trainer = _trainers[base]
    trainer.graph, trainer.learning = g, g.learning_nodes()
    learned = set()
    for p in PROGRESS:
        trainer.iteration = round(p * trainer.total_iters)
        assert trainer.progress() == p
        for gen in trainer.generators:
            gen.zero_grad(set_to_none=True)
        trainer.train_step(real)
        for t in trainer.learning:
            grad = trainer.generators[t].to_image.weight.grad
            if grad is not None and grad.abs().sum() > 0:
                learned.add(t)
        if learned == set(trainer.learning):  # nothing left to find at a later p
            break
    _cache[key] = learned
    return learned


def check_rule(graph: Graph, setup) -> bool:
    """The rule's verdict equals the probe's, node by node; True when untrainable."""
    learning = set(graph.learning_nodes())
    dead_by_rule = set(output_dead_nodes(graph))
    learned = probe_output_learners(graph, setup)
    assert learning - learned == dead_by_rule, (graph.to_dict(), learned)
    return untrainable_reason(graph) is not None


def test_rule_matches_probe_on_builtin_graphs(probe_setup):
    verdicts = {name: check_rule(resolve_graph(name), probe_setup)
                for name in builtin_graphs()}
    # the paper's graphs all train (D edges through): teeth come from the cases below
    assert not any(verdicts.values()), verdicts


def test_rule_teeth(probe_setup):
    """Hand-made cases with a known answer: a feature-only node is output-dead under
    feature_in and feature_out, trains under image; a linear_up D edge (0 at p = 0)
    still trains it; a frozen teacher is not a learning node."""
    edges = {("D", 0): "through", (0, 1): "linear_down"}
    for transfer, dead in (("feature_in", {1}), ("feature_out", {1}), ("image", set())):
        g = Graph.build(["dcgan-small"] * 2, edges, transfer=transfer)
        assert set(output_dead_nodes(g)) == dead
        assert check_rule(g, probe_setup) == bool(dead)
    g = Graph.build(["dcgan-small"] * 2, {**edges, ("D", 1): "linear_up"})
    assert not check_rule(g, probe_setup)
    reason = untrainable_reason(Graph.build(["dcgan-small"] * 2, edges))
    assert "node 1" in reason and "0 -> 1 (linear_down)" in reason and "D -> 1" in reason
    teacher = Graph.from_dict({"nodes": [{"model": "dcgan-small"},
                                         {"model": "dcgan-small", "pretrained": "t.pt"}],
                               "edges": [{"src": 1, "dst": 0, "gate": "through"}]})
    assert teacher.learning_nodes() == [0]
    assert set(output_dead_nodes(teacher)) == {0}
    assert untrainable_reason(Graph.build(["dcgan-small"] * 2, {})) is not None


def _random_graphs(spec: SpaceSpec, n: int, seed: int) -> list[Graph]:
    """n graphs of the space, sampled through its own define-by-run with Optuna's
    RandomSampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = spec.define_by_run(trial)
        out.append(spec.graph({**trial.params, **fixed}))
        study.tell(trial, 0.0)
    return out


@pytest.mark.slow  # did not finish within 10 min on the shared 2-core machine: see report
@pytest.mark.parametrize("preset", sorted(presets()))
def test_rule_matches_probe_on_random_graphs_of_each_preset(preset, probe_setup):
    spec = load_preset(preset).space
    graphs = _random_graphs(spec, N_RANDOM, seed=27)
    untrainable = sum(check_rule(g, probe_setup) for g in graphs)
    # the share the count predicts (58% of the quick space, issue 27), within sampling
    share = 1 - spec.trainable_size() / spec.size()
    assert untrainable / N_RANDOM == pytest.approx(share, abs=0.1)


@pytest.mark.slow
def test_rule_matches_probe_on_every_gate_and_transfer(probe_setup):
    """A space beyond the presets': every gate (correct included) and transfer kind."""
    spec = SpaceSpec(k=3, gates=tuple(GATES.names()), transfer=tuple(TRANSFERS.names()),
                     models=("dcgan-small", "dcgan-medium"))
    verdicts = [check_rule(g, probe_setup) for g in _random_graphs(spec, 100, seed=5)]
    assert any(verdicts) and not all(verdicts)


def _enumerate(k: int, gates: tuple[str, ...], transfer: str) -> int:
    edges = Graph.edge_list(k)
    n = 0
    for combo in itertools.product(gates, repeat=len(edges)):
        g = Graph([type(resolve_graph("dcgan").nodes[0])("dcgan-small")] * k,
                  dict(zip(edges, combo, strict=True)), transfer)
        n += untrainable_reason(g) is None
    return n


@pytest.mark.parametrize("k,gates,transfer", [
    (1, ("through", "cutoff"), "feature_out"),
    (2, ("through", "cutoff", "linear_up", "linear_down"), "feature_out"),
    (2, ("through", "cutoff", "linear_up", "linear_down"), "image"),
    (2, tuple(GATES.names()), "feature_in"),
    (2, ("through", "linear_up"), "feature_out"),
    (3, ("through", "cutoff"), "feature_in"),
    (3, ("cutoff", "correct"), "image"),
])
def test_trainable_count_equals_enumeration(k, gates, transfer):
    assert trainable_gate_count(k, gates, transfer) == _enumerate(k, gates, transfer)


def test_space_trainable_size():
    spec = load_preset("quick").space
    # by the equation: per node 1^3 + 3 * 4^2 = 49 ways, 49^3 - 1 all-cut graph, x 3 alphas
    assert spec.trainable_size() == (49 ** 3 - 1) * 3
    assert spec.size() == 4 ** 9 * 3
    # issue 27's 1 - (3/4)^3 = 57.8% counted a node with every incoming edge cut as dead
    # too; such a node does not learn at all (not untrainable by the rule): 55.1% here


def test_validate_warns_with_the_reason(tmp_path, capsys):
    """`ktg validate` names the node and edges of an untrainable graph file, exit 0; a
    trainable one gets no warning."""
    from ktg_search.cli import main
    bad = Graph.build(["dcgan-small"] * 2, {("D", 0): "through", (0, 1): "linear_up"})
    path = tmp_path / "bad.json"
    bad.save(path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path} is untrainable: node 1 learns only from feature_out" in out
    assert "0 -> 1 (linear_up)" in out and "D -> 1 is cutoff" in out
    assert main(["validate", "mad-gan-3"]) == 0
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 1])
def test_tpe_told_pruned_learns_to_avoid_untrainable_graphs(seed):
    """What the search tells Optuna for an untrainable graph (no value: `study.tell`
    with PRUNED) steers TPE away from the region; the random sampler keeps drawing it at
    the space's rate. Scores of trainable graphs are noise here, so whatever TPE learns
    comes from the pruned trials alone."""
    import random

    from ktg_search.search.study import tell
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_preset("digits").space
    share = 1 - spec.trainable_size() / spec.size()
    late = {}
    for name, sampler in (("random", optuna.samplers.RandomSampler(seed=seed)),
                          ("tpe", optuna.samplers.TPESampler(seed=seed))):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        noise, dead = random.Random(seed), []
        for _ in range(200):
            trial = study.ask()
            fixed = spec.define_by_run(trial)  # samples first: trial.params fills here
            graph = spec.graph({**trial.params, **fixed})
            dead.append(untrainable_reason(graph) is not None)
            tell(study, trial, math.nan if dead[-1] else noise.uniform(1, 6), False)
        assert sum(t.state.name == "PRUNED" for t in study.trials) == sum(dead)
        late[name] = sum(dead[100:]) / 100
    assert late["random"] == pytest.approx(share, abs=0.15), late
    assert late["tpe"] < share / 2, late
