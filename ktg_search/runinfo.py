"""`run.json`, read as data: every field the report, query and resume read is checked.

A run directory is something people share, so its `run.json` is checked like any other
file from outside: JSON that parses (safeload.read_json), the known top-level fields of
the right type, and the search config through `SearchConfig.from_dict` (every field typed
and bounded, checks.py). A `grace_period` of 0 or a `reduction_factor` of 1, which sent
the report's ASHA table into an endless loop, is then one message naming the file.
Fields this version does not know are left alone (a newer ktg may add some).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import KtgError

from .fileio import RUN_FILE
MAX_RUN_JSON_BYTES = 4 * 2 ** 20
# top-level text fields -> required?; the config and space_size are checked on their own
_TEXT_FIELDS = {"name": True, "storage": False, "study_name": False, "tune_path": False,
                "created": False}


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """`RUN/run.json` as a dict whose `config` is a checked SearchConfig's fields;
    KtgError naming the file and the first bad field."""
    from .checks import Text
    from .safeload import read_json
    run = Path(run_dir)
    f = run / RUN_FILE
    if not f.is_file():
        raise KtgError(f"{str(run)!r} is not a run directory (no {RUN_FILE}); a run "
                       f"directory is what `ktg search` prints as 'run dir'")
    info = read_json(f, "run file", MAX_RUN_JSON_BYTES)
    where = str(f)
    if not isinstance(info, dict):
        raise KtgError(f"{where}: must be a JSON object, got {type(info).__name__}; is this "
                       f"a run directory?")
    if not isinstance(info.get("config"), dict):
        raise KtgError(f"{where} has no `config` object; is this a run directory?")
    text = Text()
    for name, required in _TEXT_FIELDS.items():
        if name in info or required:
            text(name, info.get(name), where)
    size = info.get("space_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise KtgError(f"{where}: The value of `space_size` is {str(size)[:40]!r}, but must "
                       f"be an integer >= 1")
    from .search import SearchConfig
    cfg = SearchConfig.from_dict(info["config"], where=f"{where}: config")
    return {**info, "config": asdict(cfg)}
