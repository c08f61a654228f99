"""Learning curves (IS per epoch) of several graphs over seeds, from the runs' metrics.csv.

    python docs/scripts/learning_curves.py LABEL=DIR [LABEL=DIR ...] [--ceiling IS] [--png P]

DIR holds a graph's runs: every metrics.csv below it is one seed (`ktg train ... -o DIR`
writes DIR/seed<N>/metrics.csv; so does one graph's folder of a `ktg compare`). Per graph
and epoch, over the seeds, mean +- std of:
  best G   the highest IS of the generators at that epoch (the EMA weights, as evaluated);
  weakest  the lowest (k > 1 only);
  mixture  `is_mix`, the learning generators' images drawn evenly (k > 1 only).
Printed as a Markdown table at epochs 1, 2, 4, 8, 12, 16, 20, 25, 30 (those reached), with
the mean seconds per epoch (train + evaluation); --png draws best G and mixture per epoch,
the seeds' band around the mean, and --ceiling (the real images' IS) as a line.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

EPOCHS = [1, 2, 4, 8, 12, 16, 20, 25, 30]


def read_runs(folder: Path) -> list[list[dict]]:
    runs = []
    for path in sorted(folder.rglob("metrics.csv")):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            runs.append(rows)
    return runs


def per_epoch(runs: list[list[dict]]) -> dict[str, dict[int, list[float]]]:
    """{curve: {epoch: [one value per seed]}} for best G, weakest and mixture."""
    curves: dict[str, dict[int, list[float]]] = {"best G": {}, "weakest": {}, "mixture": {}}
    for rows in runs:
        for r in rows:
            e = int(r["epoch"])
            gens = [float(v) for k, v in r.items() if k.startswith("is_g") and v]
            gens = [v for v in gens if math.isfinite(v)]
            if not gens:
                continue
            curves["best G"].setdefault(e, []).append(max(gens))
            if len(gens) > 1:
                curves["weakest"].setdefault(e, []).append(min(gens))
                if r.get("is_mix"):
                    curves["mixture"].setdefault(e, []).append(float(r["is_mix"]))
    return curves


def fmt(vals: list[float] | None) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.fmean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def seconds_per_epoch(runs: list[list[dict]]) -> float:
    vals = [float(r.get("train_s") or 0) + float(r.get("eval_s") or 0)
            for rows in runs for r in rows]
    return statistics.fmean(vals) if vals else math.nan


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graphs", nargs="+", metavar="LABEL=DIR")
    ap.add_argument("--ceiling", type=float, help="IS of the real images, drawn as a line")
    ap.add_argument("--png", type=Path, help="write the curves as a picture")
    args = ap.parse_args(argv)
    data = {}
    for item in args.graphs:
        label, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            ap.error(f"{item!r}: valid is LABEL=DIR with DIR a folder of runs")
        runs = read_runs(Path(folder))
        if not runs:
            ap.error(f"{folder!r} holds no metrics.csv")
        data[label] = runs
    last = max(len(rows) for runs in data.values() for rows in runs)
    cols = [e for e in EPOCHS if e <= last]
    print("| graph | curve | seeds | " + " | ".join(f"epoch {e}" for e in cols) +
          " | s / epoch |")
    print("|---|---|---|" + "---|" * len(cols) + "---|")
    for label, runs in data.items():
        curves = per_epoch(runs)
        for name, by_epoch in curves.items():
            if not by_epoch:
                continue
            print(f"| {label} | {name} | {len(runs)} | " +
                  " | ".join(fmt(by_epoch.get(e)) for e in cols) +
                  f" | {seconds_per_epoch(runs):.0f} |")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for label, runs in data.items():
            for name, style in (("best G", "-"), ("mixture", "--")):
                by_epoch = per_epoch(runs)[name]
                if not by_epoch:
                    continue
                es = sorted(by_epoch)
                mean = [statistics.fmean(by_epoch[e]) for e in es]
                sd = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0
                      for e in es]
                line, = ax.plot(es, mean, style, label=f"{label}, {name} ({len(runs)} seeds)")
                ax.fill_between(es, [m - s for m, s in zip(mean, sd)],
                                [m + s for m, s in zip(mean, sd)], alpha=0.15,
                                color=line.get_color())
        if args.ceiling:
            ax.axhline(args.ceiling, color="black", linestyle=":",
                       label=f"real images ({args.ceiling:.2f})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("IS (EMA generator)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
