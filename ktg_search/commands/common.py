"""What the commands share: output formats, the training flags, progress bars."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import KtgError

FORMATS = ("table", "json", "csv")
MAX_SEEDS = 1000


def add_format_arg(sp: argparse.ArgumentParser) -> None:
    """`--format {table,json,csv}` (optuna/cli.py's convention)."""
    sp.add_argument("--format", choices=FORMATS, default="table")


def add_listing(sub, name: str, help: str, run: Callable) -> None:
    """A subcommand `name` that lists something, with `--format`; `run(args)` prints it
    (`print_listing`)."""
    sp = sub.add_parser(name, help=help)
    add_format_arg(sp)
    sp.set_defaults(func=run)


def print_listing(rows: list[dict], fmt: str) -> None:
    """Rows of a listing: JSON or CSV whole; as a table, one line per row, text left-aligned
    and the last column cut to the terminal's width (the full text is in --format json)."""
    if fmt != "table":
        import pandas as pd
        print_frame(pd.DataFrame(rows), fmt)
        return
    if not rows:
        print("(no rows)")
        return
    import shutil
    cols = list(rows[0])
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    room = max(20, shutil.get_terminal_size((120, 24)).columns - sum(widths[:-1])
               - 2 * (len(cols) - 1))

    def line(values: list[str]) -> str:
        last = values[-1] if len(values[-1]) <= room else values[-1][:room - 3] + "..."
        return "  ".join([v.ljust(w) for v, w in zip(values[:-1], widths[:-1],
                                                       strict=True)] + [last]).rstrip()
    print(line(cols))
    for row in cells:
        print(line(row))


def print_frame(df, fmt: str) -> None:
    """A DataFrame as an aligned table, JSON records or CSV (optuna/cli.py's --format).
    Text from the run's files (graph names, trial ids) reaches a terminal escaped
    (`for_terminal`); JSON escapes it itself, CSV piped to a file is left as it is."""
    from ..files.schemas import for_terminal
    if fmt == "json":
        print(df.to_json(orient="records", indent=2))
    elif fmt == "csv":
        text = df.to_csv(index=False)
        print(for_terminal(text) if sys.stdout.isatty() else text, end="")
    else:
        import pandas as pd
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            print(for_terminal(df.to_string(index=False)) if not df.empty else "(no rows)")


def epoch_bar(total: int, desc: str):
    """A progress bar over training epochs, on stderr."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True,
                dynamic_ncols=True)


def check_seeds(seeds: int) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise KtgError(f"The value of `--seeds` is {seeds}, but must be an integer "
                       f"with 1 <= --seeds <= {MAX_SEEDS}")


def check_dataset(name: str) -> None:
    from .. import registry  # noqa: F401  (the data set loaders registered)
    from ..data.loading import check_dataset_name
    check_dataset_name(name)


# ---- the training flags, from TrainConfig's fields ----------------------------------------
# Every TrainConfig field is a flag `--field-name` with the field's type, its Check's
# choices, its help (checks.setting's help=) and its default shown, so a default lives in
# one place (trainconfig.py). Every flag's argparse default is None: a value the user did not
# give is then told apart from one they did, and falls through to --preset, the graph's
# recipe and TrainConfig's default, in that order. The exceptions, in one table:
#
#   field(s)              flag(s)                        why
#   lr_g, lr_d            --lr (sets both), --lr-g, --lr-d  one rate is the usual recipe
#   beta1, beta2          --betas B1 B2                  Adam's pair, as torch spells it
#   fid                   --fid / --no-fid               a switch (--no-fid: the old flag)
#   seed                  (none)                         each command's own: --seeds/--seed0,
#                                                        pretrain's --seed
#   max_iters_per_epoch   --max-iters-per-epoch, hidden  tests and benchmarks only
_NO_FLAG = ("seed", "beta2", "lr_d")  # beta2 and lr_d come with beta1 and lr_g below
_HIDDEN = ("max_iters_per_epoch",)
_ARG_TYPES = {"int": int, "float": float, "text": str, "device": str}


def _dataset_help() -> str:
    from ..data.loading import dataset_names
    return "one of " + ", ".join(dataset_names())


def add_training_args(sp: argparse.ArgumentParser, preset: bool = False) -> None:
    """The flags of one training run (`ktg train`, `compare`, `pretrain`), built from
    TrainConfig's fields (table above); `preset` adds `--preset NAME`."""
    from dataclasses import MISSING, fields

    from ..method.trainconfig import TrainConfig
    if preset:
        from ..search.config import presets
        sp.add_argument("--preset", metavar="NAME",
                        help="take the training settings of this search preset ("
                             + ", ".join(presets()) + "); flags still override them")
    for f in fields(TrainConfig):
        if f.name in _NO_FLAG:
            continue
        check, text = f.metadata["check"], f.metadata.get("help", "")
        shown = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        if f.name in _HIDDEN:
            sp.add_argument(flag, type=_ARG_TYPES[check.kind], help=argparse.SUPPRESS)
        elif f.name == "lr_g":
            sp.add_argument("--lr", type=float, metavar="LR",
                            help=f"Adam learning rate of G and D (default: {shown:g})")
            sp.add_argument("--lr-g", type=float, metavar="LR", help=text + " (overrides --lr)")
            sp.add_argument("--lr-d", type=float, metavar="LR",
                            help="Adam learning rate of D (overrides --lr)")
        elif f.name == "beta1":
            d = {x.name: x.default for x in fields(TrainConfig)}
            sp.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"),
                            help=f"Adam betas (default: {d['beta1']:g} {d['beta2']:g}, the "
                                 f"paper's; 0 0.9 learns faster at digits scale, see docs/recipe.md)")
        elif check.kind == "bool":
            sp.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                            help=f"{text} (default: {'on' if shown else 'off'})")
        else:
            kw = {}
            if check.kind == "choice":
                kw["choices"] = list(check.choices() if callable(check.choices)
                                     else check.choices)
                kw["type"] = type(kw["choices"][0]) if kw["choices"] else str
            else:
                kw["type"] = _ARG_TYPES[check.kind]
            if f.name == "dataset":
                text = _dataset_help()
            default = "" if shown is None else f" (default: {shown})"
            sp.add_argument(flag, help=text + default, **kw)


