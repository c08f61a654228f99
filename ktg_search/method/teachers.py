"""Teachers: generators that teach but never learn (KTG's frozen nodes, the KD paper's
teacher). `ktg pretrain` makes one (results/runs.py: `pretrain`).

A node whose every incoming edge is cutoff and that names a `pretrained` checkpoint is a
frozen teacher (graph.py). The checkpoint is a generator written by `ktg pretrain` (or
`Trainer.export_generator`), loaded as data (safeload.py).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import KtgError
from .graph import Graph, Node
from ..registry import GENERATORS
from ..files.safeload import generator_checkpoint, tensor_dict


def apply_teacher(graph: Graph, teacher: str | Path) -> Graph:
    """The same graph with the checkpoint path of every pretrained node set to `teacher`."""
    path = str(Path(teacher).expanduser().resolve())
    g = Graph.from_dict(graph.to_dict())
    g.nodes = [Node(n.model, path if n.pretrained else None) for n in graph.nodes]
    return g


def _check_fit(path: str, ckpt: dict, image_size: int, channels: int | None, nz: int,
               dataset: str | None) -> None:
    """KtgError when the teacher was trained on another data set, channel count, image
    size or nz than this run. Checkpoints from before the `dataset`/`channels` keys have
    the data set and size in their `config` only (and no channel count: a wrong one then
    fails on the weights' shapes)."""
    cfg = ckpt.get("config", {})
    cfg = cfg if isinstance(cfg, dict) else {}
    stored = {"dataset": ckpt.get("dataset", cfg.get("dataset")), "channels":
              ckpt.get("channels"), "image_size": ckpt.get("image_size", cfg.get("image_size")),
              "nz": cfg.get("nz")}
    wanted = {"dataset": dataset, "channels": channels, "image_size": image_size, "nz": nz}
    bad = [key for key, want in wanted.items()
           if want is not None and stored[key] is not None and stored[key] != want]
    if bad:
        have = ", ".join(f"{key}={stored[key]!r}" for key in bad)
        need = ", ".join(f"{key}={wanted[key]!r}" for key in bad)
        raise KtgError(f"teacher checkpoint {path!r} was trained with {have}, but this run "
                       f"uses {need}; make a teacher for this run with `ktg pretrain --model "
                       f"{str(ckpt['model'])[:80]} --dataset {dataset or stored['dataset']} "
                       f"--image-size {image_size} -o T.pt`")


def check_fit(path: str, image_size: int, nz: int, dataset: str | None) -> str:
    """The model name of the teacher checkpoint at `path`, after checking, from the
    checkpoint's own fields and before any data set is loaded, that it was trained on
    `dataset` at `image_size` with `nz` (KtgError otherwise); `load_pretrained` then
    checks the channels and the weights."""
    ckpt = generator_checkpoint(path, "pretrained checkpoint")
    _check_fit(path, ckpt, image_size, None, nz, dataset)
    return ckpt["model"]


def load_pretrained(path: str, image_size: int, channels: int, nz: int,
                    dataset: str | None = None) -> tuple[str, nn.Module]:
    """(model name, generator) of a checkpoint written by `ktg pretrain`
    (`Trainer.export_generator`), built at this run's size, channels and nz; a teacher
    trained on another data set (when `dataset` is given), channel count, image size or
    nz is refused (KtgError, exit status 2).

    The file is read with safeload.py's safe loader (`load_checkpoint`:
    `torch.load(weights_only=True)`, so no code in the file runs) and its generator
    state must be a dict of tensors (`tensor_dict`); KtgError naming the file when it is
    missing, truncated, refused, not a generator checkpoint, or does not fit this run."""
    ckpt = generator_checkpoint(path, "pretrained checkpoint")
    if ckpt["model"] not in GENERATORS:
        raise KtgError(f"pretrained checkpoint {path!r} holds an unknown model "
                       f"{ckpt['model'][:80]!r}; valid: {', '.join(GENERATORS.names())}")
    _check_fit(path, ckpt, image_size, channels, nz, dataset)
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
                seen[path], _ = load_pretrained(path, config.image_size, channels, config.nz,
                                                config.dataset)
            if seen[path] != g.nodes[i].model:
                raise KtgError(f"teacher checkpoint {path!r} holds a {seen[path]!r} generator, "
                               f"but graph {label!r} node {i} is a {g.nodes[i].model!r}; "
                               f"make the teacher with `ktg pretrain --model "
                               f"{g.nodes[i].model}`, or copy the graph file and set node "
                               f"{i}'s model to {seen[path]!r}")
