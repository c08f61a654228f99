"""Images in memory: a data set as uint8 [N, C, S, S] tensors, and where files live.

Every data set is loaded whole as uint8 images of one square size (CIFAR-10 at 64 px is
0.6 GB) and converted to float [-1, 1] (the generators' tanh range) one batch at a time.
Loaders (datasets.py) build an `ImageData`; `data.load_dataset` finds the loader by name.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ..errors import KtgError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# torch is imported inside the functions that use it: the sizes and paths here are read by
# the config and graph checks, which `ktg validate`, `status` and `--help` run without it.

SIZES = (16, 32, 64)


# ---- where things live -----------------------------------------------------------------

def cache_dir() -> pathlib.Path:
    """Node-local cache root (`$KTG_CACHE`, else `~/.cache/ktg-search`), created.

    Holds trained classifiers, real-image statistics and, by default, data sets. Read
    from the environment on every call so that tests and Ray workers can redirect it.
    """
    path = pathlib.Path(os.environ.get("KTG_CACHE") or
                        pathlib.Path.home() / ".cache" / "ktg-search").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> pathlib.Path:
    """Where torchvision data sets live: `$KTG_DATA`, else `cache_dir()/"data"`.

    Not created here: it may be a read-only shared folder that already holds the files.
    """
    env = os.environ.get("KTG_DATA")
    return pathlib.Path(env).expanduser() if env else cache_dir() / "data"


def cache_key(name: str) -> str:
    """A file-name-safe key for a data set name (`folder:/a/b` has slashes).

    Readable part + a short hash of the full name, so two folders both called `faces`
    in different places do not share a cached classifier.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe == name:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[-40:].strip('_')}-{digest}"


# ---- the in-memory data set ------------------------------------------------------------

@dataclass
class ImageData:
    """A whole data set in memory: uint8 images [N, C, S, S] and optional labels."""

    name: str                   # e.g. "digits", "cifar10", "folder:/path"
    images: Tensor              # uint8 [N, C, S, S], already at the training size
    labels: Tensor | None       # int64 [N], or None for an unlabelled folder
    num_classes: int            # 0 when unlabelled

    def __post_init__(self) -> None:
        import torch
        # Internal invariants (loaders build these), so plain asserts-as-errors.
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 \
                or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be uint8 [N, C, S, S], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and (self.labels.dtype != torch.int64
                                        or self.labels.shape != (len(self.images),)):
            raise ValueError(f"labels must be int64 [{len(self.images)}], got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_float(self, idx: Tensor) -> Tensor:
        """float32 images in [-1, 1] for the given index tensor."""
        return self.images[idx].float().div_(127.5).sub_(1.0)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """One epoch: a shuffled pass, drop_last, float32 [-1, 1] batches [B, C, S, S].

        The order comes from `torch.randperm(..., generator=generator)` only, so a seeded
        generator gives the same batches on every machine; the generator's state moves
        on, so the next epoch is shuffled differently.
        """
        import torch
        if batch_size < 1:
            raise KtgError(f"The value of `batch_size` is {batch_size}, but must be "
                           f"`batch_size >= 1`")
        if batch_size > len(self):
            raise KtgError(f"The value of `batch_size` is {batch_size}, but data set "
                           f"{self.name!r} has only {len(self)} images: must be "
                           f"`batch_size <= {len(self)}`")
        order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(self) - batch_size + 1, batch_size):
            yield self.to_float(order[start:start + batch_size])

    def split(self, fraction: float, seed: int) -> tuple["ImageData", "ImageData"]:
        """(rest, held_out): a random `fraction` of the images goes to held_out.

        Used for the classifier's held-out accuracy. Both parts keep the name and the
        class count; the permutation comes from `seed` alone.
        """
        import torch
        if not 0.0 < fraction < 1.0:
            raise KtgError(f"The value of `fraction` is {fraction}, but must be "
                           f"`0 < fraction < 1`")
        n_held = int(round(len(self) * fraction))
        if n_held < 1 or n_held >= len(self):
            raise KtgError(f"cannot split {len(self)} images of {self.name!r} with "
                           f"fraction {fraction}: both parts must be non-empty")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        held, rest = order[:n_held], order[n_held:]

        def part(idx: Tensor) -> ImageData:
            return ImageData(self.name, self.images[idx],
                             None if self.labels is None else self.labels[idx],
                             self.num_classes)
        return part(rest), part(held)


def check_size(image_size: int) -> None:
    if image_size not in SIZES:
        raise KtgError(f"The value of `image_size` is {image_size!r}, but must be one of "
                       f"{', '.join(map(str, SIZES))}")


# ---- resizing --------------------------------------------------------------------------

def resize_uint8(images: Tensor, image_size: int, chunk: int = 4096) -> Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, S, S], bilinear with antialiasing.

    Chunked so that resizing 50,000 CIFAR images to 64 px never holds them all as float.
    Square inputs only (the loaders crop first).
    """
    import torch
    import torch.nn.functional as F
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images.contiguous()
    out = torch.empty(images.shape[0], images.shape[1], image_size, image_size,
                      dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].float()
        y = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        out[start:start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