def given_flags(args) -> dict:
    """The TrainConfig fields the user set with a flag (table above), by field name."""
    from dataclasses import fields

    from ..method.trainconfig import TrainConfig
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name not in _NO_FLAG and getattr(args, f.name, None) is not None}
    if getattr(args, "lr", None) is not None:
        given.setdefault("lr_g", args.lr)
        given.setdefault("lr_d", args.lr)
    if getattr(args, "lr_d", None) is not None:
        given["lr_d"] = args.lr_d
    if getattr(args, "betas", None) is not None:
        given["beta1"], given["beta2"] = args.betas
    return given


def base_recipe(args, graph_recipe: dict | None = None, graph_where: str = "") \
        -> tuple[dict, str]:
    """The training settings under the flags, and words saying where they come from:
    `--preset NAME` if given, else the graph file's recipe, else none (TrainConfig's
    defaults). Flags > --preset > graph recipe > defaults."""
    name = getattr(args, "preset", None)
    if name is not None:
        from ..search.config import preset_recipe, presets
        if name not in presets():
            raise KtgError(f"--preset {name[:80]!r} is unknown; valid: "
                           f"{', '.join(presets())}")
        return preset_recipe(name), f"preset {name}"
    if graph_recipe is not None:
        return dict(graph_recipe), f"the recipe in {graph_where}"
    return {}, "the training defaults"


def recipe_line(source: str, args) -> str:
    """One line for the person running: which recipe, and which of its settings flags
    override (machine-local flags such as --device are no part of a recipe)."""
    from ..method.trainconfig import RECIPE_FIELDS
    given = sorted(k for k in given_flags(args) if k in RECIPE_FIELDS)
    return (f"recipe: {source}" + (f"; flags override: {', '.join(given)}" if given
                                   else ""))


def train_config(args, seed: int, recipe: dict | None = None):
    """The TrainConfig of one run: the flags given, over `recipe` (see `base_recipe`),
    over TrainConfig's defaults; every field checked (KtgError naming a bad one)."""
    from ..method.trainconfig import TrainConfig
    d = {**(recipe or {}), **given_flags(args), "seed": seed}
    cfg = TrainConfig(**d)
    cfg.validate()
    return cfg


def recipe_config(args, seed: int):
    """The TrainConfig of a command whose recipe is `--preset` and flags only (compare,
    compress, pretrain: a graph's own recipe does not apply), after printing which recipe
    it is and what the flags override."""
    base, source = base_recipe(args)
    cfg = train_config(args, seed, base)
    print(recipe_line(source, args))
    return cfg


def add_parallel_args(sp) -> None:
    """The flags of a command that fans runs out on Ray (`compare`, `compress`)."""
    sp.add_argument("--address", help="Ray address: auto, ray://HOST:10001 (default: a "
                                      "local Ray)")
    sp.add_argument("--no-ray", action="store_true", help="run sequentially in this process")
    sp.add_argument("--gpus-per-run", type=float, default=0.0,
                    help="GPUs per Ray task (fractions allowed; default 0)")
