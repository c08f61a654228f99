"""What a search and a training run are configured with, without Ray: `SearchConfig`
(a whole search), the presets (`ktg_search/presets/*.json`), search config files, and the
*recipe*: the training settings a graph file carries so that `ktg train` reuses them.

Kept free of Ray (directly and through its imports: tests/test_recipe.py checks) so that
`ktg presets`, `ktg train`, `ktg validate` and `ktg export` start without loading it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .checks import Bool, Choice, Float, Floats, Int, Names, Text, check_fields, check_instance, \
    field_checks, setting
from .errors import KtgError
from .registry import GATES, GENERATORS, TRANSFERS
from .space import PAPER_GATES, SpaceSpec
from .trainconfig import TrainConfig

# ASHA's time unit -> the key of the trainable's reports that counts it
TIME_ATTRS = {"epochs": "epoch", "steps": "iteration", "images": "images"}
TIME_UNITS = tuple(TIME_ATTRS)
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"epochs", "seed"}


_T = field_checks(TrainConfig)  # a training field has one check, used by both configs


def _json_or_text(raw: str) -> Any:
    """A `--set` value (or one item of a comma list): JSON if it parses, else the text
    (checked against the field afterwards)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def _flat_key(key: str) -> str:
    """`train.<field>` / `space.<field>` (the TrainConfig or SpaceSpec field a search sets)
    as the search config's own key; a plain key stays as it is (the flat alias)."""
    part, dot, name = key.partition(".")
    if not dot:
        return key
    own = {f.name for f in fields(SearchConfig)}
    if part == "train":
        valid = {f.name: f.name for f in fields(TrainConfig) if f.name in own}
        valid["epochs"] = "max_epochs"  # a search trains each graph for at most max_epochs
    elif part == "space":
        valid = {f.name: f.name for f in fields(SpaceSpec) if f.name in own}
    else:
        raise KtgError(f"--set: unknown section {part!r} in {key!r}; valid: train.<field>, "
                       f"space.<field> or a plain key")
    if name not in valid:
        raise KtgError(f"--set: unknown setting {key!r}; valid: "
                       f"{', '.join(f'{part}.{n}' for n in sorted(valid))}")
    return valid[name]


