"""Data sets by name: `NAME` or `NAME:ARG` (`folder:/data/faces`, `synthetic:2048`).

`load_dataset` splits off the argument, looks `NAME` up in the `DATASETS` registry
(registry.py) and calls its loader (datasets.py); `check_dataset_name` checks a name
without reading any file, for configs and flags.
"""
from __future__ import annotations

import pathlib

from .errors import KtgError
from .imagedata import ImageData, check_size, data_root


def check_dataset_name(name: object, what: str = "data set") -> str:
    """`name` if it names a registered data set with a valid argument, else KtgError.

    Checks what can be checked without reading a file: the registry name, and the
    argument's form (`synthetic:N` with N in range, `folder:` with a path, no argument
    for the others)."""
    from .registry import DATASETS
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
    if base == "synthetic" and colon:
        from .datasets import synthetic_size
        synthetic_size(arg)
    elif base == "folder" and not arg:
        raise KtgError("data set 'folder' needs a path: use folder:PATH")
    elif base not in ("synthetic", "folder") and colon:
        raise KtgError(f"data set {base!r} takes no argument, got {name!r}")
    return name


def load_dataset(name: str, image_size: int, root: str | None = None,
                 download: bool = True) -> ImageData:
    """Load data set `name` (`NAME` or `NAME:ARG`) at `image_size` px (16, 32 or 64).

    `root` is where torchvision data sets are looked for (default `data_root()`);
    `download=False` never touches the network. Unknown names, bad sizes and missing
    files raise `KtgError`.
    """
    from .registry import DATASETS
    check_dataset_name(name)
    base, _, arg = name.partition(":")
    loader = DATASETS.get(base)
    check_size(image_size)
    root_path = pathlib.Path(root).expanduser() if root else data_root()
    return loader(image_size, root_path, download, arg or None)


def dataset_names() -> list[str]:
    """Registry names as a user types them ("folder" is shown as "folder:PATH")."""
    from .registry import DATASETS
    return [n + (":PATH" if n == "folder" else "") for n in DATASETS.names()]
