"""`ktg compare` and `ktg pretrain`: the papers' comparison protocol as commands.

    ktg compare GRAPH... --dataset D --seeds 5     one table: IS / FID mean +- std per graph
    ktg pretrain --model M --dataset D -o t.pt     a teacher generator for kd-mse / kd-joint

`compare` trains every (graph, seed) pair once with `runs.train_one`, each pair an
independent run in `OUT/<graph>/seed<N>/` (`metrics.csv`, `summary.json`, `graph.json`,
`checkpoint.pt`, sample grids). On Ray (the default: a local Ray, or the cluster at
`--address`) every run is one task with one CPU and one torch thread; with `--no-ray` the
runs go one after the other in this process. A Ray task sends its run's files back to the
driver, so `--out` only has to exist where `ktg compare` runs, and a teacher checkpoint
given with `--teacher` travels with the task when a worker cannot see its path.

The table (`OUT/table.md`, `OUT/table.csv`) is computed from the per-run files alone by
`aggregate`, so anyone can recompute it from `metrics.csv`:

- a run is scored on its *best generator*: the generator with the highest IS among the
  generators that train (a frozen teacher is never scored; a graph's `target` node, when
  the file names one, is scored instead, as in the search);
- `--eval-at best`: each generator is scored at the epoch of its highest IS, and the FID is
  that generator's FID at that epoch; `--eval-at last`: at the last evaluated epoch;
- IS and FID are mean +- sample std (n - 1) over the seeds of the best generator's scores;
  `is_g<i>` is generator i's mean score over the seeds, scored the same way.

Distillation (the KD paper): the built-in `kd-mse` and `kd-joint` graphs name a teacher
checkpoint `teacher.pt` that does not ship with the package; `--teacher PATH` replaces the
checkpoint path of every node that has one. Make a teacher with `ktg pretrain`.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .errors import KtgError
from .graph import Graph, Node, builtin_graphs, resolve_graph

EVAL_AT = ("best", "last")
TABLE_MD, TABLE_CSV = "table.md", "table.csv"
RUN_FILES = ("summary.json", "metrics.csv", "graph.json")


# ---- graphs and teachers -------------------------------------------------------------------
def apply_teacher(graph: Graph, teacher: str | Path) -> Graph:
    """The same graph with the checkpoint path of every pretrained node set to `teacher`."""
    path = str(Path(teacher).expanduser().resolve())
    g = Graph.from_dict(graph.to_dict())
    g.nodes = [Node(n.model, path if n.pretrained else None) for n in graph.nodes]
    return g


def _label(graph: Graph, spec: str) -> str:
    """A graph's name in the table and its directory name under OUT: one plain path
    component (a graph named `..` or `a/b` must not lead outside OUT)."""
    name = graph.name or Path(spec).stem or "graph"
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:100].lstrip(".")
    return label or "graph"


def load_graphs(specs: list[str], teacher: str | Path | None = None
                ) -> list[tuple[str, Graph]]:
    """Resolve built-in names and graph files into (label, graph) pairs, teachers applied.

    A graph with pretrained nodes needs `teacher` when it is a built-in (its `teacher.pt`
    is a placeholder), or when the checkpoint its file names does not exist."""
    if not specs:
        raise KtgError("no graph given; valid: a graph file or one of the built-in graphs: "
                       f"{', '.join(builtin_graphs())}")
    if teacher is not None and not Path(teacher).expanduser().is_file():
        raise KtgError(f"--teacher {str(teacher)!r} does not exist; valid: a checkpoint file "
                       f"written by `ktg pretrain --model M --dataset D -o PATH`")
    builtins = builtin_graphs()
    out: list[tuple[str, Graph]] = []
    where: dict[str, str] = {}
    for spec in specs:
        spec = str(spec)
        graph = resolve_graph(spec)
        label = _label(graph, spec)
        if label in where:
            raise KtgError(f"graph {spec!r} and graph {where[label]!r} are both named "
                           f"{label!r}; give each graph once, or rename one (its `name` "
                           f"field) so that their run directories differ")
        where[label] = spec
        pre = [i for i, n in enumerate(graph.nodes) if n.pretrained]
        if pre:
            if teacher is not None:
                graph = apply_teacher(graph, teacher)
            elif spec in builtins and not Path(spec).exists():
                models = sorted({graph.nodes[i].model for i in pre})
                raise KtgError(
                    f"graph {label!r} distils from a pretrained teacher (node "
                    f"{', '.join(map(str, pre))}), and the built-in graph names no real "
                    f"checkpoint: pass --teacher PATH, a checkpoint written by `ktg pretrain "
                    f"--model {models[0]} --dataset D --epochs E -o PATH`")
            else:
                for i in pre:
                    if not Path(graph.nodes[i].pretrained).exists():
                        raise KtgError(f"graph {spec!r}: node {i}'s pretrained checkpoint "
                                       f"{graph.nodes[i].pretrained!r} does not exist; pass "
                                       f"--teacher PATH or fix the path in the graph file")
        out.append((label, graph))
    return out


def check_teachers(graphs: list[tuple[str, Graph]], config, channels: int) -> None:
    """Load every frozen node's checkpoint once: a wrong file fails before any training."""
    from .training import load_pretrained
    seen: dict[str, str] = {}
    for label, g in graphs:
        for i in g.frozen_nodes():
            path = g.nodes[i].pretrained
            if path not in seen:
                seen[path], _ = load_pretrained(path, config.image_size, channels, config.nz)
            if seen[path] != g.nodes[i].model:
                raise KtgError(f"teacher checkpoint {path!r} holds a {seen[path]!r} generator, "
                               f"but graph {label!r} node {i} is a {g.nodes[i].model!r}; "
                               f"make the teacher with `ktg pretrain --model "
                               f"{g.nodes[i].model}`, or copy the graph file and set node "
                               f"{i}'s model to {seen[path]!r}")


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
    if eval_at not in EVAL_AT:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EVAL_AT)}")
    from .runs import RunSummary
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
        good = [j for j, v in enumerate(vals) if math.isfinite(v)]
        if not good:
            is_.append(float("nan")); fid.append(float("nan")); epoch.append(0)
            continue
        # first epoch of the highest IS, or the last epoch that was evaluated
        j = max(good, key=lambda j: (vals[j], -j)) if eval_at == "best" else good[-1]
        is_.append(vals[j]); fid.append(fids[j]); epoch.append(int(float(rows[j]["epoch"])))
    if graph.target is not None:
        candidates = [graph.target]
    else:
        candidates = [i for i in range(k) if i not in frozen] or list(range(k))
    finite = [i for i in candidates if math.isfinite(is_[i])]
    best = max(finite, key=lambda i: is_[i]) if finite else candidates[0]
    return {"run_dir": str(run), "seed": summary.get("seed"), "k": k,
            "models": [n.model for n in graph.nodes], "frozen": sorted(frozen),
            "is_per_node": is_, "fid_per_node": fid, "epoch_per_node": epoch,
            "best_node": best, "is": is_[best], "fid": fid[best], "epoch": epoch[best],
            "params": list(summary["params"]), "wall_s": float(summary["wall_s"]),
            "epochs": int(summary["epochs"]), "status": summary["status"]}


