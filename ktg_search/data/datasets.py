"""The built-in data sets: one loader each, registered in registry.py's DATASETS.

A loader has the signature

    loader(image_size: int, root: Path, download: bool, arg: str | None) -> ImageData

- `digits`: scikit-learn's 8x8 digits, embedded in the wheel: works offline (tests, demo).
- `cifar10`, `mnist`, `fashion-mnist`: torchvision's train splits under `root`
  (`--data-root`, else `$KTG_DATA`, else `<cache>/data`). Downloads, where a network
  exists, happen under a file lock so the trials of one node download once; without a
  network the message says which files to put where.
- `folder:PATH`: a folder of images; class sub-folders (if any) are the labels.
- `synthetic[:N]`: coloured shapes made on the fly, 10 distinct classes, deterministic.
"""
from __future__ import annotations

import math
import pathlib
import warnings

import torch
from torch import Tensor

from ..errors import KtgError
from .imagedata import ImageData, resize_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SYNTHETIC_DEFAULT_N = 512
SYNTHETIC_MIN_N, SYNTHETIC_MAX_N = 10, 60_000  # CIFAR-10's size; at 64 px ~0.7 GB uint8
SYNTHETIC_CHUNK = 1024     # images made at a time: the float work stays ~0.2 GB at 64 px
SYNTHETIC_SEED = 20240501  # fixed: the synthetic set is the same everywhere
# A folder's images are decoded one at a time and shrunk to <= 64 px, so a big photo only
# costs its decode; a limit keeps that bounded (a 169 Mpx PNG of 0.5 MB decoded to 1.2 GB
# in 2.8 s) and refuses decompression bombs before any pixel is decoded.
MAX_IMAGE_PIXELS = 50_000_000   # 50 Mpx: above a 48 Mpx phone photo
MAX_FOLDER_IMAGES = 500_000     # at 64 px RGB: 6 GB of uint8 in memory


def synthetic_size(arg: str) -> int:
    """N of `synthetic:N`, an integer in [SYNTHETIC_MIN_N, SYNTHETIC_MAX_N]."""
    try:
        n = int(arg) if arg.isascii() and arg.strip().isdigit() and len(arg) < 12 else -1
    except ValueError:
        n = -1
    if not SYNTHETIC_MIN_N <= n <= SYNTHETIC_MAX_N:
        raise KtgError(f"The value of N in 'synthetic:N' is {arg[:40]!r}, but must be an "
                       f"integer with {SYNTHETIC_MIN_N} <= N <= {SYNTHETIC_MAX_N}")
    return n


def _no_arg(name: str, arg: str | None) -> None:
    if arg is not None:
        raise KtgError(f"data set {name!r} takes no argument, got {name}:{arg}")


