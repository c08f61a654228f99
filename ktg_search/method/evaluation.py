"""The data set and the evaluator a run trains and scores with, built once per process.

`build_evaluator` is the one place an evaluator (IS/FID feature extractor) is built, with
one device rule: the device the run trains on (the config's `device`, "auto" resolved),
unless the caller names another. The trainer, `ktg train`, `ktg compare`, the trainable
and the report's re-evaluation all build theirs here.

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


def build_evaluator(data: Any, cfg: Any, num_samples: int | None = None,
                    fid: bool | None = None, device: str | None = None) -> Evaluator:
    """The Evaluator of a TrainConfig (extractor, eval_samples, fid, inception_weights)
    on `data`; on `device` when given, else on the device `cfg` trains on."""
    dev = str(resolve_device(cfg.device if device is None else device))
    return Evaluator(data, extractor=cfg.extractor,
                     num_samples=cfg.eval_samples if num_samples is None else num_samples,
                     fid=cfg.fid if fid is None else fid, device=dev,
                     inception_weights=cfg.inception_weights)


def data_and_evaluator(cfg: Any):
    """(ImageData, Evaluator) of a TrainConfig (its fields dataset, image_size,
    data_root, extractor, eval_samples, fid, inception_weights, device), built once per
    process; one config at a time keeps memory flat."""
    key = (cfg.dataset, cfg.image_size, cfg.data_root, cfg.extractor, cfg.eval_samples,
           cfg.fid, cfg.inception_weights, cfg.device)
    if key not in _CACHE:
        data = load_dataset(cfg.dataset, cfg.image_size, root=cfg.data_root)
        ev = build_evaluator(data, cfg)
        _CACHE.clear()
        _CACHE[key] = (data, ev)
    return _CACHE[key]
