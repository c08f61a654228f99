"""Reading files other people made (checkpoints, JSON, Parquet tables) as data, never code.

People pass graph files, run directories and generator checkpoints around. A PyTorch
checkpoint is a pickle, and a pickle can name any function to call while it loads; so
every checkpoint this package reads goes through `load_checkpoint`, which uses
`torch.load(weights_only=True)`: only tensors, dicts, lists, tuples, numbers, strings and
None are rebuilt, anything else is refused with one message naming the file, and nothing
in the file runs. The checkpoints this package writes hold exactly those types (a
`torch.Generator` state is a uint8 tensor), so they all load this way.

JSON and Parquet files get the same treatment: one `KtgError` naming the file for every
way a file can be bad (missing, a directory, not UTF-8, too deeply nested, a number too
long to convert, truncated, corrupt), instead of a traceback.
"""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

from ..errors import KtgError
from .schemas import check_size

MAX_JSON_BYTES = 16 * 2 ** 20  # graph files, configs and run.json are a few kB


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _existing_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise KtgError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise KtgError(f"{what} {str(p)!r} is not a file")
    return p


# ---- checkpoints -------------------------------------------------------------------------
REFUSED = ("it holds Python objects other than tensors and plain values (a pickle that "
           "could run code when loaded), so it was not loaded; ktg reads only checkpoints "
           "made of tensors, numbers, strings, lists and dicts, as ktg writes them")


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> Any:
    """A checkpoint's contents, loaded with `torch.load(weights_only=True)` on the CPU.

    KtgError naming the file when it is missing, truncated, not a PyTorch file, or holds
    anything but tensors and plain values (refused unloaded: nothing in it runs)."""
    import torch
    p = _existing_file(path, what)
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol 4": torch's note about files it reads anyway
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise KtgError(f"{what} {str(p)!r} was refused: {REFUSED}") from None
        raise KtgError(f"{what} {str(p)!r} cannot be read ({_first_line(e)}); it is "
                       f"truncated or not a PyTorch checkpoint") from None
    except MemoryError:
        raise KtgError(f"{what} {str(p)!r} does not fit in memory") from None
    except Exception as e:  # EOFError, RuntimeError (zip), OSError, ...: never code run
        raise KtgError(f"{what} {str(p)!r} cannot be read ({type(e).__name__}: "
                       f"{_first_line(e)}); it is truncated or not a PyTorch checkpoint") \
            from None


def tensor_dict(obj: Any, what: str, path: str | Path) -> dict:
    """`obj` if it is a dict of name -> tensor (a state dict), else KtgError."""
    import torch
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise KtgError(f"{what} in {str(path)!r} is not a state dict (names -> tensors)")
    return obj


# the keys of `Trainer.state_dict()` and the type each must have
_TRAINER_KEYS = {"config": dict, "graph": dict, "generators": list, "D": dict,
                 "opt_d": dict, "opt_g": (dict, type(None)), "iteration": int,
                 "epoch": int, "status": str, "history": list, "best_is": list,
                 "best_epoch": int, "best_objective": (int, float),
                 "best_generators": (list, type(None))}


