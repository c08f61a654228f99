"""Sections: what ASHA did. How many trials reached each rung, and how well the objective
at a rung predicts the final rank (how far the early stops can be trusted)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .context import Options, section
from .figures import plt, png
from .render import Part, fmt
from .run import Missing, RunView
from .tables import asha_rungs, rung_rank_correlation, rung_times


@dataclass(frozen=True)
class Clock:
    """The run's ASHA settings, in its time unit (epochs, steps or images seen)."""
    grace: int
    rf: float
    max_epochs: int
    unit: str      # the search's `time_unit`
    col: str       # the history column that counts it
    max_t: float   # the budget in that unit


def clock(run: RunView) -> Clock:
    """ASHA's settings and budget as the run's history measures them."""
    from ..search.config import TIME_ATTRS
    c, h = run.cfg, run.history
    grace, rf, unit = c.grace_period, c.reduction_factor, c.time_unit
    col = TIME_ATTRS.get(unit, "epoch")
    max_epochs = c.train.epochs
    if unit == "epochs" or h.empty or col not in h:
        return Clock(grace, rf, max_epochs, unit, col if unit == "epochs" else "epoch",
                     max_epochs)
    # the budget in steps / images: what the trials that ran it reached
    full = h.groupby("trial_id").agg({"epoch": "max", col: "max"})
    full = full[full.epoch >= max_epochs]
    return Clock(grace, rf, max_epochs, unit, col,
                 float(full[col].max() if not full.empty else h[col].max()))


@section('asha', 'ASHA at a glance')
def asha(run: RunView, opts: Options, p: Part) -> None:
    """Trials per ASHA rung, from the history (a bar chart and its table)."""
    ck = clock(run)
    unit = ck.unit
    p.text(f"ASHA (grace period {ck.grace} {unit}, reduction factor {ck.rf:g}, max "
           f"{ck.max_epochs} epochs) stops weak trials at rungs {ck.grace}, "
           f"{ck.grace * ck.rf:g}, ... {unit}: how many trials reached each rung (from the "
           f"history). Duplicates and skipped or untrainable graphs never train and are not counted.")
    h = run.history
    if h.empty:
        raise Missing("history.parquet is missing or empty: no trial has reported an "
                      "epoch yet")
    table = asha_rungs(h, ck.max_epochs, ck.grace, ck.rf, time_col=ck.col, max_t=ck.max_t)
    n = h.trial_id.nunique()
    p.basis(f"{n} trial(s) that reported at least one epoch.")
    fig, ax = plt().subplots(figsize=(1.6 + 1.1 * len(table), 3.2))
    labels = [f"{unit[:-1]} {e:,}\n(" + ", ".join(
                  (["rung"] if kind == "rung" else []) +
                  (["max"] if e == ck.max_t else [])) + ")"
              for e, kind in zip(table.epoch, table.kind, strict=True)]
    bars = ax.bar(range(len(table)), table.trials, color="#4c72b0", width=0.6)
    for b, v in zip(bars, table.trials, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, str(v), ha="center", va="bottom",
                fontsize=9)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("trials that reached it")
    ax.set_ylim(0, max(1, table.trials.max()) * 1.18)
    ax.set_title("ASHA at a glance", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    p.image(p.file("asha.png", png(fig)), "trials per ASHA rung")
    p.table([unit[:-1], "kind", "trials reached", "share of trained"],
            [[int(e), kind, int(v), f"{v / n:.0%}" if n else ""]
             for e, kind, v in zip(table.epoch, table.kind, table.trials, strict=True)])


@section('early-stops', 'Do early stops predict the final rank?')
def early_stops(run: RunView, opts: Options, p: Part) -> None:
    """Spearman's rho between the objective at each rung and the final one."""
    ck = clock(run)
    unit = ck.unit
    p.text("How far the early stops can be trusted: for every ASHA rung, Spearman's "
           "rank correlation between the objective a trial had at the rung (what ASHA "
           "compares) and its final objective. 1 means the rung ranks trials exactly "
           "as the end does; near 0 means ASHA stopped trials on noise. Caveat: only "
           "trials that ran the whole budget count (a stopped trial has no final "
           "value), and those are the ones that looked good early, so the true "
           "correlation over all trials is likely lower.")
    h, res = run.history, run.results
    if h.empty or res.empty:
        raise Missing("no trial has finished yet")
    rungs = [r for r in rung_times(ck.max_t, ck.grace, ck.rf) if r < ck.max_t]
    if not rungs:
        raise Missing(f"the grace period ({ck.grace} {unit}) leaves no rung before the "
                      f"end of the budget")
    table = rung_rank_correlation(h, res, rungs, ck.col)
    n = int((res.status == "completed").sum())
    p.basis(f"{n} trial(s) that ran the whole budget ({ck.max_t:,.0f} {unit}).")
    if n < 3:
        raise Missing(f"only {n} trial(s) ran the whole budget: a rank correlation "
                      f"needs at least 3")
    first = table.iloc[0]
    if math.isfinite(first.spearman):
        p.note(f"At the first rung ({int(first.rung):,} {unit}), Spearman's rho is "
               f"{first.spearman:.2f} over {int(first.trials)} trials"
               + (": early stops there are a fair guess of the final rank."
                  if first.spearman >= 0.6 else
                  ": below 0.6, so a rung this early stops trials on little evidence; "
                  "a larger grace period would judge them later."))
    p.table([f"rung ({unit})", "trials", "Spearman rho"],
            [[f"{int(r.rung):,}", int(r.trials), fmt(r.spearman, 2)]
             for r in table.itertuples()])
