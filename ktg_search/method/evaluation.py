"""The data set and the evaluator a run trains and scores with, built once per process.

Ray reuses worker processes across tasks and Tune trials (`reuse_actors=True`), so what
is read-only and costly to build (the data set, the evaluator with its classifier and
real-image statistics) is built once per process here, for the trainable, `ktg compare`
and `ktg pretrain` alike.
"""
from __future__ import annotations

from typing import Any

from ..data.loading import load_dataset
from ..data.metrics import Evaluator
from .trainconfig import resolve_device

_CACHE: dict[tuple, tuple] = {}


def data_and_evaluator(cfg: Any):
    """(ImageData, Evaluator) of a TrainConfig (its fields dataset, image_size,
    data_root, extractor, eval_samples, fid, inception_weights, device), built once per
    process; one config at a time keeps memory flat."""
    key = (cfg.dataset, cfg.image_size, cfg.data_root, cfg.extractor, cfg.eval_samples,
           cfg.fid, cfg.inception_weights, cfg.device)
    if key not in _CACHE:
        data = load_dataset(cfg.dataset, cfg.image_size, root=cfg.data_root)
        ev = Evaluator(data, extractor=cfg.extractor, num_samples=cfg.eval_samples,
                       fid=cfg.fid, device=str(resolve_device(cfg.device)),
                       inception_weights=cfg.inception_weights)
        _CACHE.clear()
        _CACHE[key] = (data, ev)
    return _CACHE[key]
