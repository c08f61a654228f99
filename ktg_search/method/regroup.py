"""MGGAN's regrouping (thesis ch. 3): when the D -> generator pairing changes, to what,
and Algorithm 1's learning-rate rule around each regrouping.

A graph's `regroup` field (only with `discriminators` >= 2)::

    "regroup": {"T0": 200, "xi": 1.5, "T_max": 5000, "seed": 0,
                "lr_rule": {"a": 10, "delta": 0.01, "max_ratio": 2.0, "vrl_max": 0.01}}

Schedule (sec. 3.2.4): the first regrouping is after T0 iterations (the thesis takes the
length of its period A); then T <- min(xi * T, T_max), xi > 1, and the next regrouping is T
iterations later. Regrouping n happens before iteration `round(T0 + T1 + ... + T(n-1))`.
Intervals are kept as floats and only the regrouping iterations are rounded, so xi close
to 1 still grows T.

Pairing: the graph's edges D_r -> t are *roles*; `roles[r]` is the discriminator network
that plays role r now (at first network r). At regrouping n, `roles` becomes a random
permutation in which every role gets another network than before (a derangement of the
last one: "each generator is paired with a discriminator from another group"), drawn
from `random.Random("regroup:<seed>:<n>")`. The pairing at an iteration is thus a pure
function of (seed, iteration): a run resumed from a checkpoint regroups at the same
iterations and to the same pairings as one that never stopped.

Learning-rate rule (Algorithm 1, switchable: `"lr_rule": false` turns it off; on with the
defaults below when `regroup` is given without `lr_rule`): with i the iteration just
trained and i_T the nearest regrouping iteration, while i_T - a <= i <= i_T + a and the
variation ratio of the loss VRL = |L(i-1) - L(i)| / |L(i)| (eq. 3.1) is <= vrl_max, the
rate grows by L += L * delta; the rate used is min(L, max_ratio * L0). At i = i_T + a + 1
it goes back to L0. L0 is the configured lr_g (generators) and lr_d (discriminators); one
factor L / L0 scales both, and L(i) is the mean generator loss of the iteration (the
thesis applies the rule per group with the group's loss; one shared factor keeps one
optimizer over the generators, as the single-D trainer has).
"""
from __future__ import annotations

import math
import random
from typing import Any

from ..errors import KtgError

DEFAULTS = {"T0": 200, "xi": 1.5, "T_max": 5000, "seed": 0}
LR_DEFAULTS = {"a": 10, "delta": 0.01, "max_ratio": 2.0, "vrl_max": 0.01}
MAX_T = 10**9


def _number(value: Any, name: str, where: str, ok, valid: str, integer: bool = False):
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or \
        (integer and not isinstance(value, int)) or not math.isfinite(float(value)) or \
        not ok(value)
    if bad:
        raise KtgError(f"{where}: regroup.{name} is {value!r}; valid: {valid}")
    return value


def check_regroup(value: Any, m: int, where: str = "graph") -> dict:
    """A graph's `regroup` field, validated and with every default filled in; KtgError
    naming the bad field and what is valid."""
    if m < 2:
        raise KtgError(f"{where}: `regroup` needs at least 2 discriminators to regroup, but "
                       f"`discriminators` is {m}; set discriminators >= 2 or drop regroup")
    if value is True:
        value = {}
    valid = set(DEFAULTS) | {"lr_rule"}
    if not isinstance(value, dict) or set(value) - valid:
        bad = sorted(set(value) - valid)[0] if isinstance(value, dict) else repr(value)
        raise KtgError(f"{where}: `regroup` has {bad!r}; valid: an object with fields "
                       f"{', '.join(sorted(valid))} (or true for the defaults)")
    r = {**DEFAULTS, **{k: v for k, v in value.items() if k != "lr_rule"}}
    _number(r["T0"], "T0", where, lambda v: 1 <= v <= MAX_T, f"an integer from 1 to {MAX_T}",
            integer=True)
    _number(r["xi"], "xi", where, lambda v: 1 < v <= 100, "a number > 1 and <= 100")
    _number(r["T_max"], "T_max", where, lambda v: r["T0"] <= v <= MAX_T,
            f"an integer from T0 ({r['T0']}) to {MAX_T}", integer=True)
    _number(r["seed"], "seed", where, lambda v: 0 <= v < 2**31, "an integer from 0 to 2^31-1",
            integer=True)
    rule = value.get("lr_rule", True)
    if rule is False or rule is None:
        r["lr_rule"] = None
    else:
        if rule is True:
            rule = {}
        if not isinstance(rule, dict) or set(rule) - set(LR_DEFAULTS):
            bad = sorted(set(rule) - set(LR_DEFAULTS))[0] if isinstance(rule, dict) \
                else repr(rule)
            raise KtgError(f"{where}: regroup.lr_rule has {bad!r}; valid: false, true, or "
                           f"an object with fields {', '.join(sorted(LR_DEFAULTS))}")
        lr = {**LR_DEFAULTS, **rule}
        _number(lr["a"], "lr_rule.a", where, lambda v: 0 <= v <= MAX_T,
                f"an integer from 0 to {MAX_T}", integer=True)
        _number(lr["delta"], "lr_rule.delta", where, lambda v: 0 <= v <= 10,
                "a number from 0 to 10 (the fraction the rate grows by)")
        _number(lr["max_ratio"], "lr_rule.max_ratio", where, lambda v: 1 <= v <= 1000,
                "a number from 1 to 1000 (the rate's upper bound as a multiple of L0; "
                "a bound below L0 or negative is refused)")
        _number(lr["vrl_max"], "lr_rule.vrl_max", where, lambda v: v >= 0,
                "a number >= 0 (the VRL threshold of eq. 3.1)")
        r["lr_rule"] = lr
    return r


