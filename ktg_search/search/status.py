"""`ktg status RUN`: a running or finished search, from its files alone.

Reads run.json, the tables and the journal (which the driver appends to as results
arrive), so it works while the search runs in another process or on another machine
that shares the run directory, and after it was killed. No Ray, no Optuna: it is quick.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from ..errors import KtgError
from .progress import Schedule, snapshot_of_run
from ..files.safeload import read_json
from ..files.schemas import for_terminal
from ..results.book import ResultsBook
from ..method.scoring import objective_rule


MAX_WATCH_S = 86400


def planned_trials(run: Path) -> tuple[str, int, object, dict]:
    """(name, planned trials, the objective's name as written, None when absent, the
    search config) from run.json; KtgError when it is not a run directory."""
    f = run / "run.json"
    if not f.exists():
        raise KtgError(f"{str(run)!r} is not a run directory (no run.json); a run "
                       f"directory is what `ktg search` prints as 'run dir'")
    info = read_json(f, "run file")  # bounded, duplicate keys refused, one message
    if not isinstance(info, dict):
        raise KtgError(f"{str(f)!r} is not a run file (a JSON object)")
    cfg = info.get("config") if isinstance(info, dict) else None
    n = cfg.get("num_trials") if isinstance(cfg, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise KtgError(f"{str(f)!r}: config.num_trials must be an integer >= 1, got {n!r}")
    name = info.get("name") if isinstance(info.get("name"), str) else run.name
    # read raw, not through config.nested, which would import torch: status starts fast.
    # A nested run.json has the field in `train`; an old flat one at the top.
    train = cfg.get("train")
    objective = train.get("objective") if isinstance(train, dict) else cfg.get("objective")
    return name, n, objective, cfg


def status_text(run: Path, top: int = 5) -> tuple[str, bool]:
    """The status block of a run and whether its search is still going."""
    name, searched, objective, cfg = planned_trials(run)
    book = ResultsBook(run)
    # the driver's count (its baselines too) once it has started; run.json's before
    starts = [e.get("planned") for e in book.events]
    planned = starts[-1] if starts and isinstance(starts[-1], int) else searched
    snap = snapshot_of_run(book, planned,
                           schedule=Schedule.of(cfg, baselines=max(0, planned - searched)))
    state = "running" if snap.alive and snap.finished < planned else \
        "finished" if snap.finished >= planned else "not running (resume with " \
        f"`ktg search --resume {run}`)"
    lines = [f"{name}: {state}", snap.line()]
    from ..results.verdict import searching_paid, top_lines
    rows = list(book.rows.values())
    lines += top_lines(rows, objective_rule(objective), top)
    paid = searching_paid(rows)
    if paid:
        lines.append(paid)
    # names, trial ids and keys come from the run's files: escaped for the terminal
    return for_terminal("\n".join(lines)), state == "running"


def run_status(run: str, watch: float | None = None, top: int = 5) -> int:
    path = Path(run).expanduser()
    # a finite number of seconds up to a day: inf, nan and 1e300 overflow time.sleep
    if watch is not None and not (isinstance(watch, (int, float)) and math.isfinite(watch)
                                  and 0 < watch <= MAX_WATCH_S):
        raise KtgError(f"The value of `--watch` is {watch!r}, but must be a number of "
                       f"seconds > 0 and <= {MAX_WATCH_S}")
    while True:
        text, going = status_text(path, top)
        print(text, flush=True)
        if watch is None or not going:
            return 0
        time.sleep(watch)
        print(f"-- {time.strftime('%H:%M:%S')}", flush=True)
