"""The report's tables: pure functions of the run's DataFrames (no files, no pictures).

The ranking (`ranked_trials`), each gate's share among the best trials (`gate_shares`),
ASHA's rungs (`rung_times`, `asha_rungs`), how well the objective at a rung predicts the
final rank (`spearman`, `rung_rank_correlation`), the paper's Table 1 ordering checked on
compare rows (`paper_ordering`), and the number helpers the sections share. Tested on
their own (tests/test_report.py), apart from the pictures.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import KtgError
from ..method.scoring import difference_in_std, spearman  # noqa: F401 (re-exported)

TOP_FRAC = 0.10           # "the top 10% of trials" of the gate-share heat map


def _numeric(s):
    import pandas as pd
    return pd.to_numeric(s, errors="coerce")


def ranked_trials(df):
    """The trials that take part in the ranking, best first.

    The ranking rule: `objective` = the best value reached at any epoch (not the last) of
    the run's `train.objective` rule over its generators (scoring.objective_rule).
    Duplicates (the same graph up to renumbering, not retrained) are left out, they point
    at their originals; trials without an objective (skipped, failed before the first
    evaluation) are left out. Ties keep the table's order (stable sort)."""
    if df.empty or "objective" not in df.columns:
        return df.iloc[0:0].copy()
    df = df.copy()
    df["objective"] = _numeric(df["objective"])
    keep = df["objective"].notna()
    if "status" in df.columns:
        keep &= df["status"] != "duplicate"
    return df[keep].sort_values("objective", ascending=False, kind="stable") \
        .reset_index(drop=True)


def edge_columns(df) -> list[str]:
    """The `gate_s_t` columns in the table's order (D -> t first, then s -> t)."""
    return [c for c in df.columns if c.startswith("gate_")]


def is_d_column(column: str) -> bool:
    """A gate column on an edge from a discriminator: `gate_D_2`, `gate_D1_2`."""
    import re
    return re.fullmatch(r"gate_D\d*_\d+", column) is not None


def edge_label(column: str) -> str:
    """`gate_D_2` -> `D->2`, `gate_D1_2` -> `D1->2`, `gate_0_1` -> `0->1` (source
    first, DESIGN.md)."""
    s, t = column[len("gate_"):].split("_")
    return f"{s}->{t}"


def param_label(name: str) -> str:
    """A searched parameter as a reader says it: `gate_0_1` -> `gate on 0 -> 1`."""
    if name.startswith("gate_"):
        return f"gate on {edge_label(name).replace('->', ' -> ')}"
    return name


def gate_shares(df, top_frac: float = TOP_FRAC, gates: list[str] | None = None):
    """For every edge and gate: its share among the top `top_frac` of ranked trials and
    among all ranked trials (one row per edge and gate).

    Ranked trials are those of `ranked_trials` (no duplicates, a finite objective); the
    top group is the first ceil(top_frac * n) of them (at least one). Columns: edge,
    column, gate, top_count, top_n, top_share, all_count, all_n, all_share."""
    import pandas as pd
    r = ranked_trials(df)
    n = len(r)
    n_top = max(1, math.ceil(top_frac * n)) if n else 0
    top = r.head(n_top)
    cols = edge_columns(r)
    if gates is None:
        seen = sorted({str(v) for c in cols for v in r[c].dropna() if str(v)})
        gates = seen
    rows = []
    for c in cols:
        for g in gates:
            tc, ac = int((top[c] == g).sum()), int((r[c] == g).sum())
            rows.append({"edge": edge_label(c), "column": c, "gate": g,
                         "top_count": tc, "top_n": n_top,
                         "top_share": tc / n_top if n_top else float("nan"),
                         "all_count": ac, "all_n": n,
                         "all_share": ac / n if n else float("nan")})
    return pd.DataFrame(rows, columns=["edge", "column", "gate", "top_count", "top_n",
                                       "top_share", "all_count", "all_n", "all_share"])


def rung_times(max_t: float, grace_period: float = 1, reduction_factor: float = 2
               ) -> list[int]:
    """ASHA's rungs up to max_t: grace * rf^i."""
    # rungs grow by the factor: a factor <= 1 or a grace period < 1 would never pass
    # max_t (a run.json is checked when read; this guards direct callers too)
    if not grace_period >= 1 or not reduction_factor > 1 or not max_t >= 1:
        raise KtgError(f"ASHA needs grace_period >= 1, reduction_factor > 1 and max_epochs "
                       f">= 1; got {grace_period!r}, {reduction_factor!r}, {max_t!r}")
    rungs, r = [], float(grace_period)
    while r <= max_t + 1e-9:
        rungs.append(int(round(r)))
        r *= reduction_factor
    return list(dict.fromkeys(rungs))


