"""How a run's scores are read: the objective over a graph's generators, the one
best-epoch rule, mean +- std over seeds, and the two comparisons every study states:
a difference in pooled std with its verdict (`difference_in_std`) and Spearman's rank
correlation (`spearman`).

Every place that picks "the best epoch" (a search trial's row, a training run's summary,
a comparison's table, the trainer's best weights) uses `best_index`, so that the same
history gives the same answer everywhere. The objective rules (`OBJECTIVE_RULES`: a
reducer and its phrase) are registered as OBJECTIVES in registry.py and named by
`TrainConfig.objective`; this module imports no torch, so that `ktg status` and
`ktg query`, which name the rule, start fast.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence


def _finite_scores(scores: Sequence[float]) -> list[float] | None:
    """The scores as floats, or None when one is missing or not finite: for the weakest
    and the mean, a generator without a score makes the epoch unscored (NaN, never better
    than a scored epoch) rather than being skipped."""
    try:
        out = [float(v) for v in scores]
    except (TypeError, ValueError):
        return None
    return out if out and all(math.isfinite(v) for v in out) else None


# An objective rule is `reduce(scores, mixture)`: the scored generators' IS, and the IS of
# their even mixture (Evaluator.score_generators; a single scored generator is its own
# mixture). Rules that read the generators one by one ignore the mixture.

def objective_best(scores: Sequence[float], mixture: float = math.nan) -> float:
    """The IS of the best generator (the paper's and KTG's rule: a graph is as good as
    its best node); a generator without a finite score does not count, NaN when none has."""
    i = best_index(scores)
    return float("nan") if i is None else float(scores[i])


def objective_weakest(scores: Sequence[float], mixture: float = math.nan) -> float:
    """The IS of the weakest generator: a graph scores well only when every generator it
    trains learns (a graph that leaves a generator drawing noise scores near 1.0)."""
    v = _finite_scores(scores)
    return min(v) if v else float("nan")


def objective_mean(scores: Sequence[float], mixture: float = math.nan) -> float:
    """The mean IS over the generators: between the two, a weak generator costs its share."""
    v = _finite_scores(scores)
    return statistics.fmean(v) if v else float("nan")


def objective_mixture(scores: Sequence[float], mixture: float = math.nan) -> float:
    """The IS of the generators' even mixture, what a multi-generator GAN models as a
    whole: it rewards generators that split the classes between them (MAD-GAN's aim) and
    drops with every generator that draws junk (2 of 3 dead: about 3 on digits, against
    7 for three live ones). NaN when not measured."""
    try:
        v = float(mixture)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


# name -> (reducer, a short noun phrase that status lines and report captions embed)
# which epoch of a finished run counts (`ktg compare --eval-at`, `ktg pretrain --keep`)
EPOCH_RULES = ("best", "last")

OBJECTIVE_RULES = {"best": (objective_best, "the best generator's IS"),
                   "weakest": (objective_weakest, "the weakest generator's IS"),
                   "mean": (objective_mean, "the mean IS of the generators"),
                   "mixture": (objective_mixture, "the IS of the generators' even mixture")}


def objective_rule(name: object) -> str:
    """What a run's `objective` column is, for headers and captions. An unknown or
    missing name reads as the default, "best": runs written before the setting existed
    used it."""
    known = isinstance(name, str) and name in OBJECTIVE_RULES
    return f"{OBJECTIVE_RULES[name if known else 'best'][1]}, best epoch (not the last)"


def best_index(values: Sequence[float]) -> int | None:
    """The first position of the highest finite value (the earliest epoch that reached
    the best score), or None when no value is finite."""
    best = None
    for i, v in enumerate(values):
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and (best is None or v > float(values[best])):
            best = i
    return best


def last_index(values: Sequence[float]) -> int | None:
    """The last position with a finite value (the last evaluated epoch), or None."""
    for i in range(len(values) - 1, -1, -1):
        try:
            if math.isfinite(float(values[i])):
                return i
        except (TypeError, ValueError):
            continue
    return None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the finite values; std 0 for one."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def difference_in_std(mean_a: float, std_a: float, mean_b: float, std_b: float
                      ) -> tuple[float, float, str]:
    """How far B is above A: (mean_b - mean_a, that difference in pooled standard
    deviations, verdict). The pooled std is sqrt(std_a^2 + std_b^2), the spread of a
    difference of two independent single-run draws; a missing std counts as 0 and with no
    spread at all any difference is certain (+-inf). The verdict is "holds" at >= 1 std,
    "reversed" at <= -1 std, else "within noise": the rule every study in docs/ states."""
    spread = math.hypot(std_a if math.isfinite(std_a) else 0.0,
                        std_b if math.isfinite(std_b) else 0.0)
    diff = mean_b - mean_a
    if spread > 0:
        z = diff / spread
    else:
        z = math.copysign(math.inf, diff) if diff else 0.0
    return diff, z, "holds" if z >= 1 else "reversed" if z <= -1 else "within noise"


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (ties get their mean rank);
    NaN for fewer than 3 pairs or a constant side."""
    import numpy as np
    import pandas as pd
    if len(x) < 3:
        return float("nan")
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")