def aggregate(run_dirs_by_graph: dict[str, list[str | Path]], eval_at: str = "best",
              relative_to: str | Path | None = None):
    """One row per graph from its runs' files (`summary.json`, `metrics.csv`,
    `graph.json`): the best generator's IS and FID mean +- std over the runs, each
    generator's mean IS, epochs, wall time, parameter counts and the run directories.

    Columns: graph, k, models, seeds, epochs, eval_at, is_mean, is_std, fid_mean, fid_std,
    best_node (per run), is_values, fid_values (per run, ';'-joined), is_g<i>, params_g<i>,
    frozen, compression (largest frozen node's parameters / scored generator's), wall_s
    (mean per run), diverged (runs), runs (';'-joined run directories)."""
    import pandas as pd
    from .runs import mean_std
    if eval_at not in EVAL_AT:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EVAL_AT)}")
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
        row: dict[str, Any] = {
            "graph": label, "k": k, "models": ",".join(first["models"]), "seeds": len(runs),
            "epochs": max(r["epochs"] for r in runs), "eval_at": eval_at,
            "is_mean": is_m, "is_std": is_s, "fid_mean": fid_m, "fid_std": fid_s,
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
    from .runs import mean_std
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
    lines += ["| graph | seeds | epochs | IS (best G) | FID (best G) | IS per generator | "
              "params per generator | wall s / run |", "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        k = int(r["k"])
        frozen = {int(x) for x in str(r["frozen"]).split(",") if x != ""}
        fid = (f"{r['fid_mean']:.2f} +- {r['fid_std']:.2f}"
               if math.isfinite(r["fid_mean"]) else "-")
        per_is = " / ".join("teacher" if i in frozen else
                            (f"{r[f'is_g{i}']:.3f}" if math.isfinite(r[f"is_g{i}"]) else "-")
                            for i in range(k))
        params = " / ".join(_millions(int(r[f"params_g{i}"])) + (" (frozen)" if i in frozen
                                                                 else "") for i in range(k))
        if math.isfinite(r["compression"]):
            params += f"; {r['compression']:.1f}x smaller"
        graph = r["graph"] + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(f"| {graph} | {r['seeds']} | {r['epochs']} | "
                     f"{r['is_mean']:.3f} +- {r['is_std']:.3f} | {fid} | {per_is} | {params} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


# ---- running ---------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What `compare` produced: the table, its Markdown, and every run directory."""
    table: Any                       # pandas.DataFrame, see `aggregate`
    markdown: str
    out: Path
    run_dirs: dict[str, list[Path]] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    label: str
    graph: Graph
    seed: int
    run_dir: Path


_WORKER_SHARED: dict[tuple, tuple] = {}


def _shared(config):
    """The data set and evaluator of a config, built once per process (Ray reuses worker
    processes across tasks)."""
    from .data import load_dataset
    from .metrics import Evaluator
    from .training import resolve_device
    key = (config.dataset, config.image_size, config.data_root, config.extractor,
           config.eval_samples, config.fid, config.inception_weights, config.device)
    if key not in _WORKER_SHARED:
        data = load_dataset(config.dataset, config.image_size, root=config.data_root)
        ev = Evaluator(data, extractor=config.extractor, num_samples=config.eval_samples,
                       fid=config.fid, device=str(resolve_device(config.device)),
                       inception_weights=config.inception_weights)
        _WORKER_SHARED.clear()
        _WORKER_SHARED[key] = (data, ev)
    return _WORKER_SHARED[key]


def _train_task(graph_spec: dict, config_dict: dict, teachers: dict[str, bytes]
                ) -> dict[str, bytes]:
    """One (graph, seed) run inside a Ray worker; returns the run directory's files."""
    import tempfile

    import torch

    from .runs import train_one
    from .training import TrainConfig
    torch.set_num_threads(1)  # one CPU per task: several runs share a machine
    config = TrainConfig.from_dict(config_dict)
    data, ev = _shared(config)
    graph = Graph.from_dict(graph_spec)
    with tempfile.TemporaryDirectory(prefix="ktg-compare-") as tmp:
        nodes = []
        for j, n in enumerate(graph.nodes):
            path = n.pretrained
            # the teacher travels with the task when this worker cannot see the driver's file
            if path in teachers and not (Path(path).is_file() and
                                         Path(path).stat().st_size == len(teachers[path])):
                path = str(Path(tmp) / f"teacher{j}.pt")
                Path(path).write_bytes(teachers[n.pretrained])
            nodes.append(Node(n.model, path))
        graph.nodes = nodes
        run = Path(tmp) / "run"
        train_one(graph, config, run, data=data, evaluator=ev)
        (run / "graph.json").write_text(json.dumps(graph_spec, indent=2) + "\n")
        return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


# what `runs.train_one` writes in a run folder (and nothing else)
_RUN_FOLDER_FILES = re.compile(r"(summary\.json|metrics\.csv|graph\.json|checkpoint\.pt|"
                               r"samples_g\d+\.png|\.[^/]+\.tmp)")


def is_run_folder(d: Path) -> bool:
    """True for a real folder holding only files a training run writes: the only kind of
    folder `compare --force` deletes to make room."""
    return d.is_dir() and not d.is_symlink() and all(
        f.is_file() and not f.is_symlink() and _RUN_FOLDER_FILES.fullmatch(f.name)
        for f in d.iterdir())


def _write_run(files: dict[str, bytes], run_dir: Path) -> None:
    from .results import atomic_write_bytes
    run_dir.mkdir(parents=True, exist_ok=True)
    # summary.json last: a run directory with a summary is complete
    for name in sorted(files, key=lambda n: n == "summary.json"):
        atomic_write_bytes(run_dir / name, files[name])


def _run_label(job: _Job) -> str:
    try:
        s = json.loads((job.run_dir / "summary.json").read_text())
        return f"{job.label}/seed{job.seed} IS {max(s['best_is']):.2f}"
    except (OSError, ValueError, KeyError):
        return f"{job.label}/seed{job.seed}"


def _run_sequential(jobs: list[_Job], config, data, evaluator, bar) -> None:
    from .runs import train_one
    for job in jobs:
        train_one(job.graph, replace(config, seed=job.seed), job.run_dir, data=data,
                  evaluator=evaluator)
        bar.set_postfix_str(_run_label(job))
        bar.update(1)


def _run_ray(jobs: list[_Job], config, address: str | None, gpus_per_run: float,
             bar, log_file: Path) -> None:
    from .raylog import ray_output_to
    with ray_output_to(log_file):  # Ray's banners and worker lines: OUT/compare.log
        _fan_out(jobs, config, address, gpus_per_run, bar)


def _fan_out(jobs: list[_Job], config, address: str | None, gpus_per_run: float,
             bar) -> None:
    import ray
    from ray.exceptions import RayTaskError

    from .search import _init_ray
    started = _init_ray(address)
    refs: dict = {}
    try:
        teachers = {n.pretrained: Path(n.pretrained).read_bytes() for job in jobs
                    for i, n in enumerate(job.graph.nodes) if i in job.graph.frozen_nodes()}
        teachers_ref = ray.put(teachers)
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_run, max_retries=1)(_train_task)
        for job in jobs:
            cfg = asdict(replace(config, seed=job.seed))
            refs[task.remote(job.graph.to_dict(), cfg, teachers_ref)] = job
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    files = ray.get(ref)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, KtgError):
                        raise KtgError(f"{job.label}/seed{job.seed}: {cause}") from None
                    raise
                _write_run(files, job.run_dir)
                bar.set_postfix_str(_run_label(job))
                bar.update(1)
    except BaseException:
        for ref in refs:  # the runs still queued or running
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def compare(graphs: list[str], config, out: str | Path, seeds: int = 5, seed0: int = 0,
            eval_at: str = "best", teacher: str | Path | None = None, use_ray: bool = True,
            address: str | None = None, gpus_per_run: float = 0.0,
            progress: bool = True, force: bool = False) -> Comparison:
    """Train every graph with `seeds` seeds (`config` with seed0, seed0+1, ...) and write
    the table; the Python form of `ktg compare`.

    Everything that can fail on bad input (graph names and files, the data set, seeds,
    the teacher checkpoint, existing run directories) fails before a file is written; if a
    run fails, the files this call wrote are removed (OUT itself when this call made it).
    """
    from tqdm import tqdm
    t0 = time.perf_counter()
    if eval_at not in EVAL_AT:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EVAL_AT)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 1000:
        raise KtgError(f"The value of `--seeds` is {seeds!r}, but must be an integer, "
                       f"`--seeds >= 1` and <= 1000")
    if not 0 <= gpus_per_run <= 64:  # also false for NaN
        raise KtgError(f"The value of `--gpus-per-run` is {gpus_per_run}, but must be a "
                       f"number with 0 <= --gpus-per-run <= 64")
    if use_ray and config.device.startswith("cuda") and not gpus_per_run:
        raise KtgError(f"--device {config.device} on Ray needs --gpus-per-run > 0 (Ray hides "
                       f"GPUs from tasks that ask for none); or use --device auto")
    pairs = load_graphs(list(graphs), teacher)
    from .cli import _check_dataset
    _check_dataset(config.dataset)
    config.validate()
    replace(config, seed=seed0 + seeds - 1).validate()  # the last seed is in range too
    from .outputs import output_folder
    out, _ = output_folder(out, force)
    jobs = [_Job(label, g, s, out / label / f"seed{s}") for label, g in pairs
            for s in range(seed0, seed0 + seeds)]
    taken = [j.run_dir for j in jobs if j.run_dir.exists() or j.run_dir.is_symlink()]
    if taken and not force:
        raise KtgError(f"run directory {str(taken[0])!r} already exists; choose another "
                       f"--out, or pass --force to replace it (compare never mixes old and "
                       f"new runs)")
    for d in taken:  # with --force: only a folder that holds a run's files and nothing else
        if not is_run_folder(d):
            raise KtgError(f"{str(d)!r} is in the way and is not a run folder written by "
                           f"ktg (it holds other files, or is a link); nothing was "
                           f"replaced: move it away or choose another --out")
    if teacher is not None and not any(g.nodes[i].pretrained for _, g in pairs
                                       for i in range(g.k)):
        print(f"note: --teacher {teacher} is not used: no graph has a pretrained node",
              file=sys.stderr)
    # the data set, the evaluator (trains and caches the classifier extractor once, before
    # parallel workers would race to) and every teacher checkpoint, before any write
    # (on Ray this process only checks and warms caches: its device may lack the GPU)
    data, evaluator = _shared(replace(config, device="cpu") if use_ray else config)
    check_teachers(pairs, config, data.channels)

    for d in taken:  # every check passed: the old runs go, the new ones take their place
        shutil.rmtree(d)
    created = not out.exists()
    made = [out / label for label, _ in pairs if not (out / label).exists()]
    bar = tqdm(total=len(jobs), desc="compare", unit="run", file=sys.stderr,
               dynamic_ncols=True, disable=not progress)
    try:
        if use_ray:
            _run_ray(jobs, config, address, gpus_per_run, bar, out / "compare.log")
        else:
            _run_sequential(jobs, config, data, evaluator, bar)
        bar.close()
        run_dirs: dict[str, list[Path]] = {}
        for j in jobs:
            run_dirs.setdefault(j.label, []).append(j.run_dir)
        table = aggregate(run_dirs, eval_at, relative_to=out)
        where = "its best epoch" if eval_at == "best" else "the last epoch"
        caption = (f"IS / FID of each graph's best generator at {where}, mean +- std over "
                   f"{seeds} seed(s); data set {config.dataset} {config.image_size} px, "
                   f"{config.epochs} epoch(s), {config.eval_samples} samples per generator, "
                   f"extractor {config.extractor}.")
        markdown = format_markdown(table, caption)
        from .results import atomic_write_text
        atomic_write_text(out / TABLE_CSV, table.to_csv(index=False))
        atomic_write_text(out / TABLE_MD, markdown + "\n")
    except BaseException:
        bar.close()
        if created:  # nothing half-written is left behind
            shutil.rmtree(out, ignore_errors=True)
        else:
            for d in made:
                shutil.rmtree(d, ignore_errors=True)
            for j in jobs:
                shutil.rmtree(j.run_dir, ignore_errors=True)
        raise
    return Comparison(table=table, markdown=markdown, out=out, run_dirs=run_dirs,
                      wall_s=time.perf_counter() - t0)


