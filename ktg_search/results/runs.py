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
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import KtgError
from ..method.graph import Graph
from ..method.scoring import EPOCH_RULES, best_index, last_index, mean_std, objective_best
from ..method.models import count_parameters
from ..files.fileio import RUN_FILES, atomic_write_bytes, atomic_write_text, file_sha256
from ..data.loading import check_dataset_name
from ..files.outputs import output_file
from ..method.evaluation import data_and_evaluator
from ..method.graph import resolve_graph
from ..method.trainconfig import TrainConfig, recipe_of
from ..method.training import Trainer
from ..registry import GENERATORS

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
    # the training settings the run used (config.recipe_of): a reader sees the recipe
    # without opening the checkpoint; empty in summaries written before recipes
    recipe: dict = field(default_factory=dict)
    # best IS of the learning generators' even mixture (two or more learners; else NaN)
    best_is_mix: float = math.nan
    # Variance of Laplacian of each generator at its best-IS epoch (data/sharpness.py)
    vol_at_best: list[float] = field(default_factory=list)
    # node index (as a string) -> SHA-256 of the checkpoint a frozen node was loaded from:
    # which teacher a run learned from, whatever its path was (compare --resume checks it)
    teachers: dict = field(default_factory=dict)


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
    best_is, best_epoch, fid_best, last_is, last_fid, vol_best = [], [], [], [], [], []
    for i in range(k):
        vals, fids, vols = col(f"is_g{i}"), col(f"fid_g{i}"), col(f"vol_g{i}")
        j, last = best_index(vals), last_index(vals)
        if j is not None:
            best_is.append(vals[j]); best_epoch.append(int(hist[j]["epoch"]))
            fid_best.append(fids[j]); last_is.append(vals[last])
            last_fid.append(fids[last]); vol_best.append(vols[j])
        else:
            best_is.append(float("nan")); best_epoch.append(0); fid_best.append(float("nan"))
            last_is.append(float("nan")); last_fid.append(float("nan"))
            vol_best.append(float("nan"))
    summary = RunSummary(graph=graph.name or "graph", seed=config.seed,
                         status=trainer.status, epochs=trainer.epoch, best_is=best_is,
                         best_epoch=best_epoch, last_is=last_is, fid_at_best=fid_best,
                         last_fid=last_fid,
                         params=[count_parameters(g) for g in trainer.generators],
                         wall_s=time.perf_counter() - t0, frozen=sorted(trainer.frozen),
                         recipe=recipe_of(config),
                         best_is_mix=objective_best(col("is_mix")), vol_at_best=vol_best,
                         teachers={str(i): file_sha256(graph.nodes[i].pretrained)
                                   for i in sorted(trainer.frozen)
                                   if graph.nodes[i].pretrained})
    # the graph as it was trained: its file's recipe replaced by the one used
    atomic_write_text(out / "graph.json",
                      replace(graph, recipe=recipe_of(config)).to_json() + "\n")
    # summary.json last: a run directory with a summary is complete (compare --resume)
    atomic_write_text(out / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def vol_ratio(summary: RunSummary, i: int) -> float:
    """Generator i's VoL over its frozen teacher's (the largest frozen node's), both at
    their best epochs, on the same fixed z; NaN when i is frozen or there is no teacher."""
    vols, frozen = summary.vol_at_best, summary.frozen
    if not vols or not frozen or i in frozen:
        return math.nan
    teacher = max(frozen, key=lambda j: summary.params[j])
    return vols[i] / vols[teacher] if vols[teacher] else math.nan


def seed_table(graph: Graph, summaries: list[RunSummary]) -> str:
    """Best IS (mean +- std over seeds) per generator, as a Markdown table."""
    lines = [f"| generator | model | best IS (mean +- std over {len(summaries)} seeds) | "
             f"FID at best | VoL at best | params |", "|---|---|---|---|---|---|"]
    for i, node in enumerate(graph.nodes):
        m, s = mean_std([r.best_is[i] for r in summaries])
        fm, fs = mean_std([r.fid_at_best[i] for r in summaries])
        tag = " (frozen)" if summaries and i in summaries[0].frozen else ""
        fid = f"{fm:.2f} +- {fs:.2f}" if math.isfinite(fm) else "-"
        vm, vs = mean_std([(r.vol_at_best or [math.nan] * graph.k)[i] for r in summaries])
        vol = f"{vm:.1f} +- {vs:.1f}" if math.isfinite(vm) else "-"
        rm, rs = mean_std([vol_ratio(r, i) for r in summaries])
        if math.isfinite(rm):  # a student of a frozen teacher: the KD paper's ratio
            vol += f" ({rm:.3f} +- {rs:.3f} of the teacher's)"
        lines.append(f"| G{i}{tag} | {node.model} | {m:.3f} +- {s:.3f} | {fid} | {vol} | "
                     f"{summaries[0].params[i] if summaries else 0:,} |")
    m, s = mean_std([r.best_is_mix for r in summaries])
    if math.isfinite(m):  # two or more learning generators: what they model together
        lines.append(f"| mixture | images drawn evenly from the learning generators | "
                     f"{m:.3f} +- {s:.3f} | - | - | - |")
    return "\n".join(lines)


# ---- reading runs back: the table ----------------------------------------------------------
def _floats(rows: list[dict], col: str) -> list[float]:
    out = []
    for r in rows:
        try:
            out.append(float(r.get(col) or "nan"))
        except ValueError:
            out.append(float("nan"))
    return out


def score_run(run_dir: str | Path, eval_at: str = "best") -> dict[str, Any]:
    """One run's scores from its files: each generator's IS (and FID) at its best epoch or
    at the last evaluated epoch, and which generator is the run's best."""
    if eval_at not in EPOCH_RULES:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EPOCH_RULES)}")
    run = Path(run_dir)
    missing = [f for f in RUN_FILES if not (run / f).exists()]
    if missing:
        raise KtgError(f"{str(run)!r} is not a finished run directory (no {missing[0]}); "
                       f"a run directory holds {', '.join(RUN_FILES)}")
    try:
        summary = asdict(RunSummary(**json.loads((run / "summary.json").read_text())))
    except (ValueError, TypeError) as e:
        raise KtgError(f"{str(run / 'summary.json')!r} is not a run summary written by "
                       f"`ktg train` / `ktg compare`: {e}") from None
    graph = Graph.from_json((run / "graph.json").read_text(), where=str(run / "graph.json"))
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    k = graph.k
    frozen = set(summary.get("frozen", []))
    is_, fid, epoch = [], [], []
    for i in range(k):
        vals, fids = _floats(rows, f"is_g{i}"), _floats(rows, f"fid_g{i}")
        # the first epoch of the highest IS, or the last epoch that was evaluated
        j = best_index(vals) if eval_at == "best" else last_index(vals)
        if j is None:
            is_.append(float("nan")); fid.append(float("nan")); epoch.append(0)
            continue
        is_.append(vals[j]); fid.append(fids[j]); epoch.append(int(float(rows[j]["epoch"])))
    if graph.target is not None:
        candidates = [graph.target]
    else:
        candidates = [i for i in range(k) if i not in frozen] or list(range(k))
    finite = [i for i in candidates if math.isfinite(is_[i])]
    best = max(finite, key=lambda i: is_[i]) if finite else candidates[0]
    # the mixture of the learning generators, at its own best (or last) epoch; with one
    # learning generator the mixture is that generator (runs of k >= 2 written before
    # the mixture was measured have no column: NaN)
    learning = [i for i in range(k) if i not in frozen]
    if len(learning) == 1:
        mix, fid_mix = is_[learning[0]], fid[learning[0]]
    else:
        vals = _floats(rows, "is_mix")
        j = best_index(vals) if eval_at == "best" else last_index(vals)
        mix, fid_mix = ((vals[j], _floats(rows, "fid_mix")[j]) if j is not None
                        else (float("nan"), float("nan")))
    return {"run_dir": str(run), "seed": summary.get("seed"), "k": k,
            "models": [n.model for n in graph.nodes], "frozen": sorted(frozen),
            "is_per_node": is_, "fid_per_node": fid, "epoch_per_node": epoch,
            "best_node": best, "is": is_[best], "fid": fid[best], "epoch": epoch[best],
            "is_mix": mix, "fid_mix": fid_mix,
            "params": list(summary["params"]), "wall_s": float(summary["wall_s"]),
            "epochs": int(summary["epochs"]), "status": summary["status"]}


