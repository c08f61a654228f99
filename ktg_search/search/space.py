"""The search space: an Optuna define-by-run space over knowledge-transfer graphs.

One categorical per gated edge (`gate_D_t` for D -> t, `gate_s_t` for s -> t), one model
per auxiliary node (`model_i`, i >= 1; node 0 is the target node and its model is fixed),
the transfer kind, fixed or searched (`transfer`), and the transfer weight, fixed or
searched (`alpha`, from `alphas`: how strong transfer should be depends on the map size
and the discriminator, so it is the search's to find, issue 10). Several discriminators
(issue 20): `discriminators` lists the m values searched (default [1]: today's space) and
`regroup` whether MGGAN's regrouping is on ([false], [true] or both; only for m >= 2);
with m >= 2 the D edges are `gate_D{j}_{t}`, one categorical each.
`params.graph_from_params` turns a sampled parameter dict (the same dict Ray Tune hands
the trainable, and the columns of the results table) back into a `Graph`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..files.checks import (Bool, Bools, Choice, Float, Floats, Int, Ints, Names,
                            check_fields, check_instance, setting)
from ..errors import KtgError
from ..method.graph import Graph
from ..method.params import edge_param, trial_graph
from ..registry import GATES, GENERATORS, TRANSFERS

PAPER_GATES = ("through", "cutoff", "linear_up", "linear_down")


@dataclass
class SpaceSpec:
    """What the search varies: a search config's `space` section (config.py).

    Every field carries its type and range (checks.py), checked when a config is read
    (`from_dict`) or validated; construction checks the rules again with messages of its
    own (a list that repeats a value, an alpha that is not a number > 0), so that a
    SpaceSpec built in code is as safe as one read from a file. `alpha` and `alphas` stay
    as written: `alphas` empty means `alpha` alone (`alpha_values`), so that a later
    `--set alpha=...` still means what it says."""
    # k <= 6 keeps the k^2 edges and k! renumberings of the canonical key small
    k: int = setting(3, Int(1, 6))
    gates: tuple[str, ...] = setting(PAPER_GATES, Names(GATES.names))
    target_model: str = setting("dcgan-small", Choice(GENERATORS.names))
    models: tuple[str, ...] = setting(("dcgan-small",), Names(GENERATORS.names))
    transfer: tuple[str, ...] = setting(("feature_out",), Names(TRANSFERS.names))
    # the transfer weight when `alphas` is empty
    alpha: float = setting(1000.0, Float(0, 1e9, lo_open=True))
    # score node 0 only, instead of every generator under `train.objective`
    target_node: bool = setting(False, Bool())
    # the weights searched (an `alpha` param if > 1 value); empty = `alpha` alone
    alphas: tuple[float, ...] = setting((), Floats(0, 1e9, lo_open=True, max_len=20))
    # the numbers of discriminators searched (a `discriminators` param if > 1 value)
    discriminators: tuple[int, ...] = setting((1,), Ints(1, 8, max_len=8))
    # MGGAN's regrouping with m >= 2: [false], [true] or both (a `regroup` param)
    regroup: tuple[bool, ...] = setting((False,), Bools())

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
                reg.check(v)
            if len(set(values)) != len(values):
                raise KtgError(f"the {what} list {list(values)} repeats a value")
        GENERATORS.check(self.target_model)
        self.alphas = tuple(self.alphas)
        for name, values in (("alpha", (self.alpha,)), ("alphas", self.alphas)):
            for a in values:
                if isinstance(a, bool) or not isinstance(a, (int, float)) \
                        or not math.isfinite(a) or a <= 0:
                    shown = values[0] if name == "alpha" else list(values)
                    raise KtgError(f"The value of `{name}` is {shown}, but every alpha "
                                   f"must be a number > 0")
        if len(set(self.alphas)) != len(self.alphas):
            raise KtgError(f"the alpha list {list(self.alphas)} repeats a value")
        self.alpha = float(self.alpha)
        self.alphas = tuple(float(a) for a in self.alphas)
        self._check_discriminators()

    def _check_discriminators(self) -> None:
        ms = (self.discriminators,) if isinstance(self.discriminators, (int, float)) \
            else tuple(self.discriminators)
        if not ms or any(isinstance(m, bool) or not float(m).is_integer() or
                         not 1 <= m <= 8 for m in ms) or len(set(ms)) != len(ms):
            raise KtgError(f"The value of `discriminators` is {list(ms)}, but must be a "
                           f"non-empty list of distinct integers from 1 to 8")
        self.discriminators = tuple(int(m) for m in ms)
        rg = (self.regroup,) if isinstance(self.regroup, (bool, int, float)) \
            else tuple(self.regroup)
        if not rg or any(r not in (True, False) for r in rg) or len(set(rg)) != len(rg):
            raise KtgError(f"The value of `regroup` is {list(rg)}, but must be [false], "
                           f"[true] or [false, true]")
        self.regroup = tuple(bool(r) for r in rg)
        if True in self.regroup and max(self.discriminators) < 2:
            raise KtgError(f"`regroup` {[*self.regroup]} needs a number of discriminators "
                           f">= 2 in `discriminators` (now {list(self.discriminators)}): "
                           f"regrouping pairs generators with other discriminators")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "space") -> SpaceSpec:
        """A space from a parsed JSON object: every field checked for type and range;
        unknown fields refused (KtgError naming `where`, the value and the valid ones)."""
        values = check_fields(cls, d, where, what="space setting")
        try:
            return cls(**values)
        except KtgError as e:
            raise KtgError(f"{where}: {e}") from None

    def validate(self, where: str = "") -> None:
        """Every field's type and range (the checks beside the fields), then the rules
        construction checks; KtgError names the first bad value."""
        check_instance(self, where)
        try:
            self.__post_init__()  # the checks give lists: back to tuples, rules again
        except KtgError as e:
            raise KtgError(f"{where}: {e}" if where else str(e)) from None

    @property
    def alpha_values(self) -> tuple[float, ...]:
        """The transfer weights the search draws from: `alphas`, or `alpha` alone."""
        return self.alphas or (self.alpha,)

    def _regroup_choices(self, m: int) -> int:
        """How many regroup settings a graph with m discriminators can take (one D: none)."""
        return len(self.regroup) if m > 1 else 1

    def size(self) -> int:
        """M^(k-1) * sum over m of G^(m k + k(k-1)) (G^(k^2) for one D) times the regroup
        choices when m >= 2, times the number of transfer kinds and of alphas searched."""
        k, n_gates = self.k, len(self.gates)
        graphs = sum(n_gates ** (m * k + k * (k - 1)) * self._regroup_choices(m)
                     for m in self.discriminators)
        return len(self.models) ** (k - 1) * graphs * len(self.transfer) * \
            len(self.alpha_values)

    def edge_columns(self) -> list[str]:
        """Every gate column the space can fill, D edges of every m first."""
        cols: list[str] = []
        for m in sorted(self.discriminators):
            cols += [edge_param(s, t) for s, t in Graph.edge_list(self.k, m)
                     if edge_param(s, t) not in cols]
        return sorted(cols, key=lambda c: not c.startswith("gate_D"))

    def trainable_size(self) -> int:
        """How many of the `size()` graphs are trainable (method/trainability.py), exactly:
        for each transfer kind and each m, the node-by-node count `trainable_gate_count`
        (checked against enumeration in tests/test_trainability.py) times the regroup
        choices for m >= 2, times M^(k-1) models and the alphas. Models, alpha and
        regrouping do not change where gradients go."""
        from ..method.trainability import trainable_gate_count
        per_models = len(self.models) ** (self.k - 1) * len(self.alpha_values)
        return per_models * sum(trainable_gate_count(self.k, self.gates, t, m)
                                * self._regroup_choices(m)
                                for t in self.transfer for m in self.discriminators)

    def size_formula(self) -> str:
        """`size()` as the printed equation, with this space's numbers in it."""
        k, g = self.k, len(self.gates)
        if list(self.discriminators) == [1]:
            text = f"M^(k-1) * G^(k^2) = {len(self.models)}^{k - 1} * {g}^{k * k}"
        else:
            terms = [(f"{self._regroup_choices(m)} * " if self._regroup_choices(m) > 1 else "")
                     + f"{g}^{m * k + k * (k - 1)}" for m in sorted(self.discriminators)]
            text = (f"M^(k-1) * sum over m in {sorted(self.discriminators)} of "
                    f"G^(m k + k(k-1)) (x regroup choices for m >= 2) = "
                    f"{len(self.models)}^{k - 1} * ({' + '.join(terms)})")
        if len(self.transfer) > 1:
            text += f" * {len(self.transfer)} transfer kinds"
        if len(self.alpha_values) > 1:
            text += f" * {len(self.alpha_values)} alphas"
        return text

    def define_by_run(self, trial) -> dict:
        """Optuna define-by-run: sample one graph; return the fixed values beside it."""
        fixed: dict[str, Any] = {}
        ms = self.discriminators
        m = trial.suggest_categorical("discriminators", list(ms)) if len(ms) > 1 else ms[0]
        if len(ms) == 1 and m != 1:
            fixed["discriminators"] = m
        if m > 1:
            if len(self.regroup) > 1:
                trial.suggest_categorical("regroup", list(self.regroup))
            else:
                fixed["regroup"] = self.regroup[0]
        for s, t in Graph.edge_list(self.k, m):
            trial.suggest_categorical(edge_param(s, t), list(self.gates))
        for i in range(1, self.k):
            if len(self.models) > 1:
                trial.suggest_categorical(f"model_{i}", list(self.models))
        if len(self.transfer) > 1:
            trial.suggest_categorical("transfer", list(self.transfer))
        if len(self.alpha_values) > 1:
            trial.suggest_categorical("alpha", list(self.alpha_values))
        fixed["model_0"] = self.target_model
        if len(self.models) == 1:
            fixed.update({f"model_{i}": self.models[0] for i in range(1, self.k)})
        if len(self.transfer) == 1:
            fixed["transfer"] = self.transfer[0]
        if len(self.alpha_values) == 1:
            fixed["alpha"] = self.alpha_values[0]
        return fixed

    def graph(self, params: dict) -> Graph:
        """The graph of a trial config: its sampled parameters, or the graph a baseline
        outside the space carries (search/baselines.py)."""
        return trial_graph(params, self.k, self.alpha_values[0],
                           target=0 if self.target_node else None)


def untrainable_reason(graph: Graph) -> str | None:
    """Why the search does not train this graph (None: it trains it): some learning node
    can never train its output layer, or nothing learns (method/trainability.py)."""
    from ..method.trainability import untrainable_reason as reason
    return reason(graph)
