"""How a run's scores are read: the one best-epoch rule, and mean +- std over seeds.

Every place that picks "the best epoch" (a search trial's row, a training run's summary,
a comparison's table, the trainer's best weights) uses `best_index`, so that the same
history gives the same answer everywhere.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence


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