@dataclass
class SearchConfig:
    """A whole search: what to train, what to vary, and how to run it. JSON-serialisable.

    Every field is typed and bounded (checks.py); the training fields share
    `TrainConfig`'s checks, and every `TrainConfig` field a search sets has a field here
    (tests/test_safety.py checks that a new one cannot be missed)."""
    preset: str = setting("quick", Text(max_len=100))
    # data and training (see TrainConfig)
    dataset: str = setting("digits", _T["dataset"])
    image_size: int = setting(16, _T["image_size"])
    batch_size: int = setting(64, _T["batch_size"])
    nz: int = setting(100, _T["nz"])
    lr_g: float = setting(2e-4, _T["lr_g"])
    lr_d: float = setting(2e-4, _T["lr_d"])
    beta1: float = setting(0.5, _T["beta1"])
    beta2: float = setting(0.999, _T["beta2"])
    d_width: int = setting(64, _T["d_width"])
    d_passes: str = setting("auto", _T["d_passes"])
    d_loss_weighting: str = setting("uniform", _T["d_loss_weighting"])
    discriminator: str | None = setting(None, _T["discriminator"])
    ema_decay: float = setting(0.0, _T["ema_decay"])
    ema_start: int = setting(0, _T["ema_start"])
    transfer_scale: str = setting("plain", _T["transfer_scale"])
    eval_samples: int = setting(500, _T["eval_samples"])
    extractor: str = setting("classifier", _T["extractor"])
    fid: bool = setting(False, _T["fid"])
    inception_weights: str | None = setting(None, _T["inception_weights"])
    data_root: str | None = setting(None, _T["data_root"])
    device: str = setting("auto", _T["device"])
    amp: str = setting("off", _T["amp"])
    max_iters_per_epoch: int | None = setting(None, _T["max_iters_per_epoch"])
    seed: int = setting(0, _T["seed"])
    # the space (SpaceSpec checks it again: k <= 6 keeps the k^2 edges and k! renumberings
    # of the canonical key small)
    k: int = setting(3, Int(1, 6))
    gates: list[str] = setting(None, Names(GATES.names), factory=lambda: list(PAPER_GATES))
    target_model: str = setting("dcgan-small", Choice(GENERATORS.names))
    models: list[str] = setting(None, Names(GENERATORS.names), factory=lambda: ["dcgan-small"])
    transfer: list[str] = setting(None, Names(TRANSFERS.names), factory=lambda: ["feature_out"])
    alpha: float = setting(1000.0, Float(0, 1e9, lo_open=True))
    # the transfer weights searched (the trial's `alpha` param); empty = `alpha` alone
    alphas: list[float] = setting(None, Floats(0, 1e9, lo_open=True, max_len=20),
                                  factory=list)
    target_node: bool = setting(False, Bool())  # score node 0 only, not the best generator
    # the search
    num_trials: int = setting(24, Int(1, 1_000_000))
    max_epochs: int = setting(8, Int(1, 100_000))
    # ASHA's clock: "epochs" of the data set, or training "steps" or "images" seen, so that
    # a rung means the same work on any data set (a digits epoch is 56 steps at batch 32,
    # a CIFAR-10 one 195 at batch 256). grace_period is counted in it.
    time_unit: str = setting("epochs", Choice(TIME_UNITS))
    grace_period: int = setting(1, Int(1, 10 ** 12))          # <= max_epochs in epochs
    reduction_factor: float = setting(2, Float(2, 100))       # ASHA's: rungs grow by it
    sampler: str = setting("random", Choice(("random", "tpe")))
    # Optuna storage URL or journal file; default SQLite in the run directory
    storage: str | None = setting(None, Text(optional=True))
    study_name: str | None = setting(None, Text(optional=True, max_len=200))
    # trials at once; default: as many as the resources allow
    concurrency: int | None = setting(None, Int(1, 100_000, optional=True))
    cpus_per_trial: float = setting(1.0, Float(0, 1024, lo_open=True))
    gpus_per_trial: float = setting(0.0, Float(0, 64))
    # how long a duplicate waits for its original's result (at most a week)
    duplicate_wait_s: float = setting(900.0, Float(0, 7 * 24 * 3600))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "search config") -> "SearchConfig":
        """A config from a parsed JSON object: every field checked for type and range
        (KtgError naming the first bad one and its valid values); unknown keys refused."""
        cfg = cls(**check_fields(cls, d, where))
        cfg.validate(where)
        return cfg

    def with_overrides(self, sets: list[str]) -> "SearchConfig":
        """Apply `--set key=value` overrides; values parse as JSON, else as strings."""
        d = asdict(self)
        types = {f.name: f.type for f in fields(self)}
        for item in sets:
            if "=" not in item:
                raise KtgError(f"--set {item!r} is not key=value; valid keys: "
                               f"{', '.join(sorted(d))}")
            key, raw = item.split("=", 1)
            key = _flat_key(key.strip())
            if key not in d:
                raise KtgError(f"--set: unknown setting {key!r}; valid: "
                               f"{', '.join(sorted(d))}")
            value = _json_or_text(raw)
            if "list" in str(types[key]) and isinstance(value, (str, int, float)):
                value = [_json_or_text(v.strip()) for v in str(raw).split(",") if v.strip()]
            d[key] = value
        return SearchConfig.from_dict(d, where="--set")

    def validate(self, where: str = "") -> None:
        """Every field's type and range, then the rules between fields."""
        check_instance(self, where)
        if self.time_unit == "epochs" and self.grace_period > self.max_epochs:
            raise KtgError(f"{where + ': ' if where else ''}The value of `grace_period` is "
                           f"{self.grace_period}, but must be an integer with 1 <= "
                           f"grace_period <= max_epochs ({self.max_epochs})")
        self.space()
        self.train_config(0).validate(where)

    def space(self) -> SpaceSpec:
        return SpaceSpec(k=self.k, gates=tuple(self.gates), target_model=self.target_model,
                         models=tuple(self.models), transfer=tuple(self.transfer),
                         alpha=self.alpha, target_node=self.target_node,
                         alphas=tuple(self.alphas))

    def train_config(self, seed: int | None = None) -> TrainConfig:
        d = {k: v for k, v in asdict(self).items() if k in _TRAIN_FIELDS}
        return TrainConfig(epochs=self.max_epochs,
                           seed=self.seed if seed is None else seed, **d)


# ---- presets -----------------------------------------------------------------------------
PRESET_DIR = Path(__file__).with_name("presets")


def presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.json"))}


def load_preset(name: str) -> SearchConfig:
    files = presets()
    if name not in files:
        raise KtgError(f"unknown preset {name!r}; valid: {', '.join(files)}")
    d = json.loads(files[name].read_text())
    d.pop("description", None)
    return SearchConfig.from_dict({"preset": name, **d}, where=f"preset {name}")


def preset_description(name: str) -> str:
    return json.loads(presets()[name].read_text()).get("description", "")


def load_config_file(path: str) -> SearchConfig:
    """A search config file (JSON): the fields it names over its preset's (default quick);
    every field checked (KtgError names the file and the first bad value)."""
    from .safeload import read_json
    p = Path(path)
    d = read_json(p, "search config")
    if not isinstance(d, dict):
        raise KtgError(f"search config {path!r}: the top level must be a JSON object")
    d.pop("description", None)
    preset = d.get("preset", "quick")
    if not isinstance(preset, str) or preset not in presets():
        raise KtgError(f"search config {path!r}: unknown preset {str(preset)[:80]!r}; "
                       f"valid: {', '.join(presets())}")
    base = asdict(load_preset(preset))
    base.update(d)
    return SearchConfig.from_dict(base, where=str(p))


# ---- the recipe a graph file carries ------------------------------------------------------
# TrainConfig fields a recipe leaves out: where and how this machine runs (device, data and
# weights paths), the per-run seed, and the test/benchmark cap on an epoch. Everything else
# (data set, size, batch, optimiser, D, EMA, transfer scale, evaluation) is the recipe.
MACHINE_FIELDS = ("seed", "device", "data_root", "inception_weights", "max_iters_per_epoch")
RECIPE_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in MACHINE_FIELDS)


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


def preset_recipe(name: str) -> dict[str, Any]:
    """The training settings of a search preset, as a recipe (`--preset` of train and
    compare); KtgError listing the presets for an unknown name."""
    return recipe_of(load_preset(name).train_config())
