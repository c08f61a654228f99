"""The papers' comparison protocol: several graphs, several seeds, one table.

    ktg compare GRAPH... --dataset D --seeds 5     one table: IS / FID mean +- std per graph

`compare` trains every (graph, seed) pair once with `runs.train_one`, each pair an
independent run in `OUT/<graph>/seed<N>/` (`metrics.csv`, `summary.json`, `graph.json`,
`checkpoint.pt`, sample grids). On Ray (the default: a local Ray, or the cluster at
`--address`) every run is one task with one CPU and one torch thread; with `--no-ray` the
runs go one after the other in this process. A Ray task sends its run's files back to the
driver, so `--out` only has to exist where `ktg compare` runs, and a teacher checkpoint
given with `--teacher` travels with the task when a worker cannot see its path.

The table (`OUT/table.md`, `OUT/table.csv`) is computed from the per-run files alone by
`runs.aggregate`, so anyone can recompute it from `metrics.csv`:

- a run is scored on its *best generator*: the generator with the highest IS among the
  generators that train (a frozen teacher is never scored; a graph's `target` node, when
  the file names one, is scored instead, as in the search);
- `--eval-at best`: each generator is scored at the epoch of its highest IS, and the FID is
  that generator's FID at that epoch; `--eval-at last`: at the last evaluated epoch;
- IS and FID are mean +- sample std (n - 1) over the seeds of the best generator's scores;
  `is_g<i>` is generator i's mean score over the seeds, scored the same way.

Resuming (`--resume`): `OUT/compare.json` holds the training settings of the call that
made OUT (every field but the seed and the device). With the same settings, a run
folder that is complete (its `summary.json`, written last, exists) and is this job's run
(the same graph, seed, recipe and teacher bytes: `same_run`) is kept; the other runs
train. A graph or seed added to the command trains beside the kept runs, since a run is
deterministic per seed. An interrupted compare keeps its complete runs (and removes the
rest), so a killed hours-long comparison loses at most the runs in flight.

Distillation (the KD paper): the built-in `kd-mse` and `kd-joint` graphs name a teacher
checkpoint `teacher.pt` that does not ship with the package; `--teacher PATH` replaces the
checkpoint path of every node that has one. Make a teacher with `ktg pretrain`
(teachers.py).
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..method.graph import Graph, Node, builtin_graphs, resolve_graph
from ..files.fileio import TABLE_CSV, TABLE_MD
from ..method.scoring import EPOCH_RULES
from ..results.runs import aggregate, format_markdown
from ..method.teachers import apply_teacher, check_teachers
from ..method.evaluation import data_and_evaluator
from ..search import failpoints



# ---- graphs and teachers -------------------------------------------------------------------
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


def _train_task(graph_spec: dict, config_dict: dict, teachers: dict[str, bytes]
                ) -> dict[str, bytes]:
    """One (graph, seed) run inside a Ray worker; returns the run directory's files."""
    import tempfile

    import torch

    from ..results.runs import train_one
    from ..method.trainconfig import TrainConfig
    torch.set_num_threads(1)  # one CPU per task: several runs share a machine
    config = TrainConfig.from_dict(config_dict)
    data, ev = data_and_evaluator(config)
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
    from ..files.fileio import atomic_write_bytes
    run_dir.mkdir(parents=True, exist_ok=True)
    # summary.json last: a run directory with a summary is complete
    for name in sorted(files, key=lambda n: n == "summary.json"):
        atomic_write_bytes(run_dir / name, files[name])


SETTINGS = "compare.json"


def settings_of(config) -> dict:
    """What makes two compare calls train the same runs, given graph and seed."""
    d = asdict(config)
    for machine_local in ("seed", "device"):
        d.pop(machine_local, None)
    return {"kind": "ktg compare", "config": d}