def check_trainer_state(state: Any, path: str | Path) -> dict:
    """A loaded `trainer.pt` / `checkpoint.pt` with every key `Trainer.load_state_dict`
    reads, of the right type; KtgError naming the file and the first bad key."""
    import torch
    where = f"checkpoint {str(path)!r}"
    if not isinstance(state, dict):
        raise KtgError(f"{where} is not a trainer checkpoint (a dict with "
                       f"{', '.join(_TRAINER_KEYS)})")
    for key, kind in _TRAINER_KEYS.items():
        if key not in state:
            raise KtgError(f"{where} is not a trainer checkpoint: it has no {key!r}")
        if isinstance(state[key], bool) or not isinstance(state[key], kind):
            raise KtgError(f"{where}: {key!r} is a {type(state[key]).__name__}, which no "
                           f"trainer checkpoint holds")
    rng = state.get("rng")
    if not (torch.is_tensor(rng) and rng.dtype == torch.uint8 and rng.dim() == 1):
        raise KtgError(f"{where}: 'rng' is not a random generator state (a uint8 tensor)")
    noise = state.get("noise_rng")  # a GPU run's z generator (absent or None on CPU)
    if noise is not None and not (torch.is_tensor(noise) and noise.dtype == torch.uint8
                                  and noise.dim() == 1):
        raise KtgError(f"{where}: 'noise_rng' is not a random generator state (a uint8 "
                       f"tensor)")
    for i, sd in enumerate(state["generators"]):
        tensor_dict(sd, f"generator {i}", path)
    tensor_dict(state["D"], "the discriminator", path)
    multi = state.get("multi_d")  # several discriminators: D1..D(m-1) (absent before)
    if multi is not None:
        if not (isinstance(multi, dict) and isinstance(multi.get("D"), list) and
                isinstance(multi.get("opt_d"), list) and isinstance(multi.get("roles"), list)):
            raise KtgError(f"{where}: 'multi_d' is not the state of several discriminators")
        for j, sd in enumerate(multi["D"]):
            tensor_dict(sd, f"discriminator D{j + 1}", path)
    for i, sd in enumerate(state["best_generators"] or []):
        tensor_dict(sd, f"best-epoch generator {i}", path)
    if not all(isinstance(h, dict) for h in state["history"]):
        raise KtgError(f"{where}: 'history' is not a list of epoch rows")
    return state


def load_inception_state(path: str | Path) -> dict:
    """The state dict of a torch-fidelity InceptionV3 weights file, loaded safely.

    torch-fidelity 0.4 loads a weights file with `weights_only=False`, which runs any
    code a pickle names; the file is loaded here instead, and torch-fidelity is handed
    the verified tensors (metrics.py)."""
    return tensor_dict(load_checkpoint(path, "inception weights file"),
                       "the inception weights", path)


def generator_checkpoint(path: str | Path, what: str) -> dict:
    """A checkpoint written by `ktg pretrain`, loaded as data: a dict with a `model` name
    and a `generator` dict (and optionally `config`); KtgError naming the file otherwise."""
    ckpt = load_checkpoint(path, what)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("generator"), dict) or \
            not isinstance(ckpt.get("model"), str):
        raise KtgError(f"{what} {str(path)!r} is not a generator checkpoint from `ktg "
                       f"pretrain` (expected keys: model, generator, config)")
    cfg = ckpt.get("config", {})
    plain = (str, int, float, bool, type(None))
    if not isinstance(cfg, dict) or not all(
            isinstance(k, str) and (isinstance(v, plain) or (isinstance(v, (list, tuple))
                                                             and all(isinstance(x, plain)
                                                                     for x in v)))
            for k, v in cfg.items()):
        raise KtgError(f"{what} {str(path)!r}: its stored config is not a dict of plain "
                       f"values (numbers, text, lists of them), as `ktg pretrain` writes")
    return ckpt


def check_pretrained_files(g) -> None:
    """Every node's `pretrained` checkpoint exists, loads as data and holds the node's
    model; KtgError naming the first path that does not."""
    for i, node in enumerate(g.nodes):
        if not node.pretrained:
            continue
        if not Path(node.pretrained).exists():
            raise KtgError(f"node {i}'s pretrained checkpoint {node.pretrained!r} does not "
                           f"exist (a relative path is relative to the graph file); pass "
                           f"--no-files to check a graph meant for another machine")
        model = generator_checkpoint(node.pretrained,
                                     f"node {i}'s pretrained checkpoint")["model"]
        if model != node.model:
            raise KtgError(f"node {i} says model {node.model!r}, but its pretrained "
                           f"checkpoint {node.pretrained!r} holds a {model[:80]!r}")


# ---- JSON ------------------------------------------------------------------------------------
class DuplicateKey(ValueError):
    """A JSON object that names the same key twice (which one was meant is unknown)."""


