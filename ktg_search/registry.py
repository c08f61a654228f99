"""Every registry of pluggable kinds, in one place.

One `Registry` per kind: gates, transfer losses, generator models, discriminators, data
sets, feature extractors and objectives (how an epoch's IS per generator becomes a
trial's score). Names are explicit, duplicates are rejected, and the same
registries feed the Python API and the CLI's `choices`. The built-ins are registered at
the bottom of this file (torch-fidelity's `registry.py` pattern).

A built-in is registered by where it lives (`Ref("ktg_search.method.gates:through")`),
and imported the first time it is used: names, help texts and the checks of a graph file
or a config need no torch, so `ktg --help`, `ktg graphs`, `ktg validate`, `ktg status`
and `ktg query` start without it. Lookups go one way, registry -> implementations:
implementation modules never import this module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generic, Iterator, Protocol, Sequence, TypeVar, \
    runtime_checkable

from .errors import KtgError, one_of

if TYPE_CHECKING:  # annotations only: no import at run time
    from torch import Tensor

    from .data.imagedata import ImageData

T = TypeVar("T")


class Ref:
    """A registered implementation named by where it lives, `"package.module:attr"`
    (`attr` may be dotted: `Class.method`), imported on first use. With `args`, the
    entry is `attr(*args)` (a factory's product, e.g. a generator of one width).

    Calling a Ref calls what it names, so a `Gate` or `DataSet` holding one works as if
    it held the function."""
    __slots__ = ("path", "args", "_target")

    def __init__(self, path: str, *args: object) -> None:
        module, colon, attr = path.partition(":")
        if not colon or not module or not attr:
            raise ValueError(f"a Ref is 'package.module:attr', got {path!r}")
        self.path, self.args, self._target = path, args, None

    def resolve(self):
        if self._target is None:
            module, _, attr = self.path.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._target = obj(*self.args) if self.args else obj
        return self._target

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Ref({self.path!r}{''.join(', ' + repr(a) for a in self.args)})"


class Registry(Generic[T]):
    """A named table of one pluggable kind; unknown names raise `KtgError`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: "T | Ref", help: str = "") -> "T | Ref":
        if not isinstance(name, str) or not name:
            raise KtgError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise KtgError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._help[name] = help
        return entry

    def get(self, name: str) -> T:
        """The entry (a `Ref` imported now, on first use); KtgError for an unknown name."""
        try:
            entry = self._entries[name]
        except (KeyError, TypeError):
            raise one_of(self.kind, name, self.names()) from None
        if isinstance(entry, Ref):
            entry = self._entries[name] = entry.resolve()
        return entry

    def entry(self, name: str) -> "T | Ref":
        """The entry as registered: a `Ref` stays unimported (its metadata, no torch)."""
        return self._entries[self.check(name)]

    def check(self, name: object) -> str:
        """`name` when it is registered, else KtgError naming the valid ones; imports
        nothing (a config's or graph file's check)."""
        if name not in self:
            raise one_of(self.kind, name, self.names())
        return name

    def help(self, name: str) -> str:
        return self._help[self.check(name)]

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


# ---- what an entry of each kind carries ------------------------------------------------
@dataclass(frozen=True)
class Gate:
    """A registered gate: its function (gates.py) and what it needs from the trainer.

    `needs_verdict`: the gate reads D's per-sample verdict on the source's images
    (`source_real`, see gates.py); the trainer runs D on those images only when some
    edge's gate needs it. Every other gate is a constant factor of progress.
    `blocks`: the gate is zero at every progress and on every sample (cutoff): its edge
    never carries a gradient. Plain metadata, read without torch by the trainability rule
    (method/trainability.py); tests check it against `weight`.
    """
    fn: Callable[..., "Tensor"]
    needs_verdict: bool = False
    blocks: bool = False

    def __call__(self, loss: "Tensor", progress: float,
                 source_real: "Tensor | None" = None) -> "Tensor":
        return self.fn(loss, progress, source_real)

    def weight(self, progress: float) -> float | None:
        """The constant factor the gate applies at `progress` (checked to be in [0, 1]),
        or None when it acts per sample (`needs_verdict`).

        The trainer uses it to skip edges whose weight is exactly zero (cutoff always,
        linear_up at p = 0, linear_down at p = 1) without computing their loss."""
        import torch
        one = torch.ones(1)
        out = self.fn(one, progress, torch.ones(1, dtype=torch.bool))  # checks progress
        return None if self.needs_verdict else float(out[0])

    def is_active(self, progress: float) -> bool:
        """False when the edge contributes nothing at `progress` and need not be computed."""
        w = self.weight(progress)
        return w is None or w != 0.0


