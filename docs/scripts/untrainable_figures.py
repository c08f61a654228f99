"""The figures of docs/untrainable.md from two search run directories (before, after).

    PYTHONPATH=. python docs/scripts/untrainable_figures.py RUN_BEFORE RUN_AFTER [--live 1.5]

Per run, over its trials (one row each in the results table; a duplicate counts as the
graph it repeats):
  - trials: rows; untrainable: rows whose graph is untrainable by the rule
    (method/trainability.py), whatever status the run gave them;
  - every generator learns: the share of trials in which every learning generator's best
    IS (`is_best_g<i>`, the best epoch's) is above --live (1.5: a generator drawing
    noise scores ~1.0 on digits, a live one 3-7); a trial with no score counts as not;
  - best objective: the largest `objective` (the run's own rule, `train.objective`);
  - epochs on untrainable graphs / all epochs: the epochs the trained rows spent
    (duplicates and untrainable rows of the after-run spend 0).
"""
from __future__ import annotations

import argparse
import math
import sys

from ktg_search.method.graph import Graph
from ktg_search.method.trainability import untrainable_reason
from ktg_search.results.book import load_results


def figures(run_dir: str, live: float = 1.5) -> dict:
    df = load_results(run_dir)
    n = len(df)
    untrainable = every_learns = 0
    epochs_all = epochs_dead = 0
    for _, r in df.iterrows():
        graph = Graph.from_json(r["graph"]) if r["graph"] else None
        dead = graph is not None and untrainable_reason(graph) is not None
        untrainable += dead
        spent = 0 if r["status"] in ("duplicate", "untrainable", "skipped") \
            else int(r["epochs"] or 0)
        epochs_all += spent
        epochs_dead += spent if dead else 0
        if graph is not None and graph.learning_nodes():
            scores = [float(r.get(f"is_best_g{i}", math.nan)) for i in graph.learning_nodes()]
            every_learns += all(math.isfinite(s) and s > live for s in scores)
    best = df["objective"].astype(float).max() if n else math.nan
    return {"trials": n, "untrainable": untrainable,
            "every_learns": every_learns / n if n else math.nan,
            "best_objective": best, "epochs": epochs_all, "epochs_untrainable": epochs_dead}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (before, after)")
    ap.add_argument("--live", type=float, default=1.5,
                    help="a generator learns when its best IS is above this (default 1.5)")
    args = ap.parse_args(argv)
    print("| run | trials | untrainable | every generator learns | best objective | "
          "epochs on untrainable / all |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        f = figures(run, args.live)
        print(f"| {run} | {f['trials']} | {f['untrainable']} | {f['every_learns']:.0%} | "
              f"{f['best_objective']:.3f} | {f['epochs_untrainable']} / {f['epochs']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
