"""`ktg presets`: the search presets."""
from __future__ import annotations

from .common import add_listing, print_listing


def add_parser(sub) -> None:
    add_listing(sub, "presets", "list the search presets", run)


def run(args) -> int:
    print_listing(rows(), args.format)
    return 0


def rows() -> list[dict]:
    from ..search.config import load_preset, preset_description, presets
    out = []
    for name in presets():
        c = load_preset(name)
        out.append({"name": name, "dataset": c.train.dataset, "px": c.train.image_size,
                    "k": c.space.k, "trials": c.num_trials, "max_epochs": c.train.epochs,
                    "description": preset_description(name)})
    return out