def asha_rungs(history, max_epochs: int, grace_period: int = 1,
               reduction_factor: float = 2, time_col: str = "epoch",
               max_t: float | None = None):
    """How many trials reached each ASHA rung (grace * rf^i <= max_t), and the end.

    From the history (one row per trial and epoch): a trial reached rung r when it
    reported `time_col` >= r (epochs, training steps or images seen: the search's time
    unit; max_t defaults to max_epochs). Columns: time, kind (rung | end), trials."""
    import pandas as pd
    max_t = max_epochs if max_t is None else max_t
    rungs = rung_times(max_t, grace_period, reduction_factor)
    points = [(e, "rung") for e in rungs]
    if max_t not in rungs:
        points.append((int(max_t), "end"))
    reached = history.groupby("trial_id")[time_col].max() \
        if not history.empty and time_col in history else pd.Series(dtype=float)
    return pd.DataFrame([{"epoch": e, "kind": kind, "trials": int((reached >= e).sum())}
                         for e, kind in points], columns=["epoch", "kind", "trials"])


def rung_rank_correlation(history, results, rungs: list[float], time_col: str = "epoch"):
    """How well the objective at each rung predicts the final one.

    Over the trials that ran the whole budget (status completed): Spearman's rank
    correlation between the objective a trial reported at its first report at or past
    the rung (ASHA's own comparison: the objective so far) and its final objective. Only
    trials that went on count: a stopped trial has no final value. Columns: rung, trials,
    spearman."""
    import pandas as pd
    done = results[results.status == "completed"].set_index("trial_id")["objective"]
    rows = []
    for r in rungs:
        at, final = [], []
        for tid, fin in done.items():
            h = history[(history.trial_id == tid) & (history[time_col] >= r)] \
                if time_col in history else history.iloc[:0]
            if h.empty or not math.isfinite(float(fin)):
                continue
            v = float(h.sort_values(time_col).iloc[0]["objective"])
            if math.isfinite(v):
                at.append(v)
                final.append(float(fin))
        rows.append({"rung": r, "trials": len(at), "spearman": spearman(at, final)})
    return pd.DataFrame(rows, columns=["rung", "trials", "spearman"])


def is_digits(values) -> int:
    """Decimals that tell the given IS values apart (3 to 6): an untrained run's IS
    values all read 1.000 at three."""
    vals = sorted({float(v) for v in values if v is not None and math.isfinite(float(v))})
    for d in range(3, 7):
        if len({f"{v:.{d}f}" for v in vals}) == len(vals):
            return d
    return 6


def as_float(x: Any) -> float:
    """`x` as a float, NaN when it is none (a missing cell, None, text)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x


# The paper's Table 1 ordering (Sec. 4.2): DCGAN <= +SN <= MAD-GAN <= through <= searched.
# A compare graph takes its step by its built-in name; "searched" rows are given by the
# caller (compare runs of the search's own best graphs).
PAPER_STEPS = (("DCGAN", lambda g: g == "dcgan"), ("+SN", lambda g: g == "dcgan-sn"),
               ("MAD-GAN", lambda g: g.startswith("mad-gan-")),
               ("through", lambda g: g.startswith("through-")))


def paper_ordering(rows: list[tuple[str, float, float]], searched: set[str] = frozenset()
                   ) -> list[dict[str, Any]]:
    """Each link of the paper's ordering that the rows can test: for every row of one step
    and every row of the next step present (searched graphs are the last step), the
    difference of the mean IS, that difference in pooled standard deviations
    (sqrt(std_a^2 + std_b^2): the spread of a difference of two independent means of
    single runs) and a verdict: "holds" at >= 1 std, "reversed" at <= -1, else "within
    noise". `rows` = (graph, mean, std) per compare graph; a missing std counts as 0."""
    steps: list[list[tuple[str, float, float]]] = [[] for _ in range(len(PAPER_STEPS) + 1)]
    for graph, mean, std in rows:
        if graph in searched:
            steps[-1].append((graph, mean, std))
            continue
        for i, (_, member) in enumerate(PAPER_STEPS):
            if member(graph):
                steps[i].append((graph, mean, std))
                break
    names = [name for name, _ in PAPER_STEPS] + ["searched"]
    links = []
    for i in range(len(steps) - 1):
        lower = steps[i]
        j = i + 1  # a missing step is bridged: DCGAN <= MAD-GAN when +SN is absent
        while j < len(steps) and not steps[j]:
            j += 1
        if not lower or j == len(steps):
            continue
        for a, ma, sa in lower:
            for b, mb, sb in steps[j]:
                diff, z, verdict = difference_in_std(ma, sa, mb, sb)
                links.append({"link": f"{names[i]} <= {names[j]}", "lower": a, "upper": b,
                              "diff": diff, "std_units": z, "verdict": verdict})
    return links
