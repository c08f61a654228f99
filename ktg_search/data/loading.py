"""Data sets by name: `NAME` or `NAME:ARG` (`folder:/data/faces`, `synthetic:2048`).

`load_dataset` splits off the argument, looks `NAME` up in the `DATASETS` registry
(registry.py) and calls its loader (datasets.py); `check_dataset_name` checks a name
without reading any file, for configs and flags. What argument a data set takes is the
registry entry's (`DataSet.arg`, `arg_required`, `check_arg`), never a list here.
"""
from __future__ import annotations

import pathlib

from ..errors import KtgError
from .imagedata import ImageData, check_size, data_root
from ..registry import DATASETS


def check_dataset_name(name: object, what: str = "data set") -> str:
    """`name` if it names a registered data set with a valid argument, else KtgError.

    Checks what can be checked without reading a file: the registry name, and the
    argument's form (as the entry says: `synthetic:N` with N in range, `folder:` with a
    path, no argument for the others)."""
    valid = ", ".join(dataset_names())
    if not isinstance(name, str) or not name or len(name) > 4096:
        raise KtgError(f"{what} must be a data set name, got {str(name)[:80]!r}; valid: "
                       f"{valid}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise KtgError(f"{what} {name!r} is not valid text; valid: {valid}") from None
    base, colon, arg = name.partition(":")
    if base not in DATASETS:
        raise KtgError(f"unknown {what} {name!r}; valid: {valid}")
    entry = DATASETS.get(base)
    if not entry.takes_arg:
        if colon:
            raise KtgError(f"data set {base!r} takes no argument, got {name!r}")
    elif entry.arg_required and not arg:
        raise KtgError(f"data set {base!r} needs an argument: use {entry.usage(base)}")
    elif colon and entry.check_arg is not None:
        entry.check_arg(arg)
    return name


def load_dataset(name: str, image_size: int, root: str | None = None,
                 download: bool = True) -> ImageData:
    """Load data set `name` (`NAME` or `NAME:ARG`) at `image_size` px (16, 32 or 64).

    `root` is where torchvision data sets are looked for (default `data_root()`);
    `download=False` never touches the network. Unknown names, bad sizes and missing
    files raise `KtgError`.
    """
    check_dataset_name(name)
    base, _, arg = name.partition(":")
    check_size(image_size)
    root_path = pathlib.Path(root).expanduser() if root else data_root()
    return DATASETS.get(base).load(image_size, root_path, download, arg or None)


def dataset_names() -> list[str]:
    """Registry names as a user types them: a required argument is shown
    (`folder:PATH`), an optional one is not (`synthetic`)."""
    return [DATASETS.get(n).usage(n) if DATASETS.get(n).arg_required else n
            for n in DATASETS.names()]
