"""The run as the report reads it: `RunView` (run.json, the tables, the ranking) and
`Missing`, what a section raises when the run does not hold what it needs.

Everything is read once, in `open_run`, and checked as data (runinfo.py, the results
readers); the view is immutable, so every section sees the same run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..results import load_history, load_results
from .tables import ranked_trials


class Missing(Exception):
    """A part that cannot be drawn from what the run holds; the message is the note."""


@dataclass(frozen=True, eq=False)
class RunView:
    """One run directory, read: `info` is run.json, `cfg` its search config, `results`
    one row per trial, `history` one row per trial and epoch, `ranked` the results in
    ranking order (`tables.ranked_trials`)."""
    path: Path
    info: dict
    cfg: dict
    results: Any
    history: Any
    ranked: Any

    @property
    def k(self) -> int:
        return int(self.cfg.get("k", 0) or 0)

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.path.name))


def open_run(run: str | Path) -> RunView:
    """Read a run directory; KtgError when it is not one."""
    p = Path(run).expanduser()
    if not p.exists():
        raise KtgError(f"run directory {str(p)!r} does not exist; a run directory is what "
                       f"`ktg search` prints as 'run dir'")
    if not p.is_dir():
        raise KtgError(f"{str(p)!r} is a file, not a run directory; a run directory is "
                       f"what `ktg search` prints as 'run dir'")
    from ..runinfo import read_run_info
    info = read_run_info(p)  # every field checked (types, ranges)
    results = load_results(p)
    history = load_history(p)
    return RunView(p.resolve(), info, info["config"], results, history,
                   ranked_trials(results))


def load_run_data(run: RunView):
    """The data set the run searched on (its name, image size and data root)."""
    from ..data import load_dataset
    c = run.cfg
    return load_dataset(c.get("dataset", "digits"), int(c.get("image_size", 16)),
                        root=c.get("data_root"))
