"""Inception score and FID, computed by torch-fidelity's own metric functions.

torch-fidelity turns features into metrics (`isc_features_to_metric`,
`fid_features_to_statistics`, `fid_statistics_to_metric`); this module supplies the
features (from a feature extractor, extractors.py) and keeps the real-image side cached,
so that scoring every epoch of every trial is cheap. Real statistics are also kept in
this process (a module global), because Ray reuses trial actors.
"""
from __future__ import annotations

import uuid
import pathlib
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import KtgError
from .extractors import FeatureExtractor, clear_extractors
from ..files.fileio import atomic_write
from .imagedata import ImageData, cache_dir, cache_key

REAL_SUBSET_SEED = 0           # which real images the statistics use, when not all
IS_SEED = 2020                 # torch-fidelity's default shuffle seed for the IS splits

# Real-image statistics of this process: stats file name -> (mu, sigma).
_REAL_STATS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def clear_caches() -> None:
    """Forget the extractors and statistics held in memory (the disk caches stay)."""
    clear_extractors()
    _REAL_STATS.clear()


def get_extractor(name: str, dataset: ImageData, device: str = "cpu",
                  inception_weights: str | None = None) -> FeatureExtractor:
    """The feature extractor `name` (registry "feature extractor") for `dataset`."""
    from ..registry import EXTRACTORS
    return EXTRACTORS.get(name)(dataset, device, inception_weights)


# ---- the evaluator ---------------------------------------------------------------------

