"""GAN compression as the KD paper ran it (Aguinaldo et al., "Compressing GANs using
Knowledge Distillation"): one teacher, students of several widths, three schemes.

    ktg compress --teacher T.pt --widths 16,8,4,2 --seeds 3 -o OUT

For every width d, scheme and seed, one run of `runs.train_one` in
`OUT/<scheme>-w<d>/seed<N>/`:

- `mse`: the built-in `kd-mse` graph (eq. 3: frozen teacher G0 -> student G1 by pixel
  MSE, D -> G1 cut off), node 0's model the teacher's, node 1's `dcgan-w<d>`;
- `joint`: `kd-joint` (eq. 4: the same plus D -> G1) with the same nodes;
- `gan`: the control, `dcgan-sn` with its one node `dcgan-w<d>`: the same student
  trained alone, no teacher.

The teacher's own scores (IS, FID, VoL on the evaluation's fixed z, parameters) are
measured once from its checkpoint (`teacher.json`). The table, the figure and the sample
grids are made from the run files alone (compress_table.py).

Resuming: `OUT/compress.json` holds the study's settings (teacher file's hash, widths,
schemes, seeds, recipe). Rerunning with the same settings and the same OUT trains only
the runs that are not complete (a run folder is complete when its `summary.json`,
written last and atomically, exists); a run folder without one is deleted and redone.
An OUT of other settings is refused unless `--force` (which starts over).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import KtgError
from ..files.fileio import atomic_write_text, file_sha256
from ..method.graph import Graph, resolve_graph
from ..method.teachers import check_fit, load_pretrained
from ..method.evaluation import data_and_evaluator
from ..method.trainconfig import recipe_of, with_later_fields
from ..registry import WIDTHS
from ..search import failpoints
from .compare import (_train_task, _write_run, changed_keys, check_gpus_per_run, is_complete,
                      is_run_folder)
from .compress_status import StatusLine

SCHEMES = {"mse": "kd-mse", "joint": "kd-joint", "gan": "dcgan-sn"}
SCHEME_WORDS = {"mse": "MSE only (kd-mse, eq. 3)", "joint": "joint loss (kd-joint, eq. 4)",
                "gan": "GAN alone (dcgan-sn, no teacher)"}
SETTINGS = "compress.json"
TEACHER = "teacher.json"
LOG = "compress.log"


# ---- arguments ---------------------------------------------------------------------------
def parse_widths(text: str) -> list[int]:
    """`16,8,4,2` -> [16, 8, 4, 2]; KtgError for a width without a `dcgan-w<d>` model."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in WIDTHS:
            raise KtgError(f"--widths: {part[:40]!r} is not a student width; valid: "
                           f"{', '.join(map(str, WIDTHS))} (comma-separated, e.g. 16,8,4,2)")
        if int(part) in out:
            raise KtgError(f"--widths: {part} is given twice")
        out.append(int(part))
    return out


def parse_schemes(text: str) -> list[str]:
    out: list[str] = []
    for part in str(text).split(","):
        part = part.strip()
        if part not in SCHEMES:
            raise KtgError(f"--schemes: {part[:40]!r} is not a scheme; valid: "
                           f"{', '.join(SCHEMES)} (comma-separated)")
        if part not in out:
            out.append(part)
    return out


def width_of(model: str) -> int | None:
    """The base width d of a DCGAN generator key (`dcgan-w8` -> 8, `dcgan-large` -> 64)."""
    named = {"dcgan-small": 16, "dcgan-medium": 32, "dcgan-large": 64}
    if model in named:
        return named[model]
    if model.startswith("dcgan-w") and model[7:].isdigit():
        return int(model[7:])
    return None


# ---- the graphs ---------------------------------------------------------------------------
def student_graph(scheme: str, width: int, teacher_model: str, teacher_path: str) -> Graph:
    """The graph of one (scheme, width): the built-in graph with its nodes' models set."""
    spec = resolve_graph(SCHEMES[scheme]).to_dict()
    if scheme == "gan":
        spec["nodes"][0] = {"model": f"dcgan-w{width}"}
    else:
        spec["nodes"][0] = {"model": teacher_model, "pretrained": teacher_path}
        spec["nodes"][1] = {"model": f"dcgan-w{width}"}
    spec["name"] = f"{scheme}-w{width}"
    return Graph.from_dict(spec)


def student_node(scheme: str) -> int:
    return 0 if scheme == "gan" else 1


@dataclass(frozen=True)
class Job:
    scheme: str
    width: int
    seed: int
    graph: Graph
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.scheme}-w{self.width}/seed{self.seed}"


def plan(out: Path, schemes: list[str], widths: list[int], seeds: int, seed0: int,
         teacher_model: str, teacher_path: str) -> list[Job]:
    """Every run of the study, widths first (the largest student first), then schemes."""
    return [Job(s, d, seed, student_graph(s, d, teacher_model, teacher_path),
                out / f"{s}-w{d}" / f"seed{seed}")
            for d in widths for s in schemes for seed in range(seed0, seed0 + seeds)]