def _no_duplicates(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


def loads(text: str | bytes) -> Any:
    """`json.loads` refusing duplicate keys (DuplicateKey, a ValueError): the one JSON
    parser for files from users (graphs, configs, run.json, trial.json, journal lines)."""
    return json.loads(text, object_pairs_hook=_no_duplicates)


def parse_json(text: str, where: str) -> Any:
    """`loads` with every failure as one KtgError naming `where`."""
    from .schemas import for_terminal
    try:
        return loads(text)
    except DuplicateKey as e:
        raise KtgError(f"{where}: the key {for_terminal(repr(e.args[0]))[:120]} appears "
                       f"twice in one object; which value is meant is unclear, so the file "
                       f"was refused") from None
    except json.JSONDecodeError as e:
        raise KtgError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column "
                       f"{e.colno}") from None
    except RecursionError:
        raise KtgError(f"{where}: not a usable JSON file: nested too deeply") from None
    except ValueError as e:  # an integer of thousands of digits (int conversion limit)
        raise KtgError(f"{where}: not a usable JSON file: {_first_line(e)}") from None


def read_json(path: str | Path, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's value; KtgError naming the file for a missing, unreadable, oversized,
    non-UTF-8 or malformed one."""
    p = _existing_file(path, what)
    try:
        check_size(p, what, max_bytes)   # the one size rule (files/schemas.py)
        raw = p.read_bytes()
    except OSError as e:
        raise KtgError(f"{what} {str(p)!r} cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KtgError(f"{what} {str(p)!r} is not UTF-8 text (byte {e.start})") from None
    return parse_json(text, f"{what} {str(p)!r}")


# ---- Parquet tables ------------------------------------------------------------------------
def read_parquet(path: str | Path, what: str, columns: dict[str, str] | None = None):
    """A Parquet file as a DataFrame; KtgError naming the file when it is corrupt,
    empty or truncated, or lacks one of `columns` ({name: "str" | "num"}) or holds a
    column of the wrong kind (text where numbers belong)."""
    import pandas as pd
    p = _existing_file(path, what)
    try:
        df = pd.read_parquet(p)
    except MemoryError:
        raise KtgError(f"{what} {str(p)!r} does not fit in memory") from None
    except Exception as e:  # pyarrow's ArrowInvalid, OSError, ...
        raise KtgError(f"{what} {str(p)!r} cannot be read as a Parquet table "
                       f"({_first_line(e)}); it is corrupt, empty or truncated") from None
    return check_frame(df, f"{what} {str(p)!r}", columns)


def check_frame(df, what: str, columns: dict[str, str] | None = None):
    """`df` with every one of `columns` ({name: "str" | "num"}) present and of its kind;
    KtgError naming `what` (the table and where it came from) otherwise."""
    import pandas as pd
    for col in df.columns:  # a dictionary-encoded (category) column: its plain values
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            numeric = pd.api.types.is_numeric_dtype(df[col].cat.categories)
            plain = df[col].astype(object)
            df[col] = pd.to_numeric(plain) if numeric else plain
    if len(df) == 0:  # a table written before any row (the writer has no columns yet)
        for col in columns or {}:
            if col not in df.columns:
                df[col] = pd.Series(dtype=float if columns[col] == "num" else object)
        return df
    for col, kind in (columns or {}).items():
        if col not in df.columns:
            raise KtgError(f"{what} has no column {col!r}; is it a table "
                           f"written by ktg?")
        s = df[col]
        if kind == "num" and not (pd.api.types.is_numeric_dtype(s)
                                  and not pd.api.types.is_bool_dtype(s)):
            if s.isna().all():
                df[col] = s.astype(float)
                continue
            raise KtgError(f"{what}: column {col!r} holds {s.dtype} values, "
                           f"not numbers")
        if kind == "str" and not s.map(lambda v: isinstance(v, str)).all():
            raise KtgError(f"{what}: column {col!r} holds values that are not "
                           f"text")
    return df
