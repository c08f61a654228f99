"""What a search and a training run are configured with, without Ray: `SearchConfig`
(a whole search), the presets (`ktg_search/presets/*.json`), search config files, and the
*recipe*: the training settings a graph file carries so that `ktg train` reuses them.

A search config has two sections and the search's own settings beside them::

    {"preset": "quick", "num_trials": 24, "time_unit": "epochs", ...,
     "train": {TrainConfig's fields: the training of every trial; `epochs` is the most a
               trial trains},
     "space": {SpaceSpec's fields: what the search varies}}

Files written before the sections (presets, config files, `run.json`) were flat: every
field at the top level, and `max_epochs` for `train.epochs`. They still read: a plain key
that names a field of one section is that field (`lr_g` = `train.lr_g`; no field name is
in two sections, tests/test_config.py checks), and `--set` takes both forms.

Kept free of Ray (directly and through its imports: tests/test_recipe.py checks) so that
`ktg presets`, `ktg train`, `ktg validate` and `ktg export` start without loading it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..files.checks import (Choice, Float, Int, SwitchOrNames, Text, check_fields,
                            check_instance, field_checks, setting)
from ..errors import KtgError
from .baselines import baseline_choices
from .space import SpaceSpec
from ..method.trainconfig import TrainConfig, recipe_of

# ASHA's time unit -> the key of the trainable's reports that counts it
TIME_ATTRS = {"epochs": "epoch", "steps": "iteration", "images": "images"}
TIME_UNITS = tuple(TIME_ATTRS)

# the sections of a search config and the dataclass of each
SECTIONS: dict[str, type] = {"train": TrainConfig, "space": SpaceSpec}
# plain keys that are not a section's field name: the flat files' name for train.epochs
ALIASES = {"max_epochs": ("train", "epochs")}


@dataclass
class SearchConfig:
    """A whole search: how to run it (the fields here), what every trial trains with
    (`train`, whose `epochs` is the most epochs a trial trains: ASHA's max_t in epochs)
    and what it varies (`space`). JSON-serialisable (`to_dict` / `from_dict`).

    Every field is typed and bounded (checks.py), the sections' fields beside their own
    dataclass, so that a default and a range are written once."""
    preset: str = setting("quick", Text(max_len=100))
    num_trials: int = setting(24, Int(1, 1_000_000))
    # ASHA's clock: "epochs" of the data set, or training "steps" or "images" seen, so that
    # a rung means the same work on any data set (a digits epoch is 56 steps at batch 32,
    # a CIFAR-10 one 195 at batch 256). grace_period is counted in it.
    time_unit: str = setting("epochs", Choice(TIME_UNITS))
    grace_period: int = setting(1, Int(1, 10 ** 12))          # <= train.epochs in epochs
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
    # the known graphs trained beside the searched ones (search/baselines.py): true =
    # mad-gan, through, dcgan-sn; false = none (the default of a config file, so that a
    # run.json written before baselines resumes as it ran); every preset sets true
    baselines: bool | list[str] = setting(False, SwitchOrNames(baseline_choices))
    train: TrainConfig = field(default_factory=TrainConfig)
    space: SpaceSpec = field(default_factory=SpaceSpec)

    @classmethod
    def from_dict(cls, d: Any, where: str = "search config") -> SearchConfig:
        """A config from a parsed JSON object, nested or flat (module docstring): every
        field checked for type and range (KtgError naming the first bad one and its valid
        values); an unknown key is refused, naming it and the valid ones."""
        d = nested(d, where)
        own = check_fields(cls, {k: v for k, v in d.items() if k not in SECTIONS}, where)
        cfg = cls(**own, train=TrainConfig.from_dict(d.get("train", {}), where),
                  space=SpaceSpec.from_dict(d.get("space", {}), where))
        cfg.validate(where)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form (run.json's `config`); `from_dict` reads it back equal."""
        d = asdict(self)
        d["space"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["space"].items()}
        return d

    def with_overrides(self, sets: list[str]) -> SearchConfig:
        """Apply `--set key=value` overrides: `train.x`, `space.x`, a search setting, or a
        section's field alone (`lr_g`). Values parse as JSON, else as text; a list field
        also takes comma-separated items (`gates=through,cutoff`)."""
        d = self.to_dict()
        for item in sets:
            if "=" not in item:
                raise KtgError(f"--set {item!r} is not key=value; valid keys: {valid_keys()}")
            key, raw = item.split("=", 1)
            section, name = resolve_key(key.strip(), "--set")
            check = field_checks(SECTIONS[section] if section else SearchConfig)[name]
            value = _json_or_text(raw)
            if check.kind in ("names", "floats", "switch_names") and \
                    isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = [_json_or_text(v.strip()) for v in str(raw).split(",") if v.strip()]
            (d[section] if section else d)[name] = value
        return SearchConfig.from_dict(d, where="--set")

    def validate(self, where: str = "") -> None:
        """Every field's type and range, the sections' too, then the rules between
        fields; KtgError names the first bad value."""
        check_instance(self, where)
        if self.time_unit == "epochs" and self.grace_period > self.train.epochs:
            raise KtgError(f"{where + ': ' if where else ''}The value of `grace_period` is "
                           f"{self.grace_period}, but must be an integer with 1 <= "
                           f"grace_period <= max_epochs (train.epochs, {self.train.epochs})")
        self.space.validate(where)
        self.train.validate(where)
        if self.baselines:
            from .baselines import baseline_graphs
            try:
                baseline_graphs(self)
            except KtgError as e:
                raise KtgError(f"{where}: {e}" if where else str(e)) from None


# ---- keys: sections, flat aliases ---------------------------------------------------------
def _names(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.name not in SECTIONS]


def valid_keys() -> str:
    """Every key a search config and `--set` take, in words for messages."""
    return (", ".join(sorted(_names(SearchConfig))) + "; " +
            "; ".join(f"{s}.<field> ({', '.join(sorted(_names(c)))})"
                      for s, c in SECTIONS.items()) +
            "; a train or space field also alone (lr_g = train.lr_g), and max_epochs = "
            "train.epochs")


def resolve_key(key: str, where: str) -> tuple[str | None, str]:
    """(section or None, field name) of a config key: `train.lr_g`, `space.k`, a search
    setting (`num_trials`), or a section's field alone (`lr_g`, `max_epochs`: the flat
    form). KtgError naming the key and the valid ones otherwise."""
    part, dot, name = key.partition(".")
    if dot:
        if part not in SECTIONS:
            raise KtgError(f"{where}: unknown section {part[:80]!r} in {key[:120]!r}; valid: "
                           f"train.<field>, space.<field> or a plain key")
        valid = _names(SECTIONS[part])
        if name not in valid:
            raise KtgError(f"{where}: unknown setting {key[:120]!r}; valid: "
                           f"{', '.join(f'{part}.{n}' for n in sorted(valid))}")
        return part, name
    if key in _names(SearchConfig):
        return None, key
    if key in ALIASES:
        return ALIASES[key]
    for section, cls in SECTIONS.items():
        if key in _names(cls):
            return section, key
    raise KtgError(f"{where}: unknown setting {key[:80]!r}; valid: {valid_keys()}")


def nested(d: Any, where: str) -> dict[str, Any]:
    """A parsed config object in the nested form: `train` and `space` objects of their
    own fields, every other key a search setting. Flat keys (older files) go to their
    section; a setting given twice (`max_epochs` and `train.epochs`), an unknown key or a
    section that is not an object is refused with one message naming it."""
    if not isinstance(d, dict):
        raise KtgError(f"{where}: must be a JSON object of settings, got {type(d).__name__}")
    out: dict[str, Any] = {}
    given: dict[tuple[str | None, str], str] = {}  # (section, field) -> the key it came as

    def put(key: str, value: Any) -> None:
        section, name = resolve_key(key, where)
        if (section, name) in given:
            raise KtgError(f"{where}: `{key}` and `{given[section, name]}` set the same "
                           f"setting ({section + '.' if section else ''}{name}); give it once")
        given[section, name] = key
        (out.setdefault(section, {}) if section else out)[name] = value

    for key, value in d.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise KtgError(f"{where}: `{key}` must be a JSON object of "
                               f"{SECTIONS[key].__name__} settings, got "
                               f"{type(value).__name__}")
            out.setdefault(key, {})
            for name, v in value.items():
                put(f"{key}.{name}", v)
        else:
            put(str(key), value)
    return out


def _json_or_text(raw: str) -> Any:
    """A `--set` value (or one item of a comma list): JSON if it parses, else the text
    (checked against the field afterwards)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


# ---- presets -----------------------------------------------------------------------------
PRESET_DIR = Path(__file__).with_name("presets")


def presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.json"))}


def load_preset(name: str) -> SearchConfig:
    files = presets()
    if name not in files:
        raise KtgError(f"unknown preset {name[:80]!r}; valid: {', '.join(files)}")
    d = json.loads(files[name].read_text())
    d.pop("description", None)
    return SearchConfig.from_dict({"preset": name, **d}, where=f"preset {name}")


def preset_description(name: str) -> str:
    return json.loads(presets()[name].read_text()).get("description", "")


def load_config_file(path: str) -> SearchConfig:
    """A search config file (JSON, nested or flat): the fields it names over its preset's
    (default quick); every field checked (KtgError names the file and the first bad
    value)."""
    from ..files.safeload import read_json
    p = Path(path)
    d = read_json(p, "search config")
    if not isinstance(d, dict):
        raise KtgError(f"search config {path!r}: the top level must be a JSON object")
    d.pop("description", None)
    try:  # load_preset names an unknown preset and the valid ones
        base = load_preset(str(d.get("preset", "quick"))).to_dict()
    except KtgError as e:
        raise KtgError(f"search config {path!r}: {e}") from None
    for key, value in nested(d, str(p)).items():  # section by section over the preset's
        if key in SECTIONS:
            base[key].update(value)
        else:
            base[key] = value
    return SearchConfig.from_dict(base, where=str(p))


def preset_recipe(name: str) -> dict[str, Any]:
    """The training settings of a search preset, as a recipe (`--preset` of train and
    compare); KtgError listing the presets for an unknown name."""
    return recipe_of(load_preset(name).train)