@runtime_checkable
class TransferKind(Protocol):
    """What a transfer kind implements (losses.py has the built-ins).

    `layers`: 0-based indices into the generator's tap list, or None for the generated
    image. `prepare` turns one generator's (image, taps) into the normalized vectors the
    loss compares (once a step per generator); `compare` is the per-sample loss [B]
    between two `prepare` results; `reference_positions` the vectors' sizes at the
    paper's 64 px (the resolution-aware scale); calling the kind does prepare + compare.
    """
    name: str
    layers: "tuple[int, ...] | None"

    def prepare(self, out: "tuple[Tensor, list[Tensor]]") -> "list[Tensor]": ...

    def compare(self, src: "list[Tensor]", dst: "list[Tensor]", alpha: float,
                positions: Sequence[int] | None = None) -> "Tensor": ...

    def reference_positions(self, channels: int) -> list[int]: ...

    def __call__(self, src: "tuple[Tensor, list[Tensor]]", dst: "tuple[Tensor, list[Tensor]]",
                 alpha: float) -> "Tensor": ...


@dataclass(frozen=True)
class Transfer:
    """A registered transfer kind: its implementation (a `TransferKind`, or a `Ref` to
    one, imported on first use) and which generator output it compares, as plain data.

    `layers` repeats the implementation's own `layers` (tests check they agree) so that
    the trainability rule can read it without importing torch: 0-based indices into the
    generator's tap list (block outputs, all before the output layer `to_image`), or None
    for the generated image. Everything else is the implementation's.
    """
    impl: "TransferKind | Ref"
    layers: "tuple[int, ...] | None"

    def kind(self) -> TransferKind:
        return self.impl.resolve() if isinstance(self.impl, Ref) else self.impl

    @property
    def name(self) -> str:
        return self.kind().name

    def prepare(self, out: "tuple[Tensor, list[Tensor]]") -> "list[Tensor]":
        return self.kind().prepare(out)

    def compare(self, src: "list[Tensor]", dst: "list[Tensor]", alpha: float,
                positions: Sequence[int] | None = None) -> "Tensor":
        return self.kind().compare(src, dst, alpha, positions)

    def reference_positions(self, channels: int) -> list[int]:
        return self.kind().reference_positions(channels)

    def __call__(self, src: "tuple[Tensor, list[Tensor]]", dst: "tuple[Tensor, list[Tensor]]",
                 alpha: float) -> "Tensor":
        return self.kind()(src, dst, alpha)


def transfer_layers(name: str) -> "tuple[int, ...] | None":
    """Which generator taps the transfer kind `name` compares (None: the image), without
    importing a built-in's implementation; KtgError for an unknown name."""
    entry = TRANSFERS.entry(name)
    return entry.layers if isinstance(entry, (Transfer, TransferKind)) \
        else TRANSFERS.get(name).layers


@dataclass(frozen=True)
class DataSet:
    """A registered data set: its loader (datasets.py) and its argument, if it takes one.

    A user names a data set `NAME` or `NAME:ARG`. `arg` is how the argument is shown
    ("PATH", "N"; "" = the data set takes none), `arg_required` whether it must be given,
    and `check_arg` checks it without reading a file (None: any non-empty text).
    """
    load: Callable[[int, Path, bool, "str | None"], "ImageData"]
    arg: str = ""
    arg_required: bool = False
    check_arg: Callable[[str], object] | None = None

    @property
    def takes_arg(self) -> bool:
        return bool(self.arg)

    def usage(self, name: str) -> str:
        """How a user types it: `digits`, `folder:PATH`, `synthetic[:N]`."""
        if not self.takes_arg:
            return name
        return f"{name}:{self.arg}" if self.arg_required else f"{name}[:{self.arg}]"


GATES: Registry[Gate] = Registry("gate")
TRANSFERS: Registry[TransferKind] = Registry("transfer kind")
GENERATORS: Registry[Callable] = Registry("generator model")
DISCRIMINATORS: Registry[Callable] = Registry("discriminator")
DATASETS: Registry[DataSet] = Registry("data set")
EXTRACTORS: Registry[Callable] = Registry("feature extractor")
# how one epoch's IS of the scored generators (and of their mixture) becomes the
# objective: reduce(scores, mixture) (scoring.py)
OBJECTIVES: Registry[Callable[[Sequence[float], float], float]] = Registry("objective")


# ---- built-ins -------------------------------------------------------------------------
# One line each, by where the implementation lives (imported on first use, see `Ref`).
_M = "ktg_search.method."
_D = "ktg_search.data."

GATES.register("through", Gate(Ref(_M + "gates:through")), "passes the loss unchanged: a")
GATES.register("cutoff", Gate(Ref(_M + "gates:cutoff"), blocks=True),
               "blocks the edge; the loss is never computed: 0")
GATES.register("linear_up", Gate(Ref(_M + "gates:linear_up")),
               "KTG's positive linear gate: p * a")