def changed_keys(old: dict, new: dict) -> list[str]:
    """The keys whose values differ between two settings dicts (either side may lack one),
    sorted: what a refusal to resume names."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def run_identity(graph: Graph) -> dict:
    """The graph as training sees it: its file form without name, description, recipe
    and teacher paths (a teacher is known by its bytes, `RunSummary.teachers`)."""
    d = graph.to_dict()
    for key in ("name", "description", "recipe"):
        d.pop(key, None)
    d["nodes"] = [{"model": n["model"], "pretrained": "pretrained" in n} for n in d["nodes"]]
    return d


def is_complete(run_dir: Path) -> bool:
    """A run folder whose summary.json exists: it is written last, atomically (graph.json
    too is checked: runs written before that order had it after the summary)."""
    return (run_dir / "summary.json").is_file() and (run_dir / "graph.json").is_file()


def same_run(job: _Job, config, hashes: dict[str, str]) -> str | None:
    """None when the complete run in `job.run_dir` is this job's run: the same graph (as
    training sees it), seed, recipe and teacher bytes; else what differs, in words.
    `hashes`: teacher path -> SHA-256, filled here on first need (one hash per file)."""
    from ..files.fileio import file_sha256
    from ..method.trainconfig import recipe_of, with_later_fields
    try:
        summary = json.loads((job.run_dir / "summary.json").read_text())
        graph = Graph.load(job.run_dir / "graph.json")
    except (OSError, ValueError, KtgError) as e:
        return f"its files cannot be read ({e})"
    if summary.get("seed") != job.seed:
        return f"seed {summary.get('seed')!r}, not {job.seed}"
    if run_identity(graph) != run_identity(job.graph):
        return "another graph"
    want = recipe_of(replace(config, seed=job.seed))
    had = summary.get("recipe") if isinstance(summary.get("recipe"), dict) else {}
    diff = changed_keys(with_later_fields(had, want), want)
    if diff:
        return f"another recipe ({', '.join(diff)})"
    for n in job.graph.nodes:
        if n.pretrained and n.pretrained not in hashes:
            hashes[n.pretrained] = file_sha256(n.pretrained)
    teachers = {str(i): hashes[n.pretrained] for i, n in enumerate(job.graph.nodes)
                if n.pretrained}
    if summary.get("teachers", {}) != teachers:
        return "another teacher checkpoint"
    return None


def _resumable(out: Path, jobs: list[_Job], config, force: bool
               ) -> tuple[list[_Job], list[Path]]:
    """For `--resume`: (the jobs to train, the run folders to delete first). A complete
    run of another graph, seed, recipe or teacher is refused without `force`."""
    old = None
    try:
        old = json.loads((out / SETTINGS).read_text())
    except (OSError, ValueError):
        pass
    want = settings_of(config)
    if isinstance(old, dict) and isinstance(old.get("config"), dict):
        from ..method.trainconfig import with_later_fields
        old = {**old, "config": with_later_fields(old["config"], want["config"])}
    if old != want and any(j.run_dir.exists() for j in jobs) and not force:
        if old is None:
            why = (f"it has no {SETTINGS} (it is not a compare folder, or one written "
                   f"before compare could resume)")
        else:
            had = old.get("config") if isinstance(old, dict) else None
            diff = changed_keys(had if isinstance(had, dict) else {}, want["config"])
            why = f"it was made with other settings ({', '.join(diff) or SETTINGS})"
        raise KtgError(f"--resume: {str(out)!r} cannot be resumed: {why}; rerun with its "
                       f"settings, choose another --out, or pass --force to retrain there")
    hashes: dict[str, str] = {}  # teacher path -> SHA-256, for same_run
    todo, clear = [], []
    for j in jobs:
        d = j.run_dir
        if not (d.exists() or d.is_symlink()):
            todo.append(j)
            continue
        if old == want and is_complete(d) and not d.is_symlink():
            why = same_run(j, config, hashes)
            if why is None:
                continue  # kept
            if not force:
                raise KtgError(f"--resume: {str(d)!r} holds a run of {why}; rerun with "
                               f"the settings it was made with, choose another --out, or "
                               f"pass --force to retrain it")
        todo.append(j)
        clear.append(d)
    return todo, clear


def _run_label(job: _Job) -> str:
    try:
        s = json.loads((job.run_dir / "summary.json").read_text())
        return f"{job.label}/seed{job.seed} IS {max(s['best_is']):.2f}"
    except (OSError, ValueError, KeyError):
        return f"{job.label}/seed{job.seed}"


def _run_sequential(jobs: list[_Job], config, data, evaluator, bar) -> None:
    from ..results.runs import train_one
    for job in jobs:
        train_one(job.graph, replace(config, seed=job.seed), job.run_dir, data=data,
                  evaluator=evaluator)
        failpoints.hit("compare-run")
        bar.set_postfix_str(_run_label(job))
        bar.update(1)


def _run_ray(jobs: list[_Job], config, address: str | None, gpus_per_run: float,
             bar, log_file: Path) -> None:
    from ..search.raylog import ray_output_to
    with ray_output_to(log_file):  # Ray's banners and worker lines: OUT/compare.log
        _fan_out(jobs, config, address, gpus_per_run, bar)


def _fan_out(jobs: list[_Job], config, address: str | None, gpus_per_run: float,
             bar) -> None:
    from ..search.workers import fan_out
    # the teachers' files go to the object store once, not once per run
    teachers = {n.pretrained: Path(n.pretrained).read_bytes() for job in jobs
                for i, n in enumerate(job.graph.nodes) if i in job.graph.frozen_nodes()}
    calls = [(job.graph.to_dict(), asdict(replace(config, seed=job.seed))) for job in jobs]
    labels = [f"{job.label}/seed{job.seed}" for job in jobs]
    for i, files in fan_out(_train_task, calls, labels, address, num_gpus=gpus_per_run,
                            shared=teachers):
        _write_run(files, jobs[i].run_dir)
        failpoints.hit("compare-run")  # the kill tests' point: this run written, no next
        bar.set_postfix_str(_run_label(jobs[i]))
        bar.update(1)


def check_gpus_per_run(gpus_per_run: float, device: str, use_ray: bool) -> None:
    """The GPUs each Ray task asks for (`--gpus-per-run` of compare and compress): in
    [0, 64], and not 0 for a CUDA device on Ray (Ray hides GPUs from tasks that ask for
    none, so the run would fail on the worker instead of here)."""
    if not 0 <= gpus_per_run <= 64:  # also false for NaN
        raise KtgError(f"The value of `--gpus-per-run` is {gpus_per_run}, but must be a "
                       f"number with 0 <= --gpus-per-run <= 64")
    if use_ray and device.startswith("cuda") and not gpus_per_run:
        raise KtgError(f"--device {device} on Ray needs --gpus-per-run > 0 (Ray hides "
                       f"GPUs from tasks that ask for none); or use --device auto")

def compare(graphs: list[str], config, out: str | Path, seeds: int = 5, seed0: int = 0,
            eval_at: str = "best", teacher: str | Path | None = None, use_ray: bool = True,
            address: str | None = None, gpus_per_run: float = 0.0,
            progress: bool = True, force: bool = False, resume: bool = False) -> Comparison:
    """Train every graph with `seeds` seeds (`config` with seed0, seed0+1, ...) and write
    the table; the Python form of `ktg compare`. With `resume`, the complete runs already
    in OUT that are these jobs' runs are kept (module docstring).

    Everything that can fail on bad input (graph names and files, the data set, seeds,
    the teacher checkpoint, existing run directories) fails before a file is written; if a
    run fails, the runs it left incomplete are removed, and OUT itself when this call
    made it and no run in it is complete.
    """
    from tqdm import tqdm
    t0 = time.perf_counter()
    if eval_at not in EPOCH_RULES:
        raise KtgError(f"unknown --eval-at {eval_at!r}; valid: {', '.join(EPOCH_RULES)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 1000:
        raise KtgError(f"The value of `--seeds` is {seeds!r}, but must be an integer, "
                       f"`--seeds >= 1` and <= 1000")
    check_gpus_per_run(gpus_per_run, config.device, use_ray)
    pairs = load_graphs(list(graphs), teacher)
    from ..data.loading import check_dataset_name
    check_dataset_name(config.dataset)
    config.validate()
    replace(config, seed=seed0 + seeds - 1).validate()  # the last seed is in range too
    from ..files.outputs import output_folder
    out, _ = output_folder(out, force or resume)
    jobs = [_Job(label, g, s, out / label / f"seed{s}") for label, g in pairs
            for s in range(seed0, seed0 + seeds)]
    if resume:
        todo, taken = _resumable(out, jobs, config, force)
    else:
        todo = jobs
        taken = [j.run_dir for j in jobs if j.run_dir.exists() or j.run_dir.is_symlink()]
    if taken and not force and not resume:
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
    data, evaluator = data_and_evaluator(replace(config, device="cpu") if use_ray else config)
    check_teachers(pairs, config, data.channels)

    for d in taken:  # every check passed: the old runs go, the new ones take their place
        shutil.rmtree(d)
    created = not out.exists()
    made = [out / label for label, _ in pairs if not (out / label).exists()]
    from ..files.fileio import atomic_write_text
    out.mkdir(parents=True, exist_ok=True)
    had_settings = (out / SETTINGS).exists()
    atomic_write_text(out / SETTINGS, json.dumps(settings_of(config), indent=2) + "\n")
    if resume and progress:
        print(f"resuming {out}: {len(jobs) - len(todo)} of {len(jobs)} runs kept (the same "
              f"graph, seed, recipe and teacher); {len(todo)} to train", file=sys.stderr)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="compare", unit="run",
               file=sys.stderr, dynamic_ncols=True, disable=not progress)
    try:
        if todo and use_ray:
            _run_ray(todo, config, address, gpus_per_run, bar, out / "compare.log")
        elif todo:
            _run_sequential(todo, config, data, evaluator, bar)
        bar.close()
        run_dirs: dict[str, list[Path]] = {}
        for j in jobs:
            run_dirs.setdefault(j.label, []).append(j.run_dir)
        table = aggregate(run_dirs, eval_at, relative_to=out)
        where = "its best epoch" if eval_at == "best" else "the last epoch"
        caption = (f"IS / FID of each graph's best generator at {where}, mean +- std over "
                   f"{seeds} seed(s); data set {config.dataset} {config.image_size} px, "
                   f"{config.epochs} epoch(s), {config.eval_samples} samples per generator, "
                   f"extractor {config.extractor}. IS (mixture): the learning generators' "
                   f"images drawn evenly, at the mixture's own {eval_at} epoch.")
        markdown = format_markdown(table, caption)
        atomic_write_text(out / TABLE_CSV, table.to_csv(index=False))
        atomic_write_text(out / TABLE_MD, markdown + "\n")
    except BaseException:
        bar.close()
        # nothing half-written is left behind: a run in flight goes, a finished one stays
        # (an hours-long comparison killed near its end keeps what it trained)
        for j in jobs:
            if not is_complete(j.run_dir):
                shutil.rmtree(j.run_dir, ignore_errors=True)
        kept = sum(is_complete(j.run_dir) for j in jobs)
        if created and not kept:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for d in made:
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            if not kept and not had_settings:
                (out / SETTINGS).unlink(missing_ok=True)
        if kept:
            print(f"ktg compare: {kept} of {len(jobs)} runs finished and are kept in {out}; "
                  f"the same command with --resume trains the rest", file=sys.stderr)
        raise
    return Comparison(table=table, markdown=markdown, out=out, run_dirs=run_dirs,
                      wall_s=time.perf_counter() - t0)


# ---- pretrain --------------------------------------------------------------------------------
