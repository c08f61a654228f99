"""Training runs outside a search: one graph, several seeds, files a person can read.

`train_runs` is what `ktg train` does and what `ktg compare` does per graph: for each seed
a directory with `metrics.csv` (one row per epoch), `checkpoint.pt`, `summary.json` and one
sample grid PNG per generator (the same z for all generators, like the paper's Fig. 5).
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .graph import Graph
from .models import count_parameters
from .results import atomic_write_bytes, atomic_write_text
from .training import EVAL_SEED, TrainConfig, Trainer

GRID_SEED = 7


@dataclass
class RunSummary:
    """What one (graph, seed) run achieved; `summary.json` in its directory."""
    graph: str
    seed: int
    status: str
    epochs: int
    best_is: list[float]         # best IS of each generator over the epochs
    best_epoch: list[int]        # the epoch of each generator's best IS
    last_is: list[float]
    fid_at_best: list[float]     # FID of each generator at its best-IS epoch
    last_fid: list[float]
    params: list[int]            # parameter count of each generator
    wall_s: float
    frozen: list[int] = field(default_factory=list)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """A PNG grid of images in [-1, 1], written atomically."""
    from torchvision.utils import save_image
    buf = io.BytesIO()
    save_image(images.add(1).div(2).clamp(0, 1), buf, nrow=nrow, format="png")
    atomic_write_bytes(path, buf.getvalue())


def write_csv(rows: list[dict], path: Path) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def train_one(graph: Graph, config: TrainConfig, out: Path, data=None, evaluator=None,
              on_epoch: Callable[[dict], None] | None = None) -> RunSummary:
    """Train `graph` once with `config.seed`; write the run's files under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainer = Trainer(graph, config, data=data, evaluator=evaluator)
    trainer.fit(on_epoch)
    k = graph.k
    hist = trainer.history
    write_csv(hist, out / "metrics.csv")
    trainer.save(out / "checkpoint.pt")
    z = torch.randn(64, config.nz, generator=torch.Generator().manual_seed(GRID_SEED))
    for i in range(k):
        save_grid(trainer.sample(i, 64, z=z), out / f"samples_g{i}.png")

    def col(name: str) -> list[float]:
        return [float(h.get(name, float("nan"))) for h in hist]
    best_is, best_epoch, fid_best, last_is, last_fid = [], [], [], [], []
    for i in range(k):
        vals = col(f"is_g{i}")
        fids = col(f"fid_g{i}")
        good = [j for j, v in enumerate(vals) if math.isfinite(v)]
        if good:
            j = max(good, key=lambda j: vals[j])
            best_is.append(vals[j]); best_epoch.append(int(hist[j]["epoch"]))
            fid_best.append(fids[j]); last_is.append(vals[good[-1]])
            last_fid.append(fids[good[-1]])
        else:
            best_is.append(float("nan")); best_epoch.append(0); fid_best.append(float("nan"))
            last_is.append(float("nan")); last_fid.append(float("nan"))
    summary = RunSummary(graph=graph.name or "graph", seed=config.seed,
                         status=trainer.status, epochs=trainer.epoch, best_is=best_is,
                         best_epoch=best_epoch, last_is=last_is, fid_at_best=fid_best,
                         last_fid=last_fid,
                         params=[count_parameters(g) for g in trainer.generators],
                         wall_s=time.perf_counter() - t0, frozen=sorted(trainer.frozen))
    atomic_write_text(out / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    atomic_write_text(out / "graph.json", graph.to_json() + "\n")
    return summary


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of the finite values; std 0 for one."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return float("nan"), float("nan")
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def seed_table(graph: Graph, summaries: list[RunSummary]) -> str:
    """Best IS (mean +- std over seeds) per generator, as a Markdown table."""
    lines = [f"| generator | model | best IS (mean +- std over {len(summaries)} seeds) | "
             f"FID at best | params |", "|---|---|---|---|---|"]
    for i, node in enumerate(graph.nodes):
        m, s = mean_std([r.best_is[i] for r in summaries])
        fm, fs = mean_std([r.fid_at_best[i] for r in summaries])
        tag = " (frozen)" if summaries and i in summaries[0].frozen else ""
        fid = f"{fm:.2f} +- {fs:.2f}" if math.isfinite(fm) else "-"
        lines.append(f"| G{i}{tag} | {node.model} | {m:.3f} +- {s:.3f} | {fid} | "
                     f"{summaries[0].params[i] if summaries else 0:,} |")
    return "\n".join(lines)