def to_uint8(images: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 0..255 as round((x + 1) * 127.5), clamped; NaN -> 0."""
    x = torch.nan_to_num(images.detach().float(), nan=-1.0, posinf=1.0, neginf=-1.0)
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def is_splits(n: int) -> int:
    """torch-fidelity's 10 IS splits, fewer for small samples (>= 50 images a split)."""
    return max(1, min(10, n // 50))


class Evaluator:
    """IS and FID of generated images against one data set, cheap to call every epoch.

    The extractor is loaded (or trained) at construction, the real statistics on first
    use; both are shared with other Evaluators of this process and cached on disk.
    """

    def __init__(self, dataset: ImageData, extractor: str = "classifier",
                 num_samples: int = 1000, fid: bool = True, device: str = "cpu",
                 inception_weights: str | None = None, batch_size: int = 250) -> None:
        if not isinstance(num_samples, int) or num_samples < 2:
            raise KtgError(f"The value of `num_samples` is {num_samples!r}, but must be "
                           f"`num_samples >= 2`")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise KtgError(f"The value of `batch_size` is {batch_size!r}, but must be "
                           f"`batch_size >= 1`")
        self.dataset = dataset
        self.num_samples = num_samples
        self.fid = fid
        self.batch_size = batch_size
        self.extractor = get_extractor(extractor, dataset, device, inception_weights)

    @property
    def classifier_accuracy(self) -> float | None:
        """Held-out accuracy of the `classifier` extractor; None for inception."""
        return self.extractor.held_out_accuracy

    def stats_path(self) -> pathlib.Path:
        """Disk cache of the real statistics (dataset, size, extractor, its weights, N)."""
        ext = self.extractor
        tag = uuid.uuid5(uuid.NAMESPACE_URL, ext.fingerprint).hex[:12]
        return (cache_dir() / "stats" / f"{cache_key(self.dataset.name)}-"
                f"{self.dataset.image_size}px-{ext.name}-{tag}-n{self.num_samples}.npz")

    def _features(self, images_uint8: Tensor) -> dict[str, Tensor]:
        parts = [self.extractor.features(images_uint8[s:s + self.batch_size])
                 for s in range(0, images_uint8.shape[0], self.batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in ("logits", "pool")}

    def real_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the pool features of up to `num_samples` real images.

        The images are a fixed random subset (seed 0) when the data set is larger, so
        the statistics are the same in every process and can be cached on disk.
        """
        path = self.stats_path()
        key = str(path)
        if key in _REAL_STATS:
            return _REAL_STATS[key]
        try:
            with np.load(path) as z:
                stats = (z["mu"], z["sigma"])
        except (OSError, KeyError, ValueError):  # missing or half-foreign: recompute
            from torch_fidelity.metric_fid import fid_features_to_statistics
            n = len(self.dataset)
            idx = torch.arange(n) if self.num_samples >= n else torch.randperm(
                n, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))[:self.num_samples]
            pool = self._features(self.dataset.images[idx])["pool"]
            s = fid_features_to_statistics(pool)
            stats = (s["mu"], s["sigma"])
            path.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz"
                    np.savez(f, mu=stats[0], sigma=stats[1])
            atomic_write(path, write)
        _REAL_STATS[key] = stats
        return stats

    def _check_images(self, images: Tensor) -> None:
        d = self.dataset
        want = (d.channels, d.image_size, d.image_size)
        if not torch.is_tensor(images) or images.dim() != 4 or tuple(images.shape[1:]) != want:
            got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise KtgError(f"images to score must be float [N, {want[0]}, {want[1]}, "
                           f"{want[2]}] for {d.name!r} at {d.image_size} px, got {got}")

    def _metrics(self, logits: Tensor, pool: Tensor) -> dict:
        from torch_fidelity.metric_fid import (fid_features_to_statistics,
                                               fid_statistics_to_metric, KEY_METRIC_FID)
        from torch_fidelity.metric_isc import (isc_features_to_metric, KEY_METRIC_ISC_MEAN,
                                               KEY_METRIC_ISC_STD)
        n = logits.shape[0]
        if n < 2:
            raise KtgError(f"The number of images to score is {n}, but must be >= 2")
        isc = isc_features_to_metric(logits, splits=is_splits(n), shuffle=True,
                                     rng_seed=IS_SEED)
        out = {"is": isc[KEY_METRIC_ISC_MEAN], "is_std": isc[KEY_METRIC_ISC_STD], "fid": None}
        if self.fid:
            mu, sigma = self.real_statistics()
            fake = fid_features_to_statistics(pool)
            out["fid"] = fid_statistics_to_metric({"mu": mu, "sigma": sigma}, fake,
                                                  verbose=False)[KEY_METRIC_FID]
        return out

    def score(self, images: Tensor) -> dict:
        """float [-1, 1] images [N, C, S, S] -> {"is", "is_std", "fid" (None if off)}."""
        self._check_images(images)
        f = self._features(to_uint8(images.cpu()))
        return self._metrics(f["logits"], f["pool"])

    def score_generator(self, sample: Callable[[int], Tensor],
                        num_samples: int | None = None) -> dict:
        """Score `num_samples` (default: the evaluator's) images drawn as `sample(n)`.

        `sample(n)` returns n float [-1, 1] images; it is called with at most
        `batch_size` at a time, and only features are kept, so memory stays flat.
        """
        return self._metrics(*self._collect(sample, num_samples))

    def score_generators(self, samples: list[Callable[[int], Tensor]],
                         num_samples: int | None = None,
                         mixture: list[int] | None = None) -> tuple[list[dict], dict | None]:
        """Score each of several generators (`samples[i]` draws from generator i, as in
        `score_generator`) and, when `mixture` names two or more of them, their even
        mixture: image j of the mixture is image j of generator mixture[j mod m].

        The mixture is what a multi-generator GAN models as a whole (MAD-GAN's generators
        specialise, each covering part of the classes, so each one's own IS is capped below
        the mixture's). It costs no extra sampling: the mixture's features are rows of the
        generators' features. When the generators draw image j from the same z_j, the
        mixture still holds each z_j once. -> (one dict per generator, the mixture's or
        None)."""
        feats = [self._collect(s, num_samples) for s in samples]
        scores = [self._metrics(lg, pl) for lg, pl in feats]
        if not mixture or len(mixture) < 2:
            return scores, None
        n = min(feats[i][0].shape[0] for i in mixture)
        logits = torch.stack([feats[i][0][:n] for i in mixture])  # [m, n, classes]
        pool = torch.stack([feats[i][1][:n] for i in mixture])
        j = torch.arange(n)
        pick = j % len(mixture)  # row pick[j] of the stack is generator mixture[pick[j]]
        return scores, self._metrics(logits[pick, j], pool[pick, j])

    def _collect(self, sample: Callable[[int], Tensor],
                 num_samples: int | None) -> tuple[Tensor, Tensor]:
        """The extractor's (logits, pool) features of `num_samples` images from `sample`."""
        total = self.num_samples if num_samples is None else num_samples
        logits, pool = [], []
        done = 0
        with torch.no_grad():
            while done < total:
                n = min(self.batch_size, total - done)
                images = sample(n)
                self._check_images(images)
                if images.shape[0] != n:
                    raise KtgError(f"sample({n}) returned {images.shape[0]} images")
                f = self.extractor.features(to_uint8(images.cpu()))
                logits.append(f["logits"])
                pool.append(f["pool"])
                done += n
        if not logits:
            raise KtgError(f"The value of `num_samples` is {total}, but must be >= 2")
        return torch.cat(logits), torch.cat(pool)