GATES.register("linear_down", Gate(Ref(_M + "gates:linear_down")),
               "KTG's negative linear gate: (1 - p) * a")
GATES.register("correct", Gate(Ref(_M + "gates:correct"), needs_verdict=True),
               "a only where the source is right (see gates.py)")

# `layers` as in losses.py (tests/test_trainability.py checks they agree)
TRANSFERS.register("image", Transfer(Ref(_M + "losses:IMAGE_TRANSFER"), None),
                   "generated images, eq. 5")
TRANSFERS.register("feature_in", Transfer(Ref(_M + "losses:FEATURE_IN_TRANSFER"), (1, 2)),
                   "attention maps of generator layers 2 and 3, eqs. 3-4")
TRANSFERS.register("feature_out", Transfer(Ref(_M + "losses:FEATURE_OUT_TRANSFER"), (2, 3)),
                   "attention maps of generator layers 3 and 4, eqs. 3-4")
TRANSFERS.register("pixel_mse", Transfer(Ref(_M + "losses:PIXEL_MSE_TRANSFER"), None),
                   "raw images, summed squared difference (KD paper eq. 3), weight alpha")

# DCGAN generators by base width (ngf): the width is the model key's whole difference
for _width, _ngf in {"small": 16, "medium": 32, "large": 64}.items():
    GENERATORS.register(f"dcgan-{_width}", Ref(_M + "models:dcgan_factory", _ngf),
                        f"DCGAN generator, base width {_ngf}, 16/32/64 px")
# students of any size (the KD paper's depth scale factor d = the base width; parameters
# grow about as d^2): dcgan-w{d}, so that a compression curve can go down to 1000:1
WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128)
for _ngf in WIDTHS:
    GENERATORS.register(f"dcgan-w{_ngf}", Ref(_M + "models:dcgan_factory", _ngf),
                        f"DCGAN generator, base width d={_ngf}, 16/32/64 px")
DISCRIMINATORS.register("sn", Ref(_M + "models:SNDiscriminator"),
                        "k+1-way softmax discriminator with spectral normalization")
DISCRIMINATORS.register("bn", Ref(_M + "models:BNDiscriminator"),
                        "plain batch-norm discriminator (the 'DCGAN without SN' baseline)")
DISCRIMINATORS.register("sn-cnn", Ref(_M + "models:cnn_discriminator", "sn"),
                        "SN-GAN's standard CNN (conv3x3 + conv4x4 s2 pairs), spectral norm")
DISCRIMINATORS.register("bn-cnn", Ref(_M + "models:cnn_discriminator", "bn"),
                        "the standard CNN with batch norm and no spectral norm (sn-cnn's "
                        "'without SN' twin)")
DISCRIMINATORS.register("sn-resnet", Ref(_M + "models:ResNetDiscriminator"),
                        "SN-GAN's ResNet discriminator (global sum pooling), spectral norm")

DATASETS.register("digits", DataSet(Ref(_D + "datasets:load_digits")),
                  "scikit-learn's 8x8 digits, 1 channel, 10 classes; embedded, works offline")
DATASETS.register("digits-m", DataSet(Ref(_D + "mnistm:load_digits_m")),
                  "digits over photo patches (MNIST-M style), RGB, 10,782 images; offline")
DATASETS.register("cifar10", DataSet(Ref(_D + "datasets:load_cifar10")),
                  "CIFAR-10 train split (torchvision), 3 channels")
DATASETS.register("mnist", DataSet(Ref(_D + "datasets:load_mnist")),
                  "MNIST train split (torchvision), 1 channel")
DATASETS.register("fashion-mnist", DataSet(Ref(_D + "datasets:load_fashion_mnist")),
                  "Fashion-MNIST train split (torchvision), 1 channel")
DATASETS.register("folder", DataSet(Ref(_D + "datasets:load_folder"), arg="PATH",
                                    arg_required=True),
                  "folder:PATH, a folder of images; class sub-folders are the labels")
DATASETS.register("synthetic", DataSet(Ref(_D + "datasets:load_synthetic"), arg="N",
                                       check_arg=Ref(_D + "datasets:synthetic_size")),
                  "synthetic[:N], N (512) coloured shapes of 10 classes, made on the fly")

EXTRACTORS.register("classifier", Ref(_D + "extractors:ClassifierExtractor.load"),
                    "small CNN trained on the data set's own labels (offline default)")
EXTRACTORS.register("inception-v3-compat", Ref(_D + "extractors:InceptionExtractor.load"),
                    "torch-fidelity's InceptionV3 (the papers' IS/FID); needs a weights file "
                    "offline")

# the objective rules are plain arithmetic (no torch): registered from their one table
from .method import scoring as _scoring  # noqa: E402

for _name, (_reduce, _phrase) in _scoring.OBJECTIVE_RULES.items():
    OBJECTIVES.register(_name, _reduce, _phrase)
