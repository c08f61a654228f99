"""`digits-m`: scikit-learn's digits blended over patches of its two sample photographs.

MNIST-M's construction (Ganin & Lempitsky 2015, "Unsupervised domain adaptation by
backpropagation") applied to what ships inside the scikit-learn wheel, so it needs no
download: each of the 1,797 8x8 digits is used COPIES times; each copy is upsampled
(bilinear, which smooths the 8x8 blocks) to the image size, and blended over a random
square patch of `china.jpg` or `flower.jpg` as |patch - digit| per channel. The patch's
colours and textures vary independently of the class, so the class cannot be read from
colour alone (the `synthetic` set's can); the label is the source digit's label.

Deterministic: every random choice comes from one seeded torch generator, and the photos
are decoded by the installed Pillow, so the same packages give the same bytes on every
machine (tests/test_digits_m.py checks a hash of two builds). A build takes ~1-3 s (at
64 px), so each size is cached under `cache_dir()/datasets/` as a plain `.npy` (read
with `allow_pickle=False`: data, never code), written atomically.
"""
from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import KtgError
from ..files.fileio import atomic_write
from .imagedata import ImageData, cache_dir

NAME = "digits-m"
COPIES = 6               # 6 x 1,797 = 10,782 images
SEED = 20261204          # fixed: the set is the same everywhere
PATCH = 64               # side of a patch in the photographs' own pixels (427 x 640)
FORMAT = 1               # bump when the construction changes (the cache is keyed by it)
CHUNK = 2048             # images blended at a time: the float work stays ~0.1 GB at 64 px


def _photos() -> list[torch.Tensor]:
    """The two sample photographs as uint8 [3, 427, 640] (sorted by file name)."""
    from sklearn.datasets import load_sample_images
    bunch = load_sample_images()
    pairs = sorted(zip(bunch.filenames, bunch.images, strict=True),
                   key=lambda p: pathlib.Path(p[0]).name)
    return [torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()
            for _, im in pairs]


def build(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 3, S, S], labels int64 [N]) of digits-m at `image_size` px.

    Image i is digit i % 1797 of `sklearn.datasets.load_digits()` (so its label is that
    digit's), over a patch drawn by the seeded generator: which photo, where, and whether
    the patch is mirrored. The draws do not depend on the size, so the three sizes show
    the same patches.
    """
    from sklearn.datasets import load_digits
    bunch = load_digits()
    digits = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # [1797,1,8,8]
    n_src = len(digits)
    n = COPIES * n_src
    labels = torch.from_numpy(bunch.target).long().repeat(COPIES)
    photos = _photos()
    h, w = photos[0].shape[1:]
    g = torch.Generator().manual_seed(SEED)
    which = torch.randint(0, len(photos), (n,), generator=g)
    y0 = torch.randint(0, h - PATCH + 1, (n,), generator=g)
    x0 = torch.randint(0, w - PATCH + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5

    s = image_size
    scale = s / PATCH
    # each photo shrunk once so that a PATCH-px square becomes an S-px one (antialiased)
    small = [F.interpolate(p[None].float(), scale_factor=scale, mode="bilinear",
                           align_corners=False, antialias=True)[0] if scale != 1
             else p.float() for p in photos]
    hs = min(p.shape[1] for p in small)
    ws = min(p.shape[2] for p in small)
    stack = torch.stack([p[:, :hs, :ws] for p in small])              # [2, 3, hs, ws]
    ys = (y0.float() * scale).long().clamp_(0, hs - s)
    xs = (x0.float() * scale).long().clamp_(0, ws - s)
    ar = torch.arange(s)
    digit_big = F.interpolate(digits, size=(s, s), mode="bilinear", align_corners=False)
    digit_big = digit_big.clamp_(0, 1).mul_(255.0)                      # [1797, 1, S, S]
    images = torch.empty(n, 3, s, s, dtype=torch.uint8)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        rows = (ys[a:b, None] + ar)[:, None, :, None]                    # [m, 1, S, 1]
        cols = (xs[a:b, None] + ar)
        cols = torch.where(flip[a:b, None], cols.flip(1), cols)[:, None, None, :]
        ch = torch.arange(3)[None, :, None, None]
        patch = stack[which[a:b, None, None, None], ch, rows, cols]      # [m, 3, S, S]
        digit = digit_big[torch.arange(a, b) % n_src]                    # [m, 1, S, S]
        images[a:b] = (patch - digit).abs_().round_().clamp_(0, 255).to(torch.uint8)
    return images, labels


def cache_path(image_size: int) -> pathlib.Path:
    return cache_dir() / "datasets" / f"{NAME}-f{FORMAT}-{image_size}px.npy"


def digest(images: torch.Tensor) -> str:
    """SHA-256 of the images' bytes (C order): the set's identity, in tests and docs."""
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def load_digits_m(image_size: int, root: pathlib.Path, download: bool,
                  arg: str | None) -> ImageData:
    """Registry loader: digits-m at `image_size` px, from the cache or built (and cached)."""
    if arg is not None:
        raise KtgError(f"data set {NAME!r} takes no argument, got {NAME}:{arg}")
    from sklearn.datasets import load_digits
    labels = torch.from_numpy(load_digits().target).long().repeat(COPIES)
    shape = (len(labels), 3, image_size, image_size)
    path = cache_path(image_size)
    images = None
    try:
        arr = np.load(path, allow_pickle=False)
        if arr.dtype == np.uint8 and arr.shape == shape:
            images = torch.from_numpy(arr)
    except (OSError, ValueError):   # missing or truncated: built again below
        pass
    if images is None:
        images, labels = build(image_size)
        atomic_write(path, lambda tmp: _save(tmp, images))
    return ImageData(NAME, images, labels, 10)


def _save(tmp: str, images: torch.Tensor) -> None:
    with open(tmp, "wb") as f:   # a file object: np.save would append .npy to a name
        np.save(f, images.numpy(), allow_pickle=False)
