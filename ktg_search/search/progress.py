"""What a person sees of a search: one status line, one line per finished trial.

The same numbers come from a running search (`ProgressCallback`, fed by Tune's events)
and from a run directory's files (`snapshot_of_run`, for `ktg status`): trials finished /
running / planned, stopped by ASHA, duplicates, errors, the best objective so far and its
trial, elapsed time and an ETA. On a terminal the status line updates in place (tqdm);
elsewhere (a log, CI) it is printed every `interval_s` seconds.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from typing import IO

from ..method.trainability import dead_nodes_named
from ..results.book import FINISHED, ResultsBook


@dataclass
class Snapshot:
    planned: int
    finished: int
    running: int
    stopped: int
    duplicates: int
    errors: int
    best: float | None
    best_id: str | None
    elapsed_s: float
    eta_s: float | None
    alive: bool = True
    untrainable: int = 0  # recorded with 0 epochs, never trained (trainability.py)

    def line(self) -> str:
        best = f"best {self.best:.3f} ({self.best_id})" if self.best is not None \
            else "best -"
        eta = _hms(self.eta_s) if self.eta_s is not None else "-"
        return (f"{self.finished}/{self.planned} finished · {self.running} running · "
                f"{self.stopped} stopped by ASHA · {self.duplicates} duplicate · "
                + (f"{self.untrainable} untrainable · " if self.untrainable else "") +
                f"{self.errors} error · {best} · {_hms(self.elapsed_s)} elapsed · ETA {eta}")


@dataclass(frozen=True)
class Schedule:
    """What the ETA needs of a search's ASHA (epochs as its time unit): a trial's epochs,
    the first rung, the reduction factor and how many baseline trials the search holds
    (they train every epoch)."""
    epochs: int
    grace_period: int
    reduction_factor: float
    baselines: int = 0

    @classmethod
    def of(cls, config: dict, baselines: int = 0) -> "Schedule | None":
        """From a search config as run.json holds it (`config`); None when its time unit
        is not epochs (steps or images: the rungs then depend on the data set's size) or
        a field is missing."""
        train = config.get("train") if isinstance(config.get("train"), dict) else config
        try:
            if config.get("time_unit", "epochs") != "epochs":
                return None
            return cls(int(train["epochs"]), int(config.get("grace_period", 1)),
                       float(config.get("reduction_factor", 2)), baselines)
        except (KeyError, TypeError, ValueError):
            return None

    def epochs_per_trial(self) -> float:
        """Expected epochs of a searched trial once ASHA's rungs hold results. Tune's
        rungs are grace * rf**i below the last epoch; each keeps the top 1/rf of what
        reached it, so a trial trains to the first rung, and on to each next boundary
        with probability rf**-(i+1). (The first trials of a search, with empty rungs, run
        longer: the estimate is low then and right once the rungs fill.)"""
        g, rf, t = self.grace_period, self.reduction_factor, self.epochs
        bounds = [g * rf ** i for i in range(64) if g * rf ** i < t] + [t]
        return bounds[0] + sum((bounds[i] - bounds[i - 1]) * rf ** -i
                               for i in range(1, len(bounds)))


def eta_by_epochs(rows: list[dict], schedule: Schedule, planned: int,
                  parallel: int) -> float | None:
    """Seconds left: the epochs still to train (the baselines not finished at every
    epoch, each other trial left at `Schedule.epochs_per_trial`, times the share of
    searched trials that trained at all: untrainable graphs and duplicates train none)
    at the seconds per trial-epoch the finished trials took (their wall time over their
    epochs), `parallel` trials at a time. None before a trial has trained."""
    trained = [r for r in rows if isinstance(r.get("epochs"), (int, float)) and r["epochs"] > 0
               and isinstance(r.get("wall_s"), (int, float)) and math.isfinite(r["wall_s"])]
    epochs = sum(r["epochs"] for r in trained)
    if not epochs:
        return None
    per_epoch = sum(r["wall_s"] for r in trained) / epochs
    searched = [r for r in rows if not r.get("baseline")]
    share = (sum(r.get("status") in FINISHED for r in searched) / len(searched)
             if searched else 1.0)
    baselines_left = max(0, schedule.baselines - (len(rows) - len(searched)))
    searched_left = max(0, planned - len(rows) - baselines_left)
    work = (baselines_left * schedule.epochs +
            searched_left * share * schedule.epochs_per_trial())
    return work * per_epoch / max(1, parallel)


def _hms(s: float) -> str:
    s = int(max(0, s))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def snapshot(book: ResultsBook, planned: int, running: int, start: float,
             finished_at_start: int, now: float | None = None,
             schedule: Schedule | None = None, parallel: int | None = None) -> Snapshot:
    """The numbers of the status line from the book's rows. The ETA: with a `schedule`,
    `eta_by_epochs` (`parallel` trials at a time, default `running`); without one, the
    trials left at the pace of the trials finished since `start` (which overstates a
    search under ASHA many times while its first, long trials finish)."""
    now = time.time() if now is None else now
    rows = list(book.rows.values())
    status = [r.get("status") for r in rows]
    scored = [r for r in rows if r.get("status") != "duplicate" and
              isinstance(r.get("objective"), (int, float)) and math.isfinite(r["objective"])]
    top = max(scored, key=lambda r: r["objective"], default=None)
    finished = len(rows)
    done_here = finished - finished_at_start
    elapsed = now - start
    if schedule is not None:
        eta = eta_by_epochs(rows, schedule, planned,
                            running if parallel is None else parallel)
    else:
        eta = (planned - finished) * elapsed / done_here if done_here > 0 else None
    return Snapshot(planned=planned, finished=finished, running=running,
                    stopped=status.count("stopped"), duplicates=status.count("duplicate"),
                    errors=status.count("error"), untrainable=status.count("untrainable"),
                    best=None if top is None else float(top["objective"]),
                    best_id=None if top is None else top["trial_id"],
                    elapsed_s=elapsed, eta_s=eta if finished < planned else 0.0)


def short_reason(status: str, reason: str) -> str:
    """The trial line's words for why a trial did not train. An untrainable graph's
    reason names every edge of every dead node (several hundred characters for k = 3); the
    line names the dead nodes only, and the whole reason stays in the results table's
    `error` column (`ktg query RUN --where "status == 'untrainable'"`)."""
    nodes = dead_nodes_named(reason) if status == "untrainable" else []
    if not nodes:
        return reason
    which = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {', '.join(map(str, nodes))}"
    return f"{which}: output layer never trained; the full reason is in the results table"


def trial_line(row: dict, planned: int, finished: int) -> str:
    obj = row.get("objective")
    obj = f"{obj:.3f}" if isinstance(obj, (int, float)) and math.isfinite(obj) else "-"
    extra = f" of {row['duplicate_of']}" if row.get("duplicate_of") else ""
    err = (f"  ({short_reason(str(row.get('status')), str(row['error']))})"
           if row.get("error") else "")
    base = f"  baseline {row['baseline']}" if row.get("baseline") else ""
    return (f"[{finished}/{planned}] {row['trial_id']}  {row['status']:<9}{extra}  "
            f"epochs {row.get('epochs', 0)}  objective {obj}{base}{err}")


def _terminal_width(out) -> int:
    """Columns of the terminal `out` is, or 0 (not a terminal, or one without a size, as
    some CI pseudo-terminals are: a status line drawn there would be empty)."""
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else 0
    except (AttributeError, OSError, ValueError):
        return 0


class ProgressView:
    """The status line and the trial lines of a running search (driven by the search's
    Tune callback: `trial_started`, `trial_finished`, `tick` on every step, `close`)."""

    def __init__(self, book: ResultsBook, planned: int, out: IO[str] | None,
                 interval_s: float = 30.0, schedule: Schedule | None = None) -> None:
        self.book, self.planned, self.out = book, planned, out
        self.schedule = schedule
        self.parallel = 0  # the most trials seen running at once: the ETA's concurrency
        self.interval_s = interval_s
        self.tty = _terminal_width(out) > 0
        self.running: set[str] = set()
        self.start = time.time()
        self.finished_at_start = len(book.rows)
        self._bar = None
        self._last = time.monotonic()  # the first plain line after interval_s

    def __getstate__(self):  # Tune pickles its callbacks; a live bar or stream does not
        return {**self.__dict__, "_bar": None, "out": None}

    def snapshot(self) -> Snapshot:
        return snapshot(self.book, self.planned, len(self.running), self.start,
                        self.finished_at_start, schedule=self.schedule,
                        parallel=self.parallel)

    def _draw(self, force: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=self.planned, file=self.out, bar_format="{desc}",
                                 dynamic_ncols=True, leave=True)
            if force or now - self._last >= 1.0:
                self._last = now
                self._bar.set_description_str(self.snapshot().line())
        elif force or now - self._last >= self.interval_s:
            self._last = now
            print(self.snapshot().line(), file=self.out, flush=True)

    def _say(self, text: str) -> None:
        if self.out is None:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def trial_started(self, tune_id: str) -> None:
        self.running.add(tune_id)
        self.parallel = max(self.parallel, len(self.running))
        self._draw()

    def trial_finished(self, tune_id: str, row: dict) -> None:
        self.running.discard(tune_id)
        self._say(trial_line(row, self.planned, len(self.book.rows)))
        self._draw(force=self.tty)

    def tick(self) -> None:
        self._draw()

    def close(self) -> None:
        if self._bar is not None:
            self._draw(force=True)
            self._bar.close()
            self._bar = None


# ---- a run directory's snapshot (`ktg status`) ----------------------------------------------
def driver_alive(event: dict) -> bool | None:
    """Whether the driver that wrote a start event runs: None when it ran elsewhere."""
    if event.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(event.get("pid", -1)), 0)
        return True
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:  # exists, another user's
        return True


def snapshot_of_run(book: ResultsBook, planned: int, stale_s: float = 600.0,
                    schedule: Schedule | None = None) -> Snapshot:
    """The status line's numbers from a run directory's files (the journal included).

    Running trials are those with results but no row, while the search's driver is
    alive (same machine: its pid; elsewhere: a journal event in the last `stale_s`); they
    are also the ETA's concurrency under a `schedule`."""
    starts = book.events
    now = time.time()
    last_event = max([book.last_time] + [e.get("time", 0) for e in starts], default=0)
    if starts:
        alive = driver_alive(starts[-1])
        if alive is None:
            alive = now - last_event < stale_s
        start, before = float(starts[-1]["time"]), int(starts[-1].get("finished_before", 0))
        first = float(starts[0]["time"])
    else:
        alive, start, before, first = False, now, 0, now
    running = len([t for t in book.started if t not in book.rows]) if alive else 0
    snap = snapshot(book, planned, running, start, before, now=now if alive else last_event,
                    schedule=schedule)
    snap.elapsed_s = (now if alive else last_event) - first
    snap.alive = alive
    if not alive:
        snap.eta_s = None if snap.finished < planned else 0.0
    return snap
