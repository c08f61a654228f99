"""How well each objective rule's value at an early epoch predicts its value at the last
epoch, over the trials of one run (docs/early-stops.md).

    .venv/bin/python docs/rank_study.py RUN [--final EPOCH] [--epochs 1 2 4 8]

For every rule (best, weakest, mean generator, mixture), each trial's value at epoch e is
the rule's best so far (what a trial reports to ASHA); Spearman's rho between epoch e and
the final epoch over the trials that reached the final epoch, with a 95% bootstrap interval
over trials (2,000 resamples, seed 0). Only trials whose history reaches `--final` count,
so run the search with `grace_period` equal to its epochs (ASHA then stops nothing).
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from ktg_search import load_history


def rule_values(history, rule: str):
    """trial x epoch table of the rule's best-so-far value."""
    gens = sorted(c for c in history.columns if c.startswith("is_g"))
    h = history.sort_values(["trial_id", "epoch"]).copy()
    if rule == "mixture":
        h["v"] = h["is_mix"]
    else:
        reduce = {"best": "max", "weakest": "min", "mean": "mean"}[rule]
        h["v"] = getattr(h[gens], reduce)(axis=1)
    h["v"] = h.groupby("trial_id")["v"].cummax()
    return h.pivot_table(index="trial_id", columns="epoch", values="v", aggfunc="last")


def rho(a, b) -> float:
    """Spearman's rho: the correlation of the ranks (ties share their mean rank)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(pd.Series(a).rank(), pd.Series(b).rank())[0, 1])


def interval(a, b, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [rho(a[i], b[i]) for i in (rng.integers(0, len(a), len(a))
                                       for _ in range(resamples))]
    vals = [v for v in vals if math.isfinite(v)]
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals \
        else (math.nan, math.nan)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--final", type=int, help="the last epoch (default: the run's last)")
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = p.parse_args()
    history = load_history(args.run)
    final = args.final or int(history["epoch"].max())
    for rule in ("best", "weakest", "mean", "mixture"):
        if rule == "mixture" and "is_mix" not in history:
            continue
        t = rule_values(history, rule)
        if final not in t:
            print(f"{rule}: no trial reached epoch {final}")
            continue
        t = t[t[final].notna()]
        end = t[final].to_numpy()
        spread = end.std(ddof=1) if len(end) > 1 else 0.0
        cells = [f"epoch {final}: {end.mean():.2f} +- {spread:.2f} over {len(t)} trials"]
        for e in [e for e in args.epochs if e < final and e in t]:
            at = t[e].to_numpy()
            lo, hi = interval(at, end)
            cells.append(f"rho @ {e} {rho(at, end):.2f} [{lo:.2f}, {hi:.2f}]")
        print(f"{rule}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
