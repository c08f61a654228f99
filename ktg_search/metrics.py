"""Inception score and FID, computed by torch-fidelity's own metric functions.

torch-fidelity turns features into metrics (`isc_features_to_metric`,
`fid_features_to_statistics`, `fid_statistics_to_metric`); this module supplies the
features and keeps the real-image side cached, so that scoring every epoch of every trial
is cheap. The features come from a feature extractor (registry kind "feature extractor"):

- `classifier` (offline default): a small CNN trained on the data set's own labels, once
  per node: cached under `cache_dir()/classifiers/<dataset>-<size>px.pt` (plus a `.json`
  with its held-out accuracy), written atomically under a file lock so that concurrent
  trials train it once. IS uses its logits, FID its penultimate ("pool") layer. Numbers
  are comparable between runs that use the same classifier, not with published IS/FID.
- `inception-v3-compat`: torch-fidelity's InceptionV3 (the papers' numbers), logits_unbiased
  for IS and the 2048-d pool for FID; needs `--inception-weights FILE` where there is no
  network. It is for GPU nodes: on a CPU core the network costs ~0.3 s an image, and
  torch-fidelity's FID (eigenvalues of a 2048 x 2048 product) ~20 s a call.

Every extractor returns {"logits": [N, K], "pool": [N, D]} float32 CPU tensors for uint8
images [N, C, S, S]. Loaded extractors and real statistics are also kept in this process
(module globals), because Ray reuses trial actors and each trial builds an `Evaluator`.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
import uuid
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .data import ImageData, cache_dir, cache_key
from .errors import KtgError
from .fileio import atomic_write

# torch-fidelity's inception weights (what `inception-v3-compat` downloads when it can)
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
CLASSIFIER_FORMAT = 1          # bump when the classifier network or its training changes
HELD_OUT_FRACTION = 0.2
REAL_SUBSET_SEED = 0           # which real images the statistics use, when not all
IS_SEED = 2020                 # torch-fidelity's default shuffle seed for the IS splits


class FeatureExtractor(Protocol):
    """Maps uint8 images to the features IS and FID are computed from."""

    name: str                       # the registry name
    fingerprint: str                # changes whenever the weights change (keys stats caches)
    held_out_accuracy: float | None  # the classifier's accuracy on held-out real images

    def features(self, images_uint8: Tensor) -> dict[str, Tensor]:
        """uint8 [N, C, S, S] -> {"logits": [N, K], "pool": [N, D]}, float32 on the CPU."""
        ...


# Loaded extractors of this process: (kind, identity, device) -> extractor.
_EXTRACTORS: dict[tuple, FeatureExtractor] = {}
# Real-image statistics of this process: stats file name -> (mu, sigma).
_REAL_STATS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def clear_caches() -> None:
    """Forget the extractors and statistics held in memory (the disk caches stay)."""
    _EXTRACTORS.clear()
    _REAL_STATS.clear()


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise KtgError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KtgError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    return dev


# ---- the offline extractor: a classifier trained on the data set's labels --------------

class SmallClassifier(nn.Module):
    """A light CNN for 16/32/64 px: images [-1, 1] -> (logits [B, K], pool [B, 128]).

    Stride-2 stems bring 32 and 64 px down to 16 px, then the same small body runs at
    16, 8 and 4 px: ~0.8 M multiply-adds an image at 16 px (~2 M at 64 px), so that
    scoring 1,000 samples every epoch costs a fraction of a second on one CPU core.
    """

    POOL_DIM = 128

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        stem: list[nn.Module] = []
        cin = channels
        for _ in range({16: 0, 32: 1, 64: 2}[image_size]):
            stem += conv(cin, 16, stride=2)
            cin = 16
        self.body = nn.Sequential(
            *stem, *conv(cin, 16), nn.MaxPool2d(2),         # 16 -> 8
            *conv(16, 32), nn.MaxPool2d(2),                 # 8 -> 4
            *conv(32, 64), *conv(64, self.POOL_DIM, k=1),   # 4x4
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(self.POOL_DIM, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pool = self.body(x)
        return self.head(pool), pool


def _classifier_steps(n_train: int, batch_size: int) -> int:
    # ~12 epochs and at least 300 steps for small sets (digits: 300 steps, ~6 s of one
    # CPU core at 16 px, held-out accuracy ~0.98), capped for big ones (CIFAR-10: 3,000
    # steps, ~5 epochs): the classifier has to tell the classes apart, not set records.
    epochs12 = 12 * max(1, n_train // batch_size)
    return int(min(max(epochs12, 300), 3000))


def train_classifier(data: ImageData, device: str = "cpu", seed: int = 0,
                     batch_size: int = 64) -> tuple[SmallClassifier, dict]:
    """Train a `SmallClassifier` on 80% of `data`; return it and its record.

    The record holds the held-out accuracy (on the other 20%) and the training details.
    Deterministic for a seed on one machine; the random shifts (up to 1/8 of the side)
    make it less brittle on generated images, which are never quite centred.
    """
    if data.labels is None or data.num_classes < 2:
        raise KtgError(f"the 'classifier' feature extractor needs a labelled data set, and "
                       f"{data.name!r} has no labels; use --extractor inception-v3-compat "
                       f"(with --inception-weights FILE offline)")
    dev = _check_device(device)
    train, held = data.split(HELD_OUT_FRACTION, seed)
    batch_size = min(batch_size, len(train))
    steps = _classifier_steps(len(train), batch_size)
    started = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(data.channels, data.num_classes, data.image_size).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        gen = torch.Generator().manual_seed(seed)
        shift = max(1, data.image_size // 8)
        model.train()
        step = 0
        while step < steps:
            order = torch.randperm(len(train), generator=gen)
            for start in range(0, len(train) - batch_size + 1, batch_size):
                idx = order[start:start + batch_size]
                x = train.to_float(idx)
                dx, dy = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).to(dev)
                y = train.labels[idx].to(dev)
                loss = nn.functional.cross_entropy(model(x)[0], y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step >= steps:
                    break
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(held), 500):
            idx = torch.arange(start, min(start + 500, len(held)))
            pred = model(held.to_float(idx).to(dev))[0].argmax(1).cpu()
            correct += int((pred == held.labels[idx]).sum())
    record = {"dataset": data.name, "image_size": data.image_size,
              "channels": data.channels, "num_classes": data.num_classes,
              "num_images": len(data), "format": CLASSIFIER_FORMAT,
              "held_out_accuracy": correct / len(held), "num_held_out": len(held),
              "num_train": len(train), "steps": steps, "batch_size": batch_size,
              "seed": seed, "train_seconds": round(time.time() - started, 2),
              "fingerprint": uuid.uuid4().hex}
    return model.cpu(), record


def classifier_path(data: ImageData) -> pathlib.Path:
    """Where the classifier for this data set and size is cached on this node."""
    return cache_dir() / "classifiers" / f"{cache_key(data.name)}-{data.image_size}px.pt"


def _matches(record: dict, data: ImageData) -> bool:
    # A stale file (other folder contents, older network) is retrained, not trusted.
    return (record.get("format") == CLASSIFIER_FORMAT and record.get("channels") == data.channels
            and record.get("num_classes") == data.num_classes
            and record.get("num_images") == len(data)
            and record.get("image_size") == data.image_size)


def _load_checkpoint(path: pathlib.Path) -> dict | None:
    """The checkpoint, or None when missing or unreadable (then it is retrained over)."""
    from .safeload import load_checkpoint
    try:
        ckpt = load_checkpoint(path, "classifier cache")  # as data, like every checkpoint
    except KtgError:  # missing, truncated or foreign
        return None
    return ckpt if isinstance(ckpt, dict) and "record" in ckpt else None


def load_or_train_classifier(data: ImageData, device: str = "cpu"
                             ) -> tuple[SmallClassifier, dict]:
    """The cached classifier of `data` (trained and saved on the first call on a node)."""
    path = classifier_path(data)
    ckpt = _load_checkpoint(path)
    if ckpt is None or not _matches(ckpt["record"], data):
        from filelock import FileLock
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            ckpt = _load_checkpoint(path)  # another process may have trained it meanwhile
            if ckpt is None or not _matches(ckpt["record"], data):
                model, record = train_classifier(data, device=device)
                ckpt = {"state_dict": model.state_dict(), "record": record}
                atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
                text = json.dumps(record, indent=2) + "\n"
                atomic_write(path.with_suffix(".json"),
                                    lambda tmp: pathlib.Path(tmp).write_text(text))
    record = ckpt["record"]
    model = SmallClassifier(record["channels"], record["num_classes"], record["image_size"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), record


class ClassifierExtractor:
    """Features from the data set's own classifier: logits (IS) and pool (FID)."""

    name = "classifier"

    def __init__(self, model: SmallClassifier, record: dict, device: torch.device) -> None:
        self.model = model.to(device).eval().requires_grad_(False)
        self.record = record
        self.device = device
        self.fingerprint = record["fingerprint"]
        self.held_out_accuracy: float | None = float(record["held_out_accuracy"])

    @classmethod
    def load(cls, dataset: ImageData, device: str,
             inception_weights: str | None) -> "ClassifierExtractor":
        """Registry entry: the cached classifier (in this process, else on disk, else
        trained now). `inception_weights` is ignored: it belongs to the other extractor."""
        dev = _check_device(device)
        key = ("classifier", str(classifier_path(dataset)), str(dev))
        ext = _EXTRACTORS.get(key)
        if ext is None or not _matches(ext.record, dataset):
            model, record = load_or_train_classifier(dataset, device=device)
            ext = _EXTRACTORS[key] = cls(model, record, dev)
        return ext

    @torch.no_grad()
    def features(self, images_uint8: Tensor) -> dict[str, Tensor]:
        x = images_uint8.to(self.device).float().div_(127.5).sub_(1.0)
        logits, pool = self.model(x)
        return {"logits": logits.float().cpu(), "pool": pool.float().cpu()}