def load_digits(image_size: int, root: pathlib.Path, download: bool,
                arg: str | None) -> ImageData:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0..16), 1 channel, 10 classes."""
    _no_arg("digits", arg)
    from sklearn.datasets import load_digits as sk_load_digits
    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images).float().mul_(255.0 / 16.0)  # [N, 8, 8], 0..255
    x = x.round_().clamp_(0, 255).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    return ImageData("digits", resize_uint8(x, image_size), labels, 10)


def _torchvision_loader(name: str, cls_name: str, folder: str, expected: str):
    """Build a loader for one torchvision data set class (train split only)."""

    def load(image_size: int, root: pathlib.Path, download: bool,
             arg: str | None) -> ImageData:
        _no_arg(name, arg)
        import torchvision.datasets as tvd
        cls = getattr(tvd, cls_name)
        where = root / folder if folder else root
        hint = (f"data set {name!r}: files not found under {where}; expected {expected}. "
                f"Put them there, pass --data-root DIR (a folder holding them), or set "
                f"KTG_DATA")
        try:
            # Fast path without the lock: the files are usually there already, and the
            # root may be a read-only shared folder where no lock file can be made.
            ds = cls(str(root), train=True, download=False)
        except RuntimeError:
            if not download:
                raise KtgError(hint + " (downloading is off)") from None
            try:
                from filelock import FileLock
                root.mkdir(parents=True, exist_ok=True)
                # One download per node: the other trials wait here, then find the files.
                with FileLock(str(root / f".{name}.lock")):
                    ds = cls(str(root), train=True, download=True)
            except Exception as e:  # no network, a proxy, a truncated file, read-only root
                first_line = (str(e).strip().splitlines() or [""])[0]
                raise KtgError(f"{hint}; downloading failed "
                               f"({type(e).__name__}: {first_line})") from None
        images = torch.as_tensor(ds.data)
        if images.dim() == 3:              # MNIST-likes: [N, 28, 28] uint8, 1 channel
            images = images.unsqueeze(1)
        else:                              # CIFAR: numpy [N, 32, 32, 3] HWC
            images = images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        return ImageData(name, resize_uint8(images.contiguous(), image_size), labels,
                         len(ds.classes))

    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"torchvision {cls_name} (train split) under root; expects {expected}."
    return load


_MNIST_FILES = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                "t10k-labels-idx1-ubyte (or the same names with .gz)")
load_cifar10 = _torchvision_loader(
    "cifar10", "CIFAR10", "",
    "cifar-10-python.tar.gz or its extracted folder cifar-10-batches-py/")
load_mnist = _torchvision_loader("mnist", "MNIST", "MNIST/raw", _MNIST_FILES)
load_fashion_mnist = _torchvision_loader("fashion-mnist", "FashionMNIST",
                                         "FashionMNIST/raw", _MNIST_FILES)

_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_folder(image_size: int, root: pathlib.Path, download: bool,
                arg: str | None) -> ImageData:
    """A folder of images (png/jpg/jpeg/bmp/webp), used as `folder:PATH`.

    With class sub-folders (`PATH/<class>/**/*.png`) the sorted sub-folder names are the
    labels; with images directly in PATH it is unlabelled (IS/FID then need the
    inception-v3-compat extractor). Mixing both is refused rather than guessed. Images
    are centre-cropped to a square, resized, and kept grayscale only if all are.
    """
    from PIL import Image
    if not arg:
        raise KtgError("data set 'folder' needs a path: use folder:PATH")
    path = pathlib.Path(arg).expanduser().resolve()
    if not path.is_dir():
        raise KtgError(f"data set folder {str(path)!r} does not exist or is not a folder")

    def images_in(d: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
        files = d.rglob("*") if recursive else d.iterdir()
        return sorted(f for f in files if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    top = images_in(path, recursive=False)
    classes = sorted(d.name for d in path.iterdir()
                     if d.is_dir() and not d.name.startswith(".") and images_in(d, True))
    if top and classes:
        raise KtgError(f"data set folder {str(path)!r} has both images and class "
                       f"sub-folders ({', '.join(classes)}); use one layout: images "
                       f"directly in it (unlabelled) or only in class sub-folders")
    if classes:
        files, labels = [], []
        for label, c in enumerate(classes):
            found = images_in(path / c, recursive=True)
            files += found
            labels += [label] * len(found)
    else:
        files, labels = top, None
    if not files:
        raise KtgError(f"data set folder {str(path)!r} holds no images "
                       f"({', '.join(IMAGE_SUFFIXES)})")

    if len(files) > MAX_FOLDER_IMAGES:
        raise KtgError(f"data set folder {str(path)!r} holds {len(files):,} images, but at "
                       f"most {MAX_FOLDER_IMAGES:,} are loaded (they are all kept in memory)")

    def bad(f: pathlib.Path, e: Exception) -> KtgError:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return KtgError(f"cannot read image {str(f)!r}: {why}")

    # Pass 1 reads headers only (the mode and the size), so a big folder is never held at
    # full size and an image too large to decode is refused before any pixel is read.
    modes = []
    # PIL warns about big images at open; the size is checked here instead
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    for f in files:
        try:
            with Image.open(f) as im:
                _check_pixels(f, im.size)
                modes.append(im.mode)
        except KtgError:
            raise
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, bombs...
            raise bad(f, e) from None
    gray = all(m in _GRAY_MODES for m in modes)
    mode, channels = ("L", 1) if gray else ("RGB", 3)
    out = torch.empty(len(files), channels, image_size, image_size, dtype=torch.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                _check_pixels(f, im.size)  # the file may have changed since pass 1
                im = im.convert(mode)
        except KtgError:
            raise
        except Exception as e:
            raise bad(f, e) from None
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        # crop first (resize's own `box` lets the filter read pixels outside the square);
        # PIL's bicubic filter antialiases when shrinking
        im = im.crop(box).resize((image_size, image_size), Image.Resampling.BICUBIC)
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        out[i] = t.view(image_size, image_size, channels).permute(2, 0, 1)
    return ImageData(f"folder:{path}", out,
                     None if labels is None else torch.tensor(labels, dtype=torch.int64),
                     len(classes))


def _check_pixels(f: pathlib.Path, size: tuple[int, int]) -> None:
    w, h = size
    if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
        raise KtgError(f"image {str(f)!r} is {w} x {h} = {w * h:,} pixels; valid: 1 to "
                       f"{MAX_IMAGE_PIXELS:,} pixels (it is shrunk to at most 64 px anyway)")


def load_synthetic(image_size: int, root: pathlib.Path, download: bool,
                   arg: str | None) -> ImageData:
    """`synthetic[:N]`: N (default 512) CIFAR-shaped images of 10 distinct classes.

    Each class is a pattern with its own colour pair: stripes (3 orientations), a disc,
    a ring, a square, a cross, a checkerboard, a radial gradient and a triangle, with
    random position, scale, phase and pixel noise. Deterministic (fixed seed), made in
    milliseconds, and easy for a small classifier: for tests and the training loop.
    """
    n = SYNTHETIC_DEFAULT_N if arg is None else synthetic_size(arg)
    g = torch.Generator().manual_seed(SYNTHETIC_SEED)
    s = image_size
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, generator=g)

    cx, cy, r = u(-0.3, 0.3), u(-0.3, 0.3), u(0.35, 0.6)
    phase, freq = u(0, 2 * math.pi), u(2.5, 3.5)
    # one foreground and one background colour per class, so colour alone also helps
    fg = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.3, 1.0], [1.0, 1.0, 0.2],
                       [1.0, 0.2, 1.0], [0.2, 1.0, 1.0], [1.0, 0.6, 0.1], [0.9, 0.9, 0.9],
                       [0.6, 0.2, 1.0], [0.5, 1.0, 0.5]])
    bg = torch.tensor([[0.1, 0.1, 0.3], [0.3, 0.1, 0.1], [0.1, 0.3, 0.1], [0.2, 0.2, 0.2],
                       [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.1, 0.1], [0.3, 0.1, 0.3],
                       [0.2, 0.3, 0.3], [0.3, 0.3, 0.1]])
    images = torch.empty(n, 3, s, s, dtype=torch.uint8)
    # made a chunk at a time (the 10 candidate masks are 10 floats a pixel); the noise is
    # drawn per chunk after all shape parameters, which gives the same numbers as one
    # draw over the whole set (torch fills normals in blocks of 16, and a chunk's size is
    # a multiple of 16 since s*s is)
    for a in range(0, n, SYNTHETIC_CHUNK):
        b = min(n, a + SYNTHETIC_CHUNK)
        lab = labels[a:b]
        dx, dy = xs - cx[a:b], ys - cy[a:b]
        rr, ph, fr = r[a:b], phase[a:b], freq[a:b]
        dist = (dx ** 2 + dy ** 2).sqrt()
        masks = torch.stack([
            (torch.sin(fr * math.pi * ys + ph) > 0).float(),                 # horizontal
            (torch.sin(fr * math.pi * xs + ph) > 0).float(),                 # vertical
            (torch.sin(fr * math.pi * (xs + ys) / 1.4 + ph) > 0).float(),    # diagonal
            (dist < rr).float(),                                             # disc
            ((dist < rr) & (dist > rr * 0.55)).float(),                      # ring
            ((dx.abs() < rr * 0.85) & (dy.abs() < rr * 0.85)).float(),       # square
            ((dx.abs() < rr * 0.25) | (dy.abs() < rr * 0.25)).float(),       # cross
            ((torch.sin(fr * math.pi * xs + ph) > 0)
             ^ (torch.sin(fr * math.pi * ys + ph) > 0)).float(),             # checkerboard
            (1 - dist / 1.5).clamp(0, 1),                                    # gradient
            ((dy < rr * 0.7) & (dx.abs() < (dy + rr) * 0.6)).float(),        # triangle
        ], dim=1)                                                            # [m, 10, s, s]
        mask = masks[torch.arange(b - a), lab]                               # [m, s, s]
        img = (mask[:, None] * fg[lab][:, :, None, None]
               + (1 - mask[:, None]) * bg[lab][:, :, None, None])
        images[a:b] = (img + 0.08 * torch.randn(img.shape, generator=g)) \
            .mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    name = "synthetic" if arg is None else f"synthetic:{n}"
    return ImageData(name, images, labels.long(), 10)