def regroup_iterations(r: dict, until: int) -> list[int]:
    """The iterations (<= until) before which a regrouping happens, in order."""
    out, at, interval = [], float(r["T0"]), float(r["T0"])
    while round(at) <= until:
        out.append(round(at))
        interval = min(interval * r["xi"], float(r["T_max"]))
        at += interval
    return out


def next_roles(roles: list[int], seed: int, n: int) -> list[int]:
    """Regrouping n's pairing: a derangement of `roles` (every role another network),
    drawn from a generator seeded by (seed, n) alone."""
    rng = random.Random(f"regroup:{seed}:{n}")
    while True:
        new = roles[:]
        rng.shuffle(new)
        if all(a != b for a, b in zip(new, roles, strict=True)):
            return new


def roles_at(r: dict | None, m: int, iteration: int) -> tuple[list[int], int]:
    """Which network plays each D role before `iteration` is trained, and how many
    regroupings have happened by then."""
    roles = list(range(m))
    if not r:
        return roles, 0
    points = regroup_iterations(r, iteration)
    for n in range(1, len(points) + 1):
        roles = next_roles(roles, r["seed"], n)
    return roles, len(points)


class LrRule:
    """Algorithm 1's rate factor L / L0, updated after every iteration (`update`)."""

    def __init__(self, r: dict) -> None:
        self.r, self.rule = r, r["lr_rule"]
        self.scale, self.prev_loss = 1.0, None

    def factor(self) -> float:
        """The factor the optimizers use now: min(L, max_ratio * L0) / L0."""
        return min(self.scale, self.rule["max_ratio"]) if self.rule else 1.0

    def _near(self, i: int) -> bool:
        """Whether iteration i lies within `a` of a regrouping (where VRL is compared)."""
        a = self.rule["a"]
        return any(p - a <= i <= p + a for p in regroup_iterations(self.r, i + a + 1))

    def needs_loss(self, i: int) -> bool:
        """Whether `update(i, ...)` needs L(i): VRL is compared at iterations near a
        regrouping, from L(i) and L(i - 1), so L(i) matters when i or i + 1 is near one.
        Elsewhere the trainer passes None and reads nothing back from the device."""
        return bool(self.rule) and (self._near(i) or self._near(i + 1))

    def update(self, i: int, loss: float | None) -> float:
        """After iteration i (1-based count of iterations trained) with loss L(i) (None
        where `needs_loss(i)` is false): the new factor."""
        if not self.rule:
            return 1.0
        a = self.rule["a"]
        points = regroup_iterations(self.r, i + a + 1)
        near = [p for p in points if p - a <= i <= p + a]
        if near:
            if loss is None:
                raise ValueError(f"the learning-rate rule needs the loss of iteration {i}")
            vrl = (abs(self.prev_loss - loss) / abs(loss) if self.prev_loss is not None
                   and loss != 0 else math.inf)
            if vrl <= self.rule["vrl_max"]:
                self.scale += self.scale * self.rule["delta"]
        self.prev_loss = loss
        if any(i == p + a + 1 for p in points):
            self.scale = 1.0
        return self.factor()

    def state_dict(self) -> dict:
        return {"scale": self.scale, "prev_loss": self.prev_loss}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.prev_loss = float(state["scale"]), state["prev_loss"]