# ---- the published extractor: torch-fidelity's InceptionV3 -----------------------------

class InceptionExtractor:
    """torch-fidelity's `FeatureExtractorInceptionV3`: logits_unbiased and the 2048 pool."""

    name = "inception-v3-compat"
    held_out_accuracy: float | None = None
    CHUNK = 50  # images per forward pass: activations at 299 px are ~20 MB per image

    def __init__(self, model: nn.Module, device: torch.device, fingerprint: str) -> None:
        self.model = model.to(device)
        self.device = device
        self.fingerprint = fingerprint

    @classmethod
    def load(cls, dataset: ImageData, device: str,
             inception_weights: str | None) -> "InceptionExtractor":
        """Registry entry. With `inception_weights` (a torch-fidelity weights file) the
        network loads from it; without, torch-fidelity downloads its weights, which fails
        without a network and then says to pass the file."""
        dev = _check_device(device)
        if inception_weights is not None:
            path = pathlib.Path(inception_weights).expanduser().resolve()
            if not path.is_file():
                raise KtgError(f"inception weights file {str(path)!r} does not exist")
            st = path.stat()
            fingerprint = f"{path}:{st.st_size}:{st.st_mtime_ns}"
            weights: str | None = str(path)
        else:
            fingerprint, weights = INCEPTION_WEIGHTS_URL, None
        key = ("inception-v3-compat", fingerprint, str(dev))
        ext = _EXTRACTORS.get(key)
        if ext is None:
            ext = _EXTRACTORS[key] = cls(_build_inception(weights), dev, fingerprint)
        return ext

    @torch.no_grad()
    def features(self, images_uint8: Tensor) -> dict[str, Tensor]:
        if images_uint8.shape[1] == 1:  # InceptionV3 is RGB-only: gray -> 3 equal channels
            images_uint8 = images_uint8.expand(-1, 3, -1, -1)
        logits, pool = [], []
        for start in range(0, images_uint8.shape[0], self.CHUNK):
            x = images_uint8[start:start + self.CHUNK].contiguous().to(self.device)
            out = self.model.convert_features_tuple_to_dict(self.model(x))
            logits.append(out["logits_unbiased"].float().cpu())
            pool.append(out["2048"].float().cpu())
        return {"logits": torch.cat(logits), "pool": torch.cat(pool)}


