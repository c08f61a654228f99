"""Feature extractors: what IS and FID are computed from (registry kind "feature
extractor"). Every extractor returns {"logits": [N, K], "pool": [N, D]} float32 CPU
tensors for uint8 images [N, C, S, S].

- `classifier` (offline default): a small CNN trained on the data set's own labels, once
  per node: cached under `cache_dir()/classifiers/<dataset>-<size>px.pt` (plus a `.json`
  with its held-out accuracy), written atomically under a file lock so that concurrent
  trials train it once. IS uses its logits, FID its penultimate ("pool") layer. Numbers
  are comparable between runs that use the same classifier, not with published IS/FID.
- `inception-v3-compat`: torch-fidelity's InceptionV3 (the papers' numbers), logits_unbiased
  for IS and the 2048-d pool for FID; needs `--inception-weights FILE` where there is no
  network. It is for GPU nodes: on a CPU core the network costs ~0.3 s an image, and
  torch-fidelity's FID (eigenvalues of a 2048 x 2048 product) ~20 s a call.

Loaded extractors are kept in this process (a module global), because Ray reuses trial
actors and each trial builds an `Evaluator`.
"""
from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Protocol

import torch
from torch import Tensor, nn

from .imagedata import ImageData, cache_dir, cache_key
from ..errors import KtgError
from ..files.fileio import atomic_write

# torch-fidelity's inception weights (what `inception-v3-compat` downloads when it can)
INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
CLASSIFIER_FORMAT = 1          # bump when the classifier network or its training changes
HELD_OUT_FRACTION = 0.2


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


def clear_extractors() -> None:
    """Forget the extractors held in memory (the disk caches stay)."""
    _EXTRACTORS.clear()


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
    from ..files.safeload import load_checkpoint
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
        from ..files.safeload import load_inception_state
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