# ---- settings and resuming -----------------------------------------------------------------
def settings_of(config, teacher: str, schemes: list[str], widths: list[int], seeds: int,
                seed0: int) -> dict:
    """What makes two `ktg compress` calls the same study (the device is not part of it)."""
    recipe = recipe_of(replace(config, seed=0))
    return {"kind": "ktg compress", "teacher_sha256": file_sha256(teacher),
            "schemes": schemes, "widths": widths, "seeds": seeds, "seed0": seed0,
            "recipe": recipe}


def _differences(old: dict, new: dict) -> list[str]:
    keys = [k for k in new if k != "recipe" and old.get(k) != new[k]]
    keys = ["teacher file" if k == "teacher_sha256" else k for k in keys]
    recipe_old = old.get("recipe", {}) if isinstance(old.get("recipe"), dict) else {}
    return keys + changed_keys(recipe_old, new["recipe"])


def open_output(out: str | Path, settings: dict, force: bool) -> tuple[Path, bool]:
    """(OUT, resuming). A new or empty folder starts; a folder holding a compress output
    of the same settings resumes; anything else is refused unless `force` (then the
    study starts over there: its run folders are replaced, nothing else is deleted)."""
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise KtgError(f"-o/--out {str(p)!r} is a file; valid: a new folder, or the folder "
                       f"of an earlier `ktg compress` to resume")
    if not p.is_dir() or not any(p.iterdir()):
        return p, False
    old = None
    try:
        old = json.loads((p / SETTINGS).read_text())
    except (OSError, ValueError):
        pass
    if isinstance(old, dict) and old.get("kind") == "ktg compress":
        if isinstance(old.get("recipe"), dict):
            old = {**old, "recipe": with_later_fields(old["recipe"], settings["recipe"])}
        if old == settings:
            return p, True
        if not force:
            diff = ", ".join(_differences(old, settings)) or "the settings file"
            raise KtgError(f"-o/--out {str(p)!r} holds a `ktg compress` study of other "
                           f"settings ({diff} differ); rerun with the same settings to "
                           f"resume it, choose another -o, or pass --force to start over "
                           f"there")
        return p, False
    if not force:
        raise KtgError(f"-o/--out {str(p)!r} already holds files and is not a `ktg "
                       f"compress` output; choose another folder, or pass --force to "
                       f"write into it")
    return p, False


# ---- the teacher's own scores ----------------------------------------------------------------
def teacher_scores(teacher: str, teacher_model: str, config, data, evaluator,
                   sample_path: Path | None = None) -> dict:
    """IS, FID, VoL (the evaluation's fixed z, as every run's `vol_g{i}`) and parameter
    count of the teacher, from its checkpoint; with `sample_path`, a row of 8 of its
    images on the sample grids' z."""
    import torch

    from ..method.training import Trainer
    from ..results.runs import GRID_SEED, save_grid
    graph = student_graph("mse", 1, teacher_model, teacher)  # G0 = the teacher, frozen
    trainer = Trainer(graph, config, data=data, evaluator=evaluator)
    m = trainer.evaluate()
    if sample_path is not None:
        z = torch.randn(64, config.nz, generator=torch.Generator().manual_seed(GRID_SEED))
        save_grid(trainer.sample(0, 64, z=z)[:8], sample_path)
    return {"model": teacher_model, "width": width_of(teacher_model),
            "params": int(m["params_g0"]), "is": m["is_g0"],
            "fid": m.get("fid_g0", float("nan")), "vol": m["vol_g0"]}


# ---- running --------------------------------------------------------------------------------
def _run_sequential(jobs: list[Job], config, data, evaluator, status: StatusLine) -> None:
    import tempfile

    from ..results.runs import train_one
    for job in jobs:
        with tempfile.TemporaryDirectory(prefix=".run-", dir=job.run_dir.parent) as tmp:
            run = Path(tmp) / "run"
            train_one(job.graph, replace(config, seed=job.seed), run, data=data,
                      evaluator=evaluator)
            _write_run({p.name: p.read_bytes() for p in run.iterdir() if p.is_file()},
                       job.run_dir)
        failpoints.hit("compress-run")  # the kill test's point: this run written, no next
        status.finished_run(job)


def _run_ray(jobs: list[Job], config, address: str | None, gpus_per_run: float,
             status: StatusLine, log_file: Path) -> None:
    from ..search.raylog import ray_output_to
    from ..search.workers import fan_out
    teachers = {n.pretrained: Path(n.pretrained).read_bytes() for job in jobs
                for i, n in enumerate(job.graph.nodes) if i in job.graph.frozen_nodes()}
    calls = [(job.graph.to_dict(), asdict(replace(config, seed=job.seed))) for job in jobs]
    with ray_output_to(log_file):
        for i, files in fan_out(_train_task, calls, [j.label for j in jobs], address,
                                num_gpus=gpus_per_run, shared=teachers):
            _write_run(files, jobs[i].run_dir)
            status.finished_run(jobs[i])


