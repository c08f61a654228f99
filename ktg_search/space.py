"""The search space: an Optuna define-by-run space over knowledge-transfer graphs.

One categorical per gated edge (`gate_D_t` for D -> t, `gate_s_t` for s -> t), one model
per auxiliary node (`model_i`, i >= 1; node 0 is the target node and its model is fixed),
the transfer kind, fixed or searched (`transfer`), and the transfer weight, fixed or
searched (`alpha`, from `alphas`: how strong transfer should be depends on the map size
and the discriminator, so it is the search's to find, issue 10). `graph_from_params` turns a sampled
parameter dict (the same dict Ray Tune hands the trainable, and the columns of the results
table) back into a `Graph`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import KtgError
from .graph import Graph
from .registry import GATES, GENERATORS, TRANSFERS

PAPER_GATES = ("through", "cutoff", "linear_up", "linear_down")


def edge_param(src, dst: int) -> str:
    """`gate_D_2` is the gate on D -> 2; `gate_0_1` the gate on 0 -> 1 (DESIGN.md)."""
    return f"gate_{src}_{dst}"


@dataclass
class SpaceSpec:
    """What the search varies; validated on construction."""
    k: int = 3
    gates: tuple[str, ...] = PAPER_GATES
    target_model: str = "dcgan-small"
    models: tuple[str, ...] = ("dcgan-small",)
    transfer: tuple[str, ...] = ("feature_out",)
    alpha: float = 1000.0      # the transfer weight when `alphas` is empty
    target_node: bool = False  # score node 0 only, instead of the best generator
    alphas: tuple[float, ...] = ()  # the weights searched (an `alpha` param if > 1 value)

    def __post_init__(self) -> None:
        self.gates, self.models = tuple(self.gates), tuple(self.models)
        self.transfer = (self.transfer,) if isinstance(self.transfer, str) \
            else tuple(self.transfer)
        if self.k < 1 or self.k > 6:
            raise KtgError(f"The value of `k` is {self.k}, but must be 1 <= k <= 6")
        for what, values, reg in (("gate", self.gates, GATES), ("model", self.models,
                                                                  GENERATORS),
                                  ("transfer kind", self.transfer, TRANSFERS)):
            if not values:
                raise KtgError(f"the search needs at least one {what}; valid: "
                               f"{', '.join(reg.names())}")
            for v in values:
                reg.get(v)
            if len(set(values)) != len(values):
                raise KtgError(f"the {what} list {list(values)} repeats a value")
        GENERATORS.get(self.target_model)
        self.alphas = tuple(self.alphas) if self.alphas else (self.alpha,)
        for a in self.alphas:
            if isinstance(a, bool) or not isinstance(a, (int, float)) \
                    or not math.isfinite(a) or a <= 0:
                raise KtgError(f"The value of `alphas` is {list(self.alphas)}, but every "
                               f"alpha must be a number > 0")
        if len(set(self.alphas)) != len(self.alphas):
            raise KtgError(f"the alpha list {list(self.alphas)} repeats a value")
        self.alphas = tuple(float(a) for a in self.alphas)
        self.alpha = self.alphas[0]

    def size(self) -> int:
        """M^(k-1) * G^(k^2), times the number of transfer kinds and of alphas searched."""
        return len(self.models) ** (self.k - 1) * len(self.gates) ** (self.k ** 2) \
            * len(self.transfer) * len(self.alphas)

    def define_by_run(self, trial) -> dict:
        """Optuna define-by-run: sample one graph; return the fixed values beside it."""
        for s, t in Graph.edge_list(self.k):
            trial.suggest_categorical(edge_param(s, t), list(self.gates))
        for i in range(1, self.k):
            if len(self.models) > 1:
                trial.suggest_categorical(f"model_{i}", list(self.models))
        if len(self.transfer) > 1:
            trial.suggest_categorical("transfer", list(self.transfer))
        if len(self.alphas) > 1:
            trial.suggest_categorical("alpha", list(self.alphas))
        fixed = {"model_0": self.target_model}
        if len(self.models) == 1:
            fixed.update({f"model_{i}": self.models[0] for i in range(1, self.k)})
        if len(self.transfer) == 1:
            fixed["transfer"] = self.transfer[0]
        if len(self.alphas) == 1:
            fixed["alpha"] = self.alphas[0]
        return fixed

    def graph(self, params: dict) -> Graph:
        return graph_from_params(params, self.k, self.alpha,
                                 target=0 if self.target_node else None)


def graph_from_params(params: dict, k: int, alpha: float = 1000.0,
                      target: int | None = None) -> Graph:
    """The graph a sampled parameter dict describes (KtgError names a missing key).

    The transfer weight is the params' `alpha` when they have one (a searched or fixed
    value of `SpaceSpec.alphas`), else the `alpha` argument."""
    alpha = params.get("alpha", alpha)
    try:
        models = [params[f"model_{i}"] for i in range(k)]
        gates = {(s, t): params[edge_param(s, t)] for s, t in Graph.edge_list(k)}
        transfer = params["transfer"]
    except KeyError as e:
        raise KtgError(f"sampled parameters lack {e.args[0]!r}; have: "
                       f"{', '.join(sorted(params))}") from None
    return Graph.build(models, {e: g for e, g in gates.items() if g != "cutoff"},
                       transfer=transfer, alpha=alpha, target=target)


def can_learn(graph: Graph) -> bool:
    """False for a graph in which no generator has a non-cutoff incoming edge."""
    return bool(graph.learning_nodes())
