"""Every registry of pluggable kinds, in one place.

One `Registry` per kind: gates, transfer losses, generator models, discriminators, data
sets and feature extractors. Names are explicit, duplicates are rejected, and the same
registries feed the Python API and the CLI's `choices`. The built-ins are registered at
the bottom of this file (torch-fidelity's `registry.py` pattern); implementation modules
never import this module at import time, so there is no import cycle.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import KtgError, one_of

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of one pluggable kind; unknown names raise `KtgError`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: T, help: str = "") -> T:
        if not isinstance(name, str) or not name:
            raise KtgError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise KtgError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._help[name] = help
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise one_of(self.kind, name, self.names()) from None

    def help(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # a list or dict from a malformed file is simply not a name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


GATES: Registry[Callable] = Registry("gate")
TRANSFERS: Registry = Registry("transfer kind")
GENERATORS: Registry[Callable] = Registry("generator model")
DISCRIMINATORS: Registry[Callable] = Registry("discriminator")
DATASETS: Registry[Callable] = Registry("data set")
EXTRACTORS: Registry[Callable] = Registry("feature extractor")


# ---- built-ins -------------------------------------------------------------------------
# Imported here, at the bottom, so that `registry` is complete before any implementation
# module is read, and so that adding a built-in is one line in one file.
from . import gates as _gates  # noqa: E402
from . import losses as _losses  # noqa: E402
from . import models as _models  # noqa: E402

GATES.register("through", _gates.through, "passes the loss unchanged: a")
GATES.register("cutoff", _gates.cutoff, "blocks the edge; the loss is never computed: 0")
GATES.register("linear_up", _gates.linear_up, "KTG's positive linear gate: p * a")
GATES.register("linear_down", _gates.linear_down, "KTG's negative linear gate: (1 - p) * a")
GATES.register("correct", _gates.correct, "a only where the source is right (see gates.py)")

TRANSFERS.register("image", _losses.IMAGE_TRANSFER, "generated images, eq. 5")
TRANSFERS.register("feature_in", _losses.FEATURE_IN_TRANSFER,
                   "attention maps of generator layers 2 and 3, eqs. 3-4")
TRANSFERS.register("feature_out", _losses.FEATURE_OUT_TRANSFER,
                   "attention maps of generator layers 3 and 4, eqs. 3-4")

for _width, _ngf in _models.GENERATOR_WIDTHS.items():
    GENERATORS.register(f"dcgan-{_width}", _models.dcgan_factory(_ngf),
                        f"DCGAN generator, base width {_ngf}, 16/32/64 px")
DISCRIMINATORS.register("sn", _models.SNDiscriminator,
                        "k+1-way softmax discriminator with spectral normalization")
DISCRIMINATORS.register("bn", _models.BNDiscriminator,
                        "plain batch-norm discriminator (the 'DCGAN without SN' baseline)")
DISCRIMINATORS.register("sn-cnn", _models.cnn_discriminator("sn"),
                        "SN-GAN's standard CNN (conv3x3 + conv4x4 s2 pairs), spectral norm")
DISCRIMINATORS.register("bn-cnn", _models.cnn_discriminator("bn"),
                        "the standard CNN with batch norm and no spectral norm (sn-cnn's "
                        "'without SN' twin)")
DISCRIMINATORS.register("sn-resnet", _models.ResNetDiscriminator,
                        "SN-GAN's ResNet discriminator (global sum pooling), spectral norm")

from . import datasets as _data  # noqa: E402
from . import extractors as _metrics  # noqa: E402

DATASETS.register("digits", _data.load_digits,
                  "scikit-learn's 8x8 digits, 1 channel, 10 classes; embedded, works offline")
DATASETS.register("cifar10", _data.load_cifar10, "CIFAR-10 train split (torchvision), 3 channels")
DATASETS.register("mnist", _data.load_mnist, "MNIST train split (torchvision), 1 channel")
DATASETS.register("fashion-mnist", _data.load_fashion_mnist,
                  "Fashion-MNIST train split (torchvision), 1 channel")
DATASETS.register("folder", _data.load_folder,
                  "folder:PATH, a folder of images; class sub-folders are the labels")
DATASETS.register("synthetic", _data.load_synthetic,
                  "synthetic[:N], N (512) coloured shapes of 10 classes, made on the fly")

EXTRACTORS.register("classifier", _metrics.ClassifierExtractor.load,
                    "small CNN trained on the data set's own labels (offline default)")
EXTRACTORS.register("inception-v3-compat", _metrics.InceptionExtractor.load,
                    "torch-fidelity's InceptionV3 (the papers' IS/FID); needs a weights file "
                    "offline")
