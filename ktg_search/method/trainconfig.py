"""`TrainConfig`: everything that decides a training run besides the graph, and the rules
that turn two of its fields into what a run builds: `effective_discriminator` (the D,
from the graph's and the config's) and `resolve_device` (the torch device).

Saved in every checkpoint and carried by graph files as their recipe (config.py); a
search's `train` section is one (config.py, `SearchConfig.train`). Each field declares its
type, range and help beside it (checks.py): the checks read a config from a file, and the
command-line flags of `ktg train`, `compare` and `pretrain` are built from the same fields
(commands/common.py), so a default is written once, here. No Ray and no training
code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..files.checks import (Bool, Choice, Device, Float, Int, Text, check_fields,
                            check_instance, setting)
from ..errors import KtgError
from ..data.imagedata import SIZES
from ..registry import DISCRIMINATORS, EXTRACTORS, OBJECTIVES

if TYPE_CHECKING:  # torch is imported by resolve_device, when a run starts
    import torch

D_PASSES = ("auto", "joint", "per_part")
D_LOSS_WEIGHTINGS = ("uniform", "paper_steps")
D_CLASSES = ("generators", "fake")
TRANSFER_SCALES = ("plain", "resolution")
MAX_EVAL_SAMPLES = 200_000  # IS/FID samples per generator (50k is the usual published count)


@dataclass
class TrainConfig:
    """Everything that decides a training run besides the graph; saved in every checkpoint.

    Every field carries its type and range (checks.py), checked by `validate` and when a
    config is read from a file (`from_dict`): the bounds keep a shared config from asking
    for more than a machine has (nz = 1e9, eval_samples = 1e12)."""
    dataset: str = setting("digits", Text(),
                           help="data set name")  # a DATASETS name, checked in validate
    image_size: int = setting(16, Choice(SIZES), help="image size in px")   # px: 16, 32 or 64
    batch_size: int = setting(64, Int(1, 4096),
                              help="images per batch (real and per generator)")
    epochs: int = setting(10, Int(1, 100_000), help="training epochs")
    nz: int = setting(100, Int(1, 1024), help="latent size of every generator")
    lr_g: float = setting(2e-4, Float(0, 1, lo_open=True),
                          help="Adam learning rate of the generators")
    lr_d: float = setting(2e-4, Float(0, 1, lo_open=True), help="Adam learning rate of D")
    beta1: float = setting(0.5, Float(0, 1, hi_open=True), help="Adam beta1")  # [0, 1)
    beta2: float = setting(0.999, Float(0, 1, hi_open=True), help="Adam beta2")
    d_width: int = setting(64, Int(1, 1024), help="discriminator base width (DCGAN's ndf)")
    # how D sees the (k+1) parts of a step: "joint" = one call over the concatenation,
    # "per_part" = one call per part (the paper's separate passes), "auto" = per_part when
    # D has batch norm (a joint call would mix real and fake batch statistics), else joint
    d_passes: str = setting("auto", Choice(D_PASSES),
                            help="D sees a step's parts in one call (joint), one call per part "
                                 "(per_part, the paper's passes) or per_part when D has batch "
                                 "norm (auto)")
    # how eq. 1 is averaged over a D step's samples: "uniform" = every sample alike (the
    # real batch is 1/(k+1) of the loss); "paper_steps" = Sec. 3.3.1 read literally,
    # steps 1 (real) and 2 (G_i) repeated for i = 1..k: the real batch is half of the
    # loss, each generator 1/(2k). The same for k = 1; for k = 3 on digits "uniform" let
    # every generator collapse while "paper_steps" did not (README, training notes)
    d_loss_weighting: str = setting("uniform", Choice(D_LOSS_WEIGHTINGS),
                                    help="eq. 1 over a D step: uniform (every sample alike) or "
                                         "paper_steps (real half of the loss, as Sec. 3.3.1's "
                                         "steps repeated k times)")
    # which class D's eq. 1 gives G_i's images: "generators" = class i, one per generator
    # (the paper, MAD-GAN's identity classes); "fake" = one shared fake class for every
    # generator, so that D judges real vs fake only (a mixture GAN's D). On digits-m the
    # identity classes take D over: at epoch 8 a k = 2 graph's D named each generator
    # right 80-100% of the time but gave real images the real class no more often than
    # fakes, and no generator learned; with "fake" they did (docs/digits-m.md)
    d_classes: str = setting("generators", Choice(D_CLASSES),
                             help="D's class for G_i's images: generators (class i, the "
                                  "paper's k+1 classes) or fake (one fake class for all, D "
                                  "judges real vs fake only)")
    # the recipe's discriminator kind (registry name), or None for the graph's own. The
    # graph keeps its normalisation (sn or bn, the method's choice, Table 1's SN column),
    # the recipe picks the architecture: see `effective_discriminator`
    discriminator: str | None = setting(None, Choice(DISCRIMINATORS.names, optional=True),
                                        help="D architecture (the graph keeps its sn/bn "
                                             "normalisation); default: the graph's own D")
    # EMA of the generator weights, used for every evaluation, sample and best-weights
    # copy (ema.py): 0 = off (the paper); else the decay per G update, averaging from G
    # update `ema_start` on (before it the EMA is a copy: early weights are noise)
    ema_decay: float = setting(0.0, Float(0, 1, hi_open=True),
                               help="EMA decay of the generator weights that are "
                                    "evaluated (0 = off)")
    ema_start: int = setting(0, Int(0, 10_000_000),
                             help="G update from which the EMA averages")
    # "plain" = the paper's alpha / N (eqs. 3-5); "resolution" = alpha / N_ref with N_ref
    # the positions the same map has at the paper's 64 px, so alpha means the same
    # strength at 16 and 32 px (losses.py, `reference_positions`)
    transfer_scale: str = setting("plain", Choice(TRANSFER_SCALES),
                                  help="transfer loss scale: plain (alpha/N, the paper) or "
                                       "resolution (alpha/N at 64 px)")
    seed: int = setting(0, Int(0, 2 ** 32 - 1), help="random seed")  # numpy's (Optuna's) range
    device: str = setting("auto", Device(), help="auto, cpu, cuda, cuda:N")
    amp: str = setting("off", Choice(("off", "bf16")), help="bf16: autocast on bf16 GPUs")
    eval_samples: int = setting(1000, Int(10, MAX_EVAL_SAMPLES),
                                help="samples per generator for IS / FID each epoch")
    extractor: str = setting("classifier", Choice(EXTRACTORS.names),
                             help="feature extractor for IS / FID")
    fid: bool = setting(True, Bool(), help="compute FID each epoch")
    # what an epoch scores (OBJECTIVES, scoring.py): the best epoch's weights, a search's
    # ranking and ASHA's stops all follow it. "best" is the paper's; "weakest" makes a
    # search prefer graphs in which every generator learns (docs/early-stops.md)
    objective: str = setting("best", Choice(OBJECTIVES.names),
                             help="an epoch's score from the IS of the generators: best, "
                                  "weakest, mean or mixture")
    inception_weights: str | None = setting(None, Text(optional=True),
                                            help="torch-fidelity Inception weights file")
    data_root: str | None = setting(None, Text(optional=True),
                                    help="where torchvision data sets live")
    max_iters_per_epoch: int | None = setting(None, Int(1, 10_000_000, optional=True),
                                              help="cap on the iterations of an epoch (tests, "
                                                   "benchmarks)")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "training config") -> TrainConfig:
        """A config from a parsed JSON object (a checkpoint's, a Ray task's): every field
        checked for type and range; unknown fields refused."""
        cfg = cls(**check_fields(cls, d, where, what="training setting"))
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "") -> None:
        """Every field's type and range (the checks beside the fields) and the data set
        name; KtgError names the first bad value and the valid ones."""
        check_instance(self, where)
        from ..data.loading import check_dataset_name
        try:
            check_dataset_name(self.dataset)
        except KtgError as e:
            raise KtgError(f"{where}: {e}" if where else str(e)) from None


def effective_discriminator(graph_d: str, recipe_d: str | None) -> str:
    """The discriminator kind a run builds, from the graph's and the recipe's.

    The rule: without a recipe D (None) the graph's own. With one, the recipe gives the
    architecture and the graph the normalisation: a graph whose D has spectral norm
    ("sn", "sn-cnn", ...: the method) gets the recipe's kind as it is; a graph whose D is
    batch norm ("bn", "bn-cnn": the no-SN baseline, e.g. `dcgan`) gets the recipe
    architecture's batch-norm twin ("sn-cnn" -> "bn-cnn"), so that a baseline differs
    from the method only in what the paper's Table 1 varies. A recipe kind with no
    registered twin of the graph's normalisation is an error, not a silent fallback.
    """
    if recipe_d is None:
        return graph_d
    norm = graph_d.split("-", 1)[0]
    arch = recipe_d.split("-", 1)[1] if "-" in recipe_d else ""
    name = f"{norm}-{arch}" if arch else norm
    if name not in DISCRIMINATORS:
        raise KtgError(f"the recipe's discriminator {recipe_d!r} has no {norm!r} twin for "
                       f"this graph's {graph_d!r} D (looked for {name!r}); valid "
                       f"discriminators: {', '.join(DISCRIMINATORS.names())}")
    return name


def resolve_device(device: str) -> "torch.device":
    """`auto` picks the GPU when there is one; cudnn autotuning is on for GPUs."""
    import torch
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KtgError(f"device {device!r} was asked for, but no GPU is visible; valid "
                           f"here: auto, cpu")
        torch.backends.cudnn.benchmark = True
    elif device != "cpu":
        raise KtgError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")
    return torch.device(device)


# ---- the recipe a graph file carries ------------------------------------------------------
# TrainConfig fields a recipe leaves out: where and how this machine runs (device, data and
# weights paths), the per-run seed, and the test/benchmark cap on an epoch. Everything else
# (data set, size, batch, optimiser, D, EMA, transfer scale, evaluation) is the recipe.
MACHINE_FIELDS = ("seed", "device", "data_root", "inception_weights", "max_iters_per_epoch")
RECIPE_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in MACHINE_FIELDS)


def with_later_fields(old: dict[str, Any], keys) -> dict[str, Any]:
    """Training settings read from an older file (a compare's or compress's settings, a
    run's recipe), with each of `keys` the file lacks at TrainConfig's default: a setting
    added since (d_classes) did not exist when the file was written, and training then did
    what its default does, so an old folder still resumes. Keys the file has stay."""
    defaults = asdict(TrainConfig())
    return {**{k: defaults[k] for k in keys if k in defaults and k not in old}, **old}


def recipe_of(cfg: TrainConfig) -> dict[str, Any]:
    """The recipe of a training config: its fields minus the machine-local ones."""
    return {k: v for k, v in asdict(cfg).items() if k in RECIPE_FIELDS}


def check_recipe(recipe: Any, where: str = "recipe") -> dict[str, Any]:
    """A recipe read from a file: a JSON object of TrainConfig fields (any subset of
    `RECIPE_FIELDS`), each value type- and range-checked and converted; a machine-local
    or unknown key is refused. KtgError names the bad key or value and the valid ones."""
    if not isinstance(recipe, dict):
        raise KtgError(f"{where}: must be a JSON object of training settings, got "
                       f"{type(recipe).__name__}")
    bad = [k for k in recipe if k not in RECIPE_FIELDS]
    if bad:
        raise KtgError(f"{where}: unknown recipe setting {str(bad[0])[:80]!r}; valid: "
                       f"{', '.join(sorted(RECIPE_FIELDS))}")
    d = check_fields(TrainConfig, recipe, where, what="recipe setting")
    TrainConfig(**d).validate(where)  # the data set name and anything between fields
    return d