def prepare(teacher: str | Path | None, config, schemes: list[str], widths: list[int],
            seeds: int, seed0: int, use_ray: bool):
    """Every check on the input, before anything is written: (teacher path, teacher
    model, data, evaluator, settings)."""
    from ..data.loading import check_dataset_name
    if teacher is None or not Path(teacher).expanduser().is_file():
        raise KtgError(f"--teacher {str(teacher)!r} does not exist; valid: a checkpoint file "
                       f"written by `ktg pretrain --model dcgan-w64 --dataset D -o T.pt`")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 1000:
        raise KtgError(f"The value of `--seeds` is {seeds!r}, but must be an integer with "
                       f"1 <= --seeds <= 1000")
    if not schemes or not widths:
        raise KtgError("give at least one scheme and one width")
    check_dataset_name(config.dataset)
    config.validate()
    replace(config, seed=seed0 + seeds - 1).validate()
    path = str(Path(teacher).expanduser().resolve())
    check_fit(path, config.image_size, config.nz, config.dataset)  # before data is loaded
    data, evaluator = data_and_evaluator(replace(config, device="cpu") if use_ray else config)
    model, _ = load_pretrained(path, config.image_size, data.channels, config.nz,
                               config.dataset)
    settings = settings_of(config, path, schemes, widths, seeds, seed0)
    return path, model, data, evaluator, settings


def clear_incomplete(jobs: list[Job], out: Path, fresh: bool) -> list[Job]:
    """The jobs still to train. Starting over (`fresh`), every run folder of the study is
    removed; resuming, only those without a summary.json. A folder in the way that is
    not a run folder is refused (nothing is deleted then)."""
    todo = [j for j in jobs if fresh or not is_complete(j.run_dir)]
    for j in todo:
        d = j.run_dir
        if (d.exists() or d.is_symlink()) and not is_run_folder(d):
            raise KtgError(f"{str(d)!r} is in the way and is not a run folder written by "
                           f"ktg (it holds other files, or is a link); nothing was "
                           f"replaced: move it away or choose another -o")
    for j in todo:
        if j.run_dir.exists():
            shutil.rmtree(j.run_dir)
    for j in jobs:  # temporary folders of runs killed while training (sequential)
        for tmp in j.run_dir.parent.glob(".run-*") if j.run_dir.parent.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True)
    return todo


def compress(teacher: str | Path | None, config, out: str | Path, widths: list[int],
             seeds: int = 3, seed0: int = 0, schemes: list[str] | None = None,
             use_ray: bool = True, address: str | None = None, gpus_per_run: float = 0.0,
             force: bool = False, progress: bool = True, verbose: bool = False) -> dict:
    """Run the study (or the part of it not yet in OUT) and write its table, figure and
    sample grids; the Python form of `ktg compress`. Returns what was done:
    {out, trained, resumed, total, table, markdown, wall_s}."""
    from . import compress_table
    t0 = time.perf_counter()
    schemes = list(schemes or SCHEMES)
    check_gpus_per_run(gpus_per_run, config.device, use_ray)
    path, model, data, evaluator, settings = prepare(teacher, config, schemes, widths,
                                                     seeds, seed0, use_ray)
    out, resuming = open_output(out, settings, force)
    jobs = plan(out, schemes, widths, seeds, seed0, model, path)
    todo = clear_incomplete(jobs, out, fresh=not resuming)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    for j in jobs:
        j.run_dir.parent.mkdir(parents=True, exist_ok=True)
    cfg_here = replace(config, device="cpu") if use_ray else config
    scores = teacher_scores(path, model, cfg_here, data, evaluator,
                            sample_path=out / "samples_teacher.png")
    atomic_write_text(out / TEACHER, json.dumps(scores, indent=2) + "\n")
    import os
    parallel = 1 if not use_ray else (os.cpu_count() or 1)
    status = StatusLine(len(jobs), len(jobs) - len(todo), parallel, verbose, progress)
    status.draw()
    status.start_ticking()
    try:
        if todo and use_ray:
            _run_ray(todo, config, address, gpus_per_run, status, out / LOG)
        elif todo:
            _run_sequential(todo, config, data, evaluator, status)
    finally:
        status.close()
        for j in todo:  # an interrupted run: its folder goes, the finished ones stay
            if j.run_dir.exists() and not is_complete(j.run_dir):
                shutil.rmtree(j.run_dir, ignore_errors=True)
    table, markdown = compress_table.write_outputs(out, jobs, scores, config)
    return {"out": out, "trained": len(todo), "resumed": len(jobs) - len(todo),
            "total": len(jobs), "table": table, "markdown": markdown,
            "wall_s": time.perf_counter() - t0}