def _build_inception(weights: str | None) -> nn.Module:
    """torch-fidelity's InceptionV3 with weights that were loaded as data.

    torch-fidelity 0.4 loads a weights file with `torch.load(weights_only=False)`, which
    would run any code a pickle in the file names. So the file (or the download) is loaded
    here with `weights_only=True` (tensors only, safeload.py), and torch-fidelity gets an
    in-memory copy of those verified tensors: nothing it loads came from outside."""
    import io
    from torch_fidelity import feature_extractor_inceptionv3 as fe
    if weights is None:
        try:
            # torch.hub checks the file's SHA-256 against the prefix in its name
            state = fe.load_state_dict_from_url(INCEPTION_WEIGHTS_URL, map_location="cpu",
                                                progress=False, check_hash=True,
                                                weights_only=True)
        except Exception as e:  # URLError offline, a hash mismatch, a refused pickle
            why = (str(e).strip().splitlines() or [""])[0]
            raise KtgError(f"inception-v3-compat could not download its weights "
                           f"({type(e).__name__}: {why}); pass --inception-weights FILE, "
                           f"torch-fidelity's {INCEPTION_WEIGHTS_URL.rsplit('/', 1)[1]} "
                           f"(from {INCEPTION_WEIGHTS_URL})") from None
    else:
        from .safeload import load_inception_state
        state = load_inception_state(weights)
    buf = io.BytesIO()
    torch.save({k: v for k, v in state.items()}, buf)
    buf.seek(0)
    try:
        return fe.FeatureExtractorInceptionV3("inception-v3-compat",
                                              ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=buf)
    except Exception as e:  # missing keys or other shapes: not InceptionV3 weights
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise KtgError(f"cannot load inception weights from {weights!r} "
                       f"({type(e).__name__}: {why}); expected torch-fidelity's "
                       f"{INCEPTION_WEIGHTS_URL.rsplit('/', 1)[1]}") from None


def get_extractor(name: str, dataset: ImageData, device: str = "cpu",
                  inception_weights: str | None = None) -> FeatureExtractor:
    """The feature extractor `name` (registry "feature extractor") for `dataset`."""
    from .registry import EXTRACTORS  # registry imports this module at its bottom
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
        return self._metrics(torch.cat(logits), torch.cat(pool))
