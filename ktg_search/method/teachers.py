"""Teachers: generators that teach but never learn (KTG's frozen nodes, the KD paper's
teacher), and `ktg pretrain`, which makes one.

A node whose every incoming edge is cutoff and that names a `pretrained` checkpoint is a
frozen teacher (graph.py). The checkpoint is a generator written by `ktg pretrain` (or
`Trainer.export_generator`), loaded as data (safeload.py).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import KtgError
from .graph import Graph, Node, resolve_graph
from ..registry import GENERATORS
from ..files.safeload import generator_checkpoint, tensor_dict
from ..search.workers import data_and_evaluator

KEEP = ("best", "last")  # which epoch's weights `ktg pretrain` writes


def apply_teacher(graph: Graph, teacher: str | Path) -> Graph:
    """The same graph with the checkpoint path of every pretrained node set to `teacher`."""
    path = str(Path(teacher).expanduser().resolve())
    g = Graph.from_dict(graph.to_dict())
    g.nodes = [Node(n.model, path if n.pretrained else None) for n in graph.nodes]
    return g


def load_pretrained(path: str, image_size: int, channels: int, nz: int) -> tuple[str, nn.Module]:
    """(model name, generator) of a checkpoint written by `ktg pretrain`
    (`Trainer.export_generator`), built at this run's size, channels and nz.

    The file is read with safeload.py's safe loader (`load_checkpoint`:
    `torch.load(weights_only=True)`, so no code in the file runs) and its generator
    state must be a dict of tensors (`tensor_dict`); KtgError naming the file when it is
    missing, truncated, refused, not a generator checkpoint, or does not fit this run."""
    ckpt = generator_checkpoint(path, "pretrained checkpoint")
    if ckpt["model"] not in GENERATORS:
        raise KtgError(f"pretrained checkpoint {path!r} holds an unknown model "
                       f"{ckpt['model'][:80]!r}; valid: {', '.join(GENERATORS.names())}")
    cfg = ckpt.get("config", {})
    cfg = cfg if isinstance(cfg, dict) else {}
    for key, want in (("image_size", image_size), ("nz", nz)):
        if key in cfg and cfg[key] != want:
            raise KtgError(f"pretrained checkpoint {path!r} has {key}={cfg[key]!r}, but "
                           f"this run uses {key}={want}")
    g = GENERATORS.get(ckpt["model"])(image_size, channels, nz)
    try:
        g.load_state_dict(tensor_dict(ckpt["generator"], "the generator", path))
    except RuntimeError as e:  # missing keys, other shapes
        raise KtgError(f"pretrained checkpoint {path!r} does not fit a {ckpt['model']} "
                       f"generator at {image_size} px with {channels} channel(s) and "
                       f"nz={nz}: {str(e).strip().splitlines()[0][:200]}") from None
    return ckpt["model"], g


def check_teachers(graphs: list[tuple[str, Graph]], config, channels: int) -> None:
    """Load every frozen node's checkpoint once: a wrong file fails before any training."""
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


def pretrain(model: str, config, output: str | Path, keep: str = "best",
             progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Train one `model` generator with its own SN discriminator (the `dcgan-sn` graph
    with the model replaced) and write it as a checkpoint a graph node can name as
    `pretrained`. `keep`: the weights of the best-IS epoch or of the last epoch."""
    from tqdm import tqdm

    from .training import Trainer  # pretrain drives the trainer, which loads teachers
    if model not in GENERATORS:
        raise KtgError(f"unknown generator model {model!r}; valid: "
                       f"{', '.join(GENERATORS.names())}")
    if keep not in KEEP:
        raise KtgError(f"unknown --keep {keep!r}; valid: {', '.join(KEEP)}")
    from ..files.outputs import output_file
    output = output_file(output, force, example="teacher.pt")
    from ..data.loading import check_dataset_name
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
