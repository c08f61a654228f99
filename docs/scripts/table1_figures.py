"""Table 1's columns from a `ktg compare` folder, read from the runs' metrics.csv alone.

    python docs/scripts/table1_figures.py OUT GRAPH [GRAPH ...] [--link LO:HI ...]

Per graph, over its seeds (OUT/<graph>/seed<N>/metrics.csv), mean +- std of:
  IS @ 8, @ 16, @ 30  the best IS of any generator over the epochs up to 8, 16, 30;
  weakest G @ 30      the lowest, over the generators, of each one's best IS up to 30;
  mixture             the best `is_mix` (the images of all generators) over the epochs.
Then the paper's ordering, link by link along the GRAPH order given (or the links named
by --link LO:HI, e.g. a method against its base): the difference of the means at 30, of
the best generator's IS, the weakest generator's and the mixture's (a one-generator
graph's own IS standing in for its weakest generator and its mixture), and each in pooled
std, sqrt(std_a^2 + std_b^2).
"""
from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path

from ktg_search.method.scoring import difference_in_std
from ktg_search.studies.compare import is_complete


def _runs(out: Path, graph: str) -> list[list[dict]]:
    runs = []
    for seed_dir in sorted((out / graph).glob("seed*")):
        # a run still training would mix its early epochs in
        if not is_complete(seed_dir):
            print(f"note: {seed_dir} is not finished; left out", file=sys.stderr)
            continue
        with open(seed_dir / "metrics.csv", newline="") as f:
            runs.append(list(csv.DictReader(f)))
    if not runs:
        raise SystemExit(f"no runs under {out / graph}")
    return runs


def _best(rows: list[dict], col: str, upto: int) -> float:
    vals = [float(r[col]) for r in rows if int(r["epoch"]) <= upto and r.get(col)]
    vals = [v for v in vals if math.isfinite(v)]
    return max(vals) if vals else float("nan")


def figures(runs: list[list[dict]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"@8": [], "@16": [], "@30": [], "weakest": [], "mix": []}
    for rows in runs:
        gens = sorted(c for c in rows[0] if c.startswith("is_g"))
        for at in (8, 16, 30):
            out[f"@{at}"].append(max(_best(rows, g, at) for g in gens))
        if len(gens) > 1:
            out["weakest"].append(min(_best(rows, g, 30) for g in gens))
            if "is_mix" in rows[0]:
                out["mix"].append(_best(rows, "is_mix", 30))
    return out


def _ms(vals: list[float]) -> str:
    if not vals:
        return "(k = 1)"
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    return f"{statistics.fmean(vals):.2f} ± {sd:.2f}"


def _link(rows: dict, lo: str, hi: str, col: str) -> str:
    # a one-generator graph's weakest generator and mixture are its generator: its best
    # IS stands in
    a, b = (rows[g][col] or rows[g]["@30"] for g in (lo, hi))
    if len(a) < 2 or len(b) < 2:
        return "- | -"
    diff, z, _ = difference_in_std(statistics.fmean(a), statistics.stdev(a),
                                   statistics.fmean(b), statistics.stdev(b))
    return f"{diff:+.2f} | {z:+.1f}"


def main() -> None:
    args = sys.argv[1:]
    links = [tuple(args[i + 1].split(":", 1)) for i, a in enumerate(args) if a == "--link"]
    args = [a for i, a in enumerate(args) if a != "--link" and (i == 0 or args[i - 1] != "--link")]
    out, graphs = Path(args[0]), args[1:]
    links = links or list(zip(graphs, graphs[1:]))
    rows = {g: figures(_runs(out, g)) for g in graphs}
    print("| graph | seeds | IS @ 8 | IS @ 16 | IS @ 30 (best G) | weakest G @ 30 | IS (mixture) |")
    print("|---|---|---|---|---|---|---|")
    for g, f in rows.items():
        print(f"| {g} | {len(f['@30'])} | {_ms(f['@8'])} | {_ms(f['@16'])} | "
              f"**{_ms(f['@30'])}** | {_ms(f['weakest'])} | {_ms(f['mix'])} |")
    print()
    print("| link | best G: difference | in pooled std | weakest G: difference | in pooled std "
          "| mixture: difference | in pooled std |")
    print("|---|---|---|---|---|---|---|")
    for lo, hi in links:
        print(f"| {lo} <= {hi} | {_link(rows, lo, hi, '@30')} | "
              f"{_link(rows, lo, hi, 'weakest')} | {_link(rows, lo, hi, 'mix')} |")


if __name__ == "__main__":
    main()