def aggregate(run_dirs_by_graph: dict[str, list[str | Path]], eval_at: str = "best",
              relative_to: str | Path | None = None):
    """One row per graph from its runs' files (`summary.json`, `metrics.csv`,
    `graph.json`): the best generator's IS and FID mean +- std over the runs, each
    generator's mean IS, epochs, wall time, parameter counts and the run directories.

    Columns: graph, k, models, seeds, epochs, eval_at, is_mean, is_std, fid_mean, fid_std,
    is_mix_mean, is_mix_std (the learning generators' even mixture, at its own best or
    last epoch; one learning generator: its own IS), best_node (per run), is_values,
    fid_values (per run, ';'-joined), is_g<i>, params_g<i>, frozen, compression (largest
    frozen node's parameters / scored generator's), wall_s (mean per run), diverged
    (runs), runs (';'-joined run directories)."""
    import pandas as pd
    if eval_at not in EPOCH_RULES:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EPOCH_RULES)}")
    scored = {label: [score_run(d, eval_at) for d in dirs]
              for label, dirs in run_dirs_by_graph.items()}
    empty = [label for label, runs in scored.items() if not runs]
    if empty:
        raise KtgError(f"graph {empty[0]!r} has no runs to aggregate")
    kmax = max(r["k"] for runs in scored.values() for r in runs)
    rows = []
    for label, runs in scored.items():
        first = runs[0]
        k = first["k"]
        is_m, is_s = mean_std([r["is"] for r in runs])
        fid_m, fid_s = mean_std([r["fid"] for r in runs])
        mix_m, mix_s = mean_std([r["is_mix"] for r in runs])
        row: dict[str, Any] = {
            "graph": label, "k": k, "models": ",".join(first["models"]), "seeds": len(runs),
            "epochs": max(r["epochs"] for r in runs), "eval_at": eval_at,
            "is_mean": is_m, "is_std": is_s, "fid_mean": fid_m, "fid_std": fid_s,
            "is_mix_mean": mix_m, "is_mix_std": mix_s,
            "best_node": ";".join(str(r["best_node"]) for r in runs),
            "is_values": ";".join(f"{r['is']:.6g}" for r in runs),
            "fid_values": ";".join(f"{r['fid']:.6g}" for r in runs)}
        for i in range(kmax):
            row[f"is_g{i}"] = mean_std([r["is_per_node"][i] for r in runs])[0] if i < k \
                else float("nan")
        for i in range(kmax):
            row[f"params_g{i}"] = first["params"][i] if i < k else pd.NA
        row["frozen"] = ",".join(map(str, first["frozen"]))
        ratios = [max(r["params"][j] for j in r["frozen"]) / r["params"][r["best_node"]]
                  for r in runs if r["frozen"] and r["best_node"] not in r["frozen"]]
        row["compression"] = _mean(ratios)
        row["wall_s"] = _mean([r["wall_s"] for r in runs])
        row["diverged"] = sum(r["status"] == "diverged" for r in runs)
        dirs = [Path(r["run_dir"]) for r in runs]
        if relative_to is not None:
            dirs = [_relative(d, Path(relative_to)) for d in dirs]
        row["runs"] = ";".join(map(str, dirs))
        rows.append(row)
    df = pd.DataFrame(rows)
    for i in range(kmax):
        df[f"params_g{i}"] = df[f"params_g{i}"].astype("Int64")
    return df