# ---- pretrain --------------------------------------------------------------------------------
def pretrain(model: str, config, output: str | Path, keep: str = "best",
             progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Train one `model` generator with its own SN discriminator (the `dcgan-sn` graph
    with the model replaced) and write it as a checkpoint a graph node can name as
    `pretrained`. `keep`: the weights of the best-IS epoch or of the last epoch."""
    from tqdm import tqdm

    from .registry import GENERATORS
    from .training import Trainer
    if model not in GENERATORS:
        raise KtgError(f"unknown generator model {model!r}; valid: "
                       f"{', '.join(GENERATORS.names())}")
    if keep not in EVAL_AT:
        raise KtgError(f"unknown --keep {keep!r}; valid: {', '.join(EVAL_AT)}")
    from .outputs import output_file
    output = output_file(output, force, example="teacher.pt")
    from .cli import _check_dataset
    _check_dataset(config.dataset)
    config.validate()
    spec = resolve_graph("dcgan-sn").to_dict()
    spec.update(name=f"pretrain-{model}", nodes=[{"model": model}],
                description=f"teacher: one {model} generator with its own SN discriminator")
    graph = Graph.from_dict(spec)
    data, evaluator = _shared(config)
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


# ---- the CLI ---------------------------------------------------------------------------------
def _train_config(args, seed: int):
    from .cli import _train_config as base
    cfg = base(args, args.epochs, seed)
    return replace(cfg, max_iters_per_epoch=args.max_iters_per_epoch)


def add_compare_parser(sub, reg) -> None:
    """`ktg compare`: several graphs, several seeds, one table."""
    from .cli import add_training_args
    from .outputs import add_out_args
    sp = sub.add_parser(
        "compare", help="train graphs over several seeds; one table of IS / FID mean +- std",
        description="Train every GRAPH with every seed (independent runs, in parallel on "
                    "Ray) and write OUT/table.md and OUT/table.csv: per graph, its best "
                    "generator's IS and FID mean +- std over the seeds, every generator's IS, "
                    "parameter counts, epochs and wall time, from the per-run files in "
                    "OUT/<graph>/seed<N>/.")
    sp.add_argument("graphs", nargs="+", metavar="GRAPH",
                    help="a graph JSON file or a built-in graph name (see `ktg graphs`)")
    add_training_args(sp, reg)
    sp.add_argument("--seeds", type=int, default=5, help="seeds per graph (default 5)")
    sp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    sp.add_argument("--eval-at", choices=EVAL_AT, default="best",
                    help="score a run at its best epoch (default) or at its last")
    add_out_args(sp, "output folder (default ktg_runs/compare)", default="ktg_runs/compare")
    sp.add_argument("--teacher", metavar="PATH",
                    help="teacher checkpoint (from `ktg pretrain`) for every pretrained node; "
                         "needed by the built-in kd-mse and kd-joint")
    sp.add_argument("--address", help="Ray address: auto, ray://HOST:10001 (default: a "
                                      "local Ray)")
    sp.add_argument("--no-ray", action="store_true", help="run sequentially in this process")
    sp.add_argument("--gpus-per-run", type=float, default=0.0,
                    help="GPUs per Ray task (fractions allowed; default 0)")
    sp.add_argument("--max-iters-per-epoch", type=int, help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_compare)


def add_pretrain_parser(sub, reg) -> None:
    """`ktg pretrain`: a teacher generator for the distillation graphs."""
    from .cli import add_training_args
    from .outputs import add_out_args
    sp = sub.add_parser(
        "pretrain", help="train one generator as a distillation teacher",
        description="Train a single generator with its own spectral-norm discriminator and "
                    "write it as a checkpoint that a graph node names as `pretrained` (or "
                    "that `ktg compare --teacher` passes to kd-mse / kd-joint).")
    sp.add_argument("--model", required=True, choices=reg.GENERATORS.names(),
                    help="generator model key")
    add_training_args(sp, reg)
    add_out_args(sp, "checkpoint file to write", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--keep", choices=EVAL_AT, default="best",
                    help="export the weights of the best-IS epoch (default) or the last")
    sp.add_argument("--max-iters-per-epoch", type=int, help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_pretrain)


def cmd_compare(args) -> int:
    cfg = _train_config(args, args.seed0)
    result = compare(args.graphs, cfg, out=args.out, seeds=args.seeds, seed0=args.seed0,
                     eval_at=args.eval_at, teacher=args.teacher, use_ray=not args.no_ray,
                     address=args.address, gpus_per_run=args.gpus_per_run,
                     force=args.force)
    print(result.markdown)
    diverged = int(result.table["diverged"].sum())
    if diverged:
        print(f"note: {diverged} run(s) diverged (non-finite loss); their scores before "
              f"divergence are used")
    print(f"files: {result.out}/{TABLE_MD}, {result.out}/{TABLE_CSV}, per run: "
          f"{result.out}/<graph>/seed<N>/ (summary.json, metrics.csv); "
          f"{result.wall_s:.0f} s in all")
    return 0


def cmd_pretrain(args) -> int:
    cfg = _train_config(args, args.seed)
    info = pretrain(args.model, cfg, args.out, keep=args.keep, force=args.force)
    which = (f"best epoch {info['best_epoch']}, IS {info['best_is']:.3f}" if args.keep ==
             "best" else f"last epoch {info['epochs']}, IS {info['last_is']:.3f}")
    print(f"wrote {info['output']}: {args.model} after {info['epochs']} epoch(s) on "
          f"{args.dataset} ({which}); use it with `ktg compare kd-mse --teacher "
          f"{info['output']} --dataset {args.dataset} --image-size {args.image_size}`")
    return 0
