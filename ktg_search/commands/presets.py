"""`ktg presets`: the search presets."""
from __future__ import annotations

from .common import add_format_arg, print_frame


def add_parser(sub) -> None:
    sp = sub.add_parser("presets", help="list the search presets")
    add_format_arg(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from ..config import load_preset, preset_description, presets
    rows = []
    for name in presets():
        c = load_preset(name)
        rows.append({"name": name, "dataset": c.train.dataset, "px": c.train.image_size,
                     "k": c.space.k, "trials": c.num_trials, "max_epochs": c.train.epochs,
                     "description": preset_description(name)})
    print_frame(pd.DataFrame(rows), args.format)
    return 0
