"""`run.json`, read as data: every field the report, query and resume read is checked.

A run directory is something people share, so its `run.json` is checked like any other
file from outside: JSON that parses (safeload.read_json), the known top-level fields of
the right type, and the search config through `SearchConfig.from_dict` (every field typed
and bounded, checks.py; a flat config written before the `train` and `space` sections
reads too, config.py). A `grace_period` of 0 or a `reduction_factor` of 1, which sent
the report's ASHA table into an endless loop, is then one message naming the file.
Fields this version does not know are left alone (a newer ktg may add some).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..files.fileio import is_uri

from ..files.fileio import RUN_FILE
MAX_RUN_JSON_BYTES = 4 * 2 ** 20
# top-level text fields -> required?; the config and space_size are checked on their own
_TEXT_FIELDS = {"name": True, "storage": False, "study_name": False, "tune_path": False,
                "created": False}


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """`RUN/run.json` as a dict whose `config` is the checked `SearchConfig`; KtgError
    naming the file and the first bad field."""
    from ..files.checks import Text
    from ..files.safeload import read_json
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
    from .config import SearchConfig
    cfg = SearchConfig.from_dict(info["config"], where=f"{where}: config")
    return {**info, "config": cfg}


@dataclass
class RunInfo:
    """run.json: what a run directory says about itself."""
    name: str
    config: Any                  # a SearchConfig
    storage: str
    study_name: str
    tune_path: str


def resume_info(run_dir: Path, allow_external: bool = False) -> RunInfo:
    """run.json of a run directory to resume, checked field by field.

    Storage locations must lie inside the run directory: a run directory received from
    someone else must not send Tune, Optuna or our own writes elsewhere. A local Tune
    path is the run directory itself (wherever it was created); a URI (s3://, gs://) or an
    Optuna storage outside the run directory needs `allow_external`
    (`--allow-external-storage`).
    """
    f = run_dir / RUN_FILE
    info = read_run_info(run_dir)  # parsed as data, every field typed and bounded
    for key in ("storage", "study_name"):
        if not info.get(key):
            raise KtgError(f"{str(f)!r}: `{key}` is missing; a run directory written by "
                           f"`ktg search` has it")
    cfg = info["config"]
    tune_path, storage = info.get("tune_path", str(run_dir)), info["storage"]
    if not isinstance(tune_path, str):
        raise KtgError(f"{str(f)!r}: `tune_path` must be a string, got {tune_path!r}")
    outside = []
    if is_uri(tune_path):
        outside.append(f"tune_path {tune_path!r}")
    else:  # a local experiment is the run directory itself, wherever it was made
        tune_path = str(run_dir)
    storage, inside = own_study_storage(storage, run_dir)
    if not inside:
        outside.append(f"storage {storage!r}")
    if outside and not allow_external:
        raise KtgError(f"{str(f)!r} points outside the run directory ({'; '.join(outside)}); "
                       f"a run directory from elsewhere must not redirect the search. If "
                       f"this is your own cluster's storage, resume with "
                       f"--allow-external-storage")
    if outside:  # confirmed by the user: as recorded
        tune_path, storage = info.get("tune_path", str(run_dir)), info["storage"]
    return RunInfo(info["name"], cfg, storage, info["study_name"], tune_path)


def own_study_storage(storage: str, run_dir: Path) -> tuple[str, bool]:
    """(URL, inside): the run's own Optuna study wherever the run directory now is (the
    default SQLite file, or a journal file inside it), else the URL as recorded and
    False: a study elsewhere, which a received run.json must not open unasked."""
    db = run_dir / "optuna.db"
    if storage.startswith("sqlite:///") and Path(storage[len("sqlite:///"):]).name == db.name:
        return f"sqlite:///{db}", True
    if storage.startswith("journal:") and _inside(Path(storage[len("journal:"):]), run_dir):
        return storage, True
    return storage, False


def _inside(path: Path, root: Path) -> bool:
    try:
        path.expanduser().resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False
