"""What a file from elsewhere may hold, in one place: names, journal rows, sizes, text.

A run directory, a config or a graph file may come from a colleague, a cluster node or
someone careless. Everything here answers one question about such a value: is it a
plain name (`plain_name`), a journal event of a known shape (`journal_event`), a file
small enough to read (`check_size`), text safe to print on a terminal (`for_terminal`)?
Readers and printers call these instead of each deciding on its own.

May import: `ktg_search.errors` only (the bottom layer, like the rest of files/).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from ..errors import KtgError, for_terminal  # for_terminal: the one escaper, in errors.py so
# that cli.py (which may import only errors) uses it too

# sizes a file of each kind never reaches when ktg wrote it (a search of 10,000 trials of
# 200 epochs writes a journal of about 400 MB)
MAX_JOURNAL_BYTES = 1 << 30
MAX_JOURNAL_LINE = 1 << 20       # one event; a result row is a few kB
MAX_TABLE_BYTES = 256 << 20      # a baseline table.csv is a few kB

# ---- names ---------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]{0,127}")


def plain_name(value: Any, what: str) -> str:
    """`value` if it is a plain name (letters, digits, and . _ + = @ , - after the first
    character; no `/`, no `..`, no NUL or control characters, at most 128 characters):
    something that names one file or folder inside the one it is put in. KtgError
    naming the value otherwise."""
    if isinstance(value, str) and _NAME.fullmatch(value) and ".." not in value:
        return value
    raise KtgError(f"{what} {for_terminal(repr(value))[:160]} is not a plain name: use "
                   f"letters, digits and . _ + = @ , - (no '/', no '..', at most 128 "
                   f"characters, starting with a letter or digit)")


# ---- sizes ---------------------------------------------------------------------------------
def check_size(path: str | Path, what: str, max_bytes: int) -> int:
    """The size of the file at `path`; KtgError naming it when it is over `max_bytes`
    (a file ktg wrote never is: this one was made elsewhere, or by mistake)."""
    size = os.stat(path).st_size
    if size > max_bytes:
        raise KtgError(f"{what} {for_terminal(str(path))!r} is {size:,} bytes; a {what} "
                       f"is at most {max_bytes:,}, so it was not read")
    return size


# ---- journal events ------------------------------------------------------------------------
def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 62


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (str, bool)) or (
        isinstance(x, (int, float)) and (not isinstance(x, int) or abs(x) < 1 << 62))


_ROW_TEXT = ("trial_id", "status", "graph", "graph_key", "duplicate_of", "error")
# each kind of event and the fields it must have, of these types (journal_start, on_start,
# on_result, on_complete in results/book.py write them)
_EVENT_FIELDS = {
    "start": {"time": _num, "planned": _int, "pid": _int, "host": lambda v: isinstance(
        v, str), "finished_before": _int},
    "trial-start": {"time": _num, "trial_id": lambda v: isinstance(v, str)},
    "result": {"time": _num, "trial_id": lambda v: isinstance(v, str),
               "result": lambda v: isinstance(v, dict) and all(
                   isinstance(k, str) and _scalar(x) for k, x in v.items())},
    "row": {"time": _num, "row": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _scalar(x) for k, x in v.items()) and isinstance(
        v.get("trial_id"), str) and isinstance(v.get("status"), str) and all(
        isinstance(v.get(k), str) or v.get(k) is None for k in _ROW_TEXT)},
}

# fields an event may lack (journals written before they existed), checked when present
_OPTIONAL_FIELDS = {"start": {"resumed": lambda v: isinstance(v, bool)}}


def journal_event(e: Any) -> dict | None:
    """`e` if it is a journal event of a known kind with every field of the right type,
    else None: the reader skips it, as it skips a line a killed writer left unfinished.
    (An event ktg wrote always passes; one that fails was edited or made elsewhere.)"""
    if not isinstance(e, dict):
        return None
    fields = _EVENT_FIELDS.get(e.get("event")) if isinstance(e.get("event"), str) else None
    if fields is None:
        return None
    for key, ok in fields.items():
        if key not in e or not ok(e[key]):
            return None
    for key, ok in _OPTIONAL_FIELDS.get(e["event"], {}).items():
        if key in e and not ok(e[key]):
            return None
    return e


# ---- where ktg writes ----------------------------------------------------------------------
def writable_inside(path: str | Path, root: str | Path, what: str) -> Path:
    """`path`, checked as a place ktg may write inside `root` (an output folder or run
    directory it was given): not a symbolic link (a link someone left in a shared run
    directory would carry the write to wherever it points), and inside `root` once the
    folders above it are resolved. KtgError naming the path otherwise; nothing written."""
    p, base = Path(path), Path(root).resolve()
    if p.is_symlink():
        raise KtgError(f"{what} {for_terminal(str(p))!r} is a symbolic link; ktg does not "
                       f"write through links in {for_terminal(str(root))!r} (the write "
                       f"would land where it points): remove the link")
    parent = p.parent.resolve()
    if parent != base and base not in parent.parents:
        raise KtgError(f"{what} {for_terminal(str(p))!r} is outside "
                       f"{for_terminal(str(root))!r}, the folder ktg was given to write in")
    return p


# ---- an Optuna study database from elsewhere -------------------------------------------------
STUDY_TABLES = ("studies", "trials", "trial_params", "trial_values")
SQLITE_STEPS = 10_000_000  # SQLite virtual-machine steps a look at its schema may take


def check_study_database(path: str | Path) -> None:
    """KtgError unless `path` is an SQLite file holding Optuna's tables as real tables:
    opened read-only (nothing written, not even to an empty file, which Optuna would
    fill with tables), with a bound on the work SQLite may do, and refusing a view where
    a table belongs (a recursive view can keep every query on it busy forever)."""
    import sqlite3
    p = Path(path)
    where = f"the study database {for_terminal(str(p))!r}"
    if p.is_symlink():
        raise KtgError(f"{where} is a symbolic link; not opened")
    if not p.is_file() or p.stat().st_size == 0:
        raise KtgError(f"{where} is {'empty' if p.is_file() else 'not a file'}: no study "
                       f"was written there; not opened (it is left as it is)")
    steps = [0]

    def budget() -> int:  # called every 1000 steps; non-zero interrupts the statement
        steps[0] += 1000
        return int(steps[0] > SQLITE_STEPS)
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        raise KtgError(f"{where} cannot be opened: {e}") from None
    try:
        con.set_progress_handler(budget, 1000)
        kinds = dict(con.execute(
            "SELECT name, type FROM sqlite_master WHERE name IN (?, ?, ?, ?)",
            STUDY_TABLES).fetchall())
    except sqlite3.Error as e:
        raise KtgError(f"{where} is not a readable SQLite database ({e})") from None
    finally:
        con.close()
    for t in STUDY_TABLES:
        if kinds.get(t) != "table":
            raise KtgError(f"{where} is not an Optuna study database: {t!r} is "
                           f"{'missing' if t not in kinds else 'a ' + str(kinds[t])}, "
                           f"where Optuna keeps a table; not opened")
