"""The reuse table (the KTG paper's Table 3 at laptop scale): graphs searched on one data
set, retrained on another, against the known graphs on both.

    python docs/scripts/reuse_table.py digits=OUT_A digits-m=OUT_B \\
        --baselines dcgan-sn,mad-gan-3,through-3 --searched s1:digits --searched m1:digits-m

The input is one `ktg compare` folder per data set holding the same graphs, trained with
the same seeds and epochs; only its `table.csv` is read (graph, is_mean, is_std: the best
generator's IS, mean +- std over the seeds, `runs.aggregate`). The output answers the
paper's question per searched graph: does a graph searched on one set beat every
baseline on the other? "Beats" is the project's rule (`scoring.difference_in_std`): at
least 1 pooled std above the best baseline of that set. The two orderings are compared
by Spearman's rank correlation of the means over every graph (`scoring.spearman`, the
one the report's ASHA section uses).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..method.scoring import difference_in_std, spearman


def read_table(out: str | Path) -> dict[str, tuple[float, float]]:
    """{graph: (is_mean, is_std)} from a `ktg compare` folder's table.csv."""
    path = Path(out) / "table.csv"
    if not path.is_file():
        raise KtgError(f"{path} not found: give the folder a `ktg compare` wrote")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"graph", "is_mean", "is_std"} <= set(rows[0]):
        raise KtgError(f"{path} has no graph/is_mean/is_std columns: not a compare table")
    return {r["graph"]: (_float(r["is_mean"]), _float(r["is_std"])) for r in rows}


def _float(v: str) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def ranks(values: list[float]) -> list[float]:
    """1 = the highest mean; ties share their mean rank (as `spearman` ranks them)."""
    import pandas as pd
    return [float(r) for r in pd.Series(values, dtype=float).rank(method="average",
                                                                   ascending=False)]


def reuse_table(tables: dict[str, dict[str, tuple[float, float]]], origins: dict[str, str],
                baselines: list[str]) -> dict[str, Any]:
    """Rows, rank correlation and verdicts from the per-set compare tables.

    `tables`: {set: {graph: (mean, std)}}, two sets; `origins`: {searched graph: the set
    it was searched on}; `baselines`: the known graphs. Every graph must be in every
    table (a graph missing from one is named in the error)."""
    if len(tables) != 2:
        raise KtgError(f"the reuse table compares two data sets; got {len(tables)}: "
                       f"{', '.join(tables) or 'none'}")
    sets = list(tables)
    for g, origin in origins.items():
        if origin not in tables:
            raise KtgError(f"searched graph {g!r} names data set {origin!r}; valid: "
                           f"{', '.join(sets)}")
    graphs = list(baselines) + [g for g in origins if g not in baselines]
    for s in sets:
        missing = [g for g in graphs if g not in tables[s]]
        if missing:
            raise KtgError(f"the {s} compare table lacks {', '.join(missing)}; it has "
                           f"{', '.join(tables[s]) or 'nothing'}")
    rank = {s: dict(zip(graphs, ranks([tables[s][g][0] for g in graphs]))) for s in sets}
    rows = [{"graph": g, "searched_on": origins.get(g, ""),
             **{f"{s}_mean": tables[s][g][0] for s in sets},
             **{f"{s}_std": tables[s][g][1] for s in sets},
             **{f"{s}_rank": rank[s][g] for s in sets}} for g in graphs]
    rho = spearman([tables[sets[0]][g][0] for g in graphs],
                           [tables[sets[1]][g][0] for g in graphs])
    verdicts = []
    for g, origin in origins.items():
        for s in sets:
            best = max(baselines, key=lambda b: tables[s][b][0])
            diff, z, verdict = difference_in_std(*tables[s][best], *tables[s][g])
            verdicts.append({"graph": g, "searched_on": origin, "trained_on": s,
                             "transferred": s != origin, "best_baseline": best,
                             "diff": diff, "std_units": z, "verdict": verdict})
    return {"sets": sets, "rows": rows, "rho": rho, "n": len(graphs), "verdicts": verdicts}


def markdown(result: dict[str, Any]) -> str:
    """The table, the rank correlation and one sentence per searched graph and set."""
    a, b = result["sets"]
    lines = [f"| graph | searched on | IS on {a} | rank | IS on {b} | rank |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cells = [f"{r[f'{s}_mean']:.2f} ± {r[f'{s}_std']:.2f} | {r[f'{s}_rank']:g}"
                 for s in (a, b)]
        lines.append(f"| {r['graph']} | {r['searched_on'] or '(baseline)'} | "
                     + " | ".join(cells) + " |")
    rho = result["rho"]
    lines += ["", f"Spearman's rank correlation of the two orderings over the "
                  f"{result['n']} graphs: " + (f"{rho:+.2f}" if math.isfinite(rho)
                                               else "undefined (fewer than 3 graphs)"), ""]
    for v in result["verdicts"]:
        where = (f"retrained on {v['trained_on']}" if v["transferred"]
                 else f"on its own set {v['trained_on']}")
        word = {"holds": "beats", "reversed": "trails",
                "within noise": "is within noise of"}[v["verdict"]]
        lines.append(f"* {v['graph']} (searched on {v['searched_on']}), {where}: {word} the "
                     f"best baseline {v['best_baseline']} ({v['diff']:+.2f} IS, "
                     f"{v['std_units']:+.1f} pooled std).")
    return "\n".join(lines)
