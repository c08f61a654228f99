"""Baselines inside every search (issue 21): the graphs everyone knows, trained beside the
searched ones, so that a search says by itself whether searching paid.

The search setting `baselines` picks them: `true` (every preset) is `DEFAULT`, `false`
none, a list of names those. A name is one of

- `mad-gan`: the space's k generators (all the target model), one discriminator edge
  through into each, every generator -> generator edge cutoff: MAD-GAN, no transfer;
- `through`: the same nodes with every edge through (transfer everywhere), the space's
  first transfer kind at the middle of its alphas;
- a built-in graph (`ktg graphs`), e.g. `dcgan-sn`, `mad-gan-3`, `mggan-2`.

A baseline trains with the search's recipe (`train`; a graph file's own recipe is not
used) and budget, is never stopped early by ASHA, is not counted in `num_trials`, and
is a trial of the Optuna study (`enqueue_trial`, user attribute `baseline`), so that the
optuna CLI and dashboard list it. One the space can express (same k, gates, models,
transfer kind, alpha) is enqueued with its parameters: TPE learns from it like from any
trial. One it cannot (`dcgan-sn` in a k = 3 space) is enqueued without parameters and its
graph travels in the trial's config (`BASELINE_GRAPH`): TPE, which reads parameters, does
not see it, and no sampled parameter is recorded for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import KtgError
# BASELINE: trial config key, Optuna user attribute and results column
from ..method.graph import Graph, builtin_graphs
from ..method.params import BASELINE, BASELINE_GRAPH, edge_param

DERIVED = {"mad-gan": "the space's k generators, every generator edge cutoff (no transfer)",
           "through": "the space's k generators, every edge through"}
DEFAULT = ("mad-gan", "through", "dcgan-sn")
BASELINE_KEYS = (BASELINE, BASELINE_GRAPH)  # trial config keys that are not parameters


def baseline_choices() -> list[str]:
    """Every name the `baselines` setting takes."""
    return [*DERIVED, *builtin_graphs()]


@dataclass
class Baseline:
    """One baseline of a search: its name, its graph and, when the space can express it,
    the space's parameters for it (what is enqueued); None: outside the space."""
    name: str
    graph: Graph
    params: dict[str, Any] | None

    def trial_config(self) -> dict[str, Any]:
        """The config Tune runs it with (its parameters and its name, or its graph)."""
        if self.params is not None:
            return {**self.params, BASELINE: self.name}
        return {BASELINE: self.name, BASELINE_GRAPH: self.graph.to_dict()}


def baseline_names(setting: bool | list[str] | tuple[str, ...]) -> list[str]:
    """The names a `baselines` setting stands for."""
    if setting is True:
        return list(DEFAULT)
    if setting is False:
        return []
    return list(setting)


def derived_graph(name: str, space) -> Graph:
    """`mad-gan` or `through` for this space (module docstring)."""
    k = space.k
    models = [space.target_model] * k
    alphas = sorted(space.alpha_values)
    alpha = alphas[(len(alphas) - 1) // 2]
    d_edges = {("D", t): "through" for t in range(k)}
    if name == "mad-gan":
        gates = d_edges
    else:
        gates = {**d_edges, **{(s, t): "through" for s in range(k) for t in range(k)
                               if s != t}}
    return Graph.build(models, gates, transfer=space.transfer[0], alpha=alpha,
                       name=name, description=DERIVED[name])


def params_in_space(graph: Graph, space) -> dict[str, Any] | None:
    """The parameters the space samples for `graph` (what `enqueue_trial` fixes), or None
    when the space cannot draw it: another k or m, a gate, model, transfer kind or alpha
    the space does not offer, a pretrained node. Checked by building the graph back from
    the parameters: the same canonical key, or None."""
    import optuna
    if graph.k != space.k or graph.m not in space.discriminators or \
            any(n.pretrained for n in graph.nodes) or graph.discriminator != "sn":
        return None
    candidate: dict[str, Any] = {
        "discriminators": graph.m, "regroup": graph.regroup is not None,
        "transfer": graph.transfer, "alpha": float(graph.alpha),
        **{f"model_{i}": n.model for i, n in enumerate(graph.nodes)},
        **{edge_param(s, t): graph.gate(s, t) for s, t in graph.edges()}}
    trial = optuna.trial.FixedTrial(candidate)
    try:
        fixed = space.define_by_run(trial) or {}
        rebuilt = space.graph({**trial.params, **fixed})
    except (ValueError, KtgError):   # a value outside the space's choices
        return None
    if {**trial.params, **fixed}.get("alpha", graph.alpha) != graph.alpha or \
            rebuilt.canonical_key() != graph.canonical_key():
        return None
    return dict(trial.params)


def baseline_graphs(cfg) -> list[tuple[str, Graph]]:
    """(name, graph) of each baseline of a search config, in the setting's order;
    KtgError naming one that cannot be a baseline (a pretrained teacher: a baseline
    trains from scratch). Cheap (no Optuna): `SearchConfig.validate` calls it."""
    from ..method.graph import resolve_graph
    out = []
    for name in baseline_names(cfg.baselines):
        if name in DERIVED:
            graph = derived_graph(name, cfg.space)
        elif name in builtin_graphs():
            graph = resolve_graph(name)
        else:
            raise KtgError(f"baseline {name!r} is not a graph a search can train beside "
                           f"its own; valid: {', '.join(baseline_choices())}")
        if any(n.pretrained for n in graph.nodes):
            raise KtgError(f"baseline {name!r} has a pretrained teacher node; a baseline "
                           f"trains from scratch with the search's recipe; valid: "
                           f"mad-gan, through, or a built-in graph without a teacher")
        out.append((name, graph))
    return out


def baselines_of(cfg) -> list[Baseline]:
    """The baselines of a search config, with the space's parameters of each that the
    space can express."""
    return [Baseline(name, graph, params_in_space(graph, cfg.space))
            for name, graph in baseline_graphs(cfg)]