def _mean(values: list[float]) -> float:
    return mean_std(values)[0] if values else float("nan")


def _relative(p: Path, root: Path) -> Path:
    try:
        return p.resolve().relative_to(root.resolve())
    except ValueError:
        return p


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def format_markdown(df, caption: str = "") -> str:
    """The `aggregate` table as Markdown: what a person reads (the CSV has every column)."""
    lines = [caption, ""] if caption else []
    lines += ["| graph | seeds | epochs | IS (best G) | FID (best G) | IS (mixture) | "
              "IS per generator | params per generator | wall s / run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        k = int(r["k"])
        frozen = {int(x) for x in str(r["frozen"]).split(",") if x != ""}
        fid = (f"{r['fid_mean']:.2f} +- {r['fid_std']:.2f}"
               if math.isfinite(r["fid_mean"]) else "-")
        mix = (f"{r['is_mix_mean']:.3f} +- {r['is_mix_std']:.3f}"
               if math.isfinite(r["is_mix_mean"]) else "-")
        per_is = " / ".join("teacher" if i in frozen else
                            (f"{r[f'is_g{i}']:.3f}" if math.isfinite(r[f"is_g{i}"]) else "-")
                            for i in range(k))
        params = " / ".join(_millions(int(r[f"params_g{i}"])) + (" (frozen)" if i in frozen
                                                                 else "") for i in range(k))
        if math.isfinite(r["compression"]):
            params += f"; {r['compression']:.1f}x smaller"
        graph = r["graph"] + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(f"| {graph} | {r['seeds']} | {r['epochs']} | "
                     f"{r['is_mean']:.3f} +- {r['is_std']:.3f} | {fid} | {mix} | {per_is} | "
                     f"{params} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def pretrain(model: str, config, output: str | Path, keep: str = "best",
             progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Train one `model` generator with its own SN discriminator (the `dcgan-sn` graph
    with the model replaced) and write it as a checkpoint a graph node can name as
    `pretrained`. `keep`: the weights of the best-IS epoch or of the last epoch."""
    from tqdm import tqdm

    if model not in GENERATORS:
        raise KtgError(f"unknown generator model {model!r}; valid: "
                       f"{', '.join(GENERATORS.names())}")
    if keep not in EPOCH_RULES:
        raise KtgError(f"unknown --keep {keep!r}; valid: {', '.join(EPOCH_RULES)}")
    output = output_file(output, force, example="teacher.pt")
    check_dataset_name(config.dataset)
    config.validate()
    spec = resolve_graph("dcgan-sn").to_dict()
    spec.update(name=f"pretrain-{model}", nodes=[{"model": model}],
                description=f"teacher: one {model} generator with its own SN discriminator")
    graph = Graph.from_dict(spec)
    data, evaluator = data_and_evaluator(config)
    trainer = Trainer(graph, config, data=data, evaluator=evaluator)
    bar = tqdm(total=config.epochs, desc=f"pretrain {model}", unit="epoch", file=sys.stderr,
               dynamic_ncols=True, disable=not progress)

    def tick(row: dict) -> None:
        bar.set_postfix(IS=f"{row.get('is_g0', float('nan')):.2f}")
        bar.update(1)
    t0 = time.perf_counter()
    try:
        trainer.fit(tick)
    finally:
        bar.close()
    if not math.isfinite(trainer.best_is[0]):
        raise KtgError(f"pretraining {model} diverged before its first evaluation (non-"
                       f"finite loss); nothing written; try a lower learning rate")
    last_is = trainer.history[-1].get("is_g0", float("nan"))
    if keep == "best":
        trainer.load_best()
    trainer.export_generator(0, output)
    return {"output": str(output), "model": model, "keep": keep,
            "best_is": trainer.best_is[0], "best_epoch": trainer.best_epoch,
            "last_is": last_is, "epochs": trainer.epoch, "status": trainer.status,
            "wall_s": time.perf_counter() - t0}
