"""`ktg compress`'s one status line: runs finished / total, running, resumed, elapsed,
ETA. On a terminal it is redrawn in place every second (tqdm); elsewhere (a log, CI) it
is printed when a run finishes and once a minute. `verbose`: a line per finished run."""
from __future__ import annotations

import json
import sys
import threading
import time

from ..search.progress import _hms


class StatusLine:
    """One line: runs finished / total, running, resumed, elapsed, ETA (see above)."""

    def __init__(self, total: int, done_before: int, parallel: int, verbose: bool,
                 enabled: bool = True) -> None:
        self.total, self.before, self.parallel = total, done_before, parallel
        self.finished, self.verbose, self.enabled = done_before, verbose, enabled
        self.start = time.time()
        self.err = sys.stderr  # the terminal's, before Ray's output is sent to the log
        self.tty = enabled and self.err.isatty()
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start_ticking(self) -> None:
        """Redraw the line (elapsed, ETA) while runs train: every second on a terminal,
        every minute elsewhere."""
        if not self.enabled:
            return
        every = 1.0 if self.tty else 60.0

        def tick() -> None:
            while not self._stop.wait(every):
                self.draw()
        self._ticker = threading.Thread(target=tick, name="compress-status", daemon=True)
        self._ticker.start()

    def line(self) -> str:
        left = self.total - self.finished
        elapsed = time.time() - self.start
        here = self.finished - self.before
        eta = _hms(left * elapsed / here) if here else "-"
        resumed = f" · {self.before} resumed" if self.before else ""
        return (f"compress: {self.finished}/{self.total} runs finished · "
                f"{min(left, self.parallel)} running{resumed} · {_hms(elapsed)} elapsed · "
                f"ETA {eta if left else '0m00s'}")

    def draw(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._draw()

    def _draw(self) -> None:
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=self.total, file=self.err, bar_format="{desc}",
                                 dynamic_ncols=True, leave=True)
            self._bar.set_description_str(self.line())
        else:
            print(self.line(), file=self.err, flush=True)

    def finished_run(self, job) -> None:
        """A run's folder is complete: count it (and, verbose, say how it did)."""
        with self._lock:
            self.finished += 1
            if self.verbose and self.enabled:
                text = f"  {job.label}: {_run_words(job)}"
                if self._bar is not None:
                    self._bar.write(text, file=self.err)
                else:
                    print(text, file=self.err, flush=True)
        self.draw()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _run_words(job: Job) -> str:
    try:
        s = json.loads((job.run_dir / "summary.json").read_text())
        i = 0 if job.scheme == "gan" else 1
        return (f"IS {s['best_is'][i]:.3f} at epoch {s['best_epoch'][i]}, "
                f"{s['wall_s']:.0f} s")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "done"
