"""Crash points for the kill-anywhere test of `ktg search --resume`.

Inert unless the environment variable `KTG_FAILPOINT` is `NAME:N`: then the N-th time the
driver passes the point NAME, the process SIGKILLs itself, exactly there. `NAME:N:stop`
SIGSTOPs it there instead: the search is frozen mid-way (its trials still running in Ray)
for a test to read it, then kill or continue it. A kill at a
random time lands mostly in the long, boring stretches (training); a named point lands
in the short windows that matter (between two writes), every time. The points:

    startup        run.json written, nothing else yet
    suggested      a trial asked of the Optuna study (RUNNING there), before Tune runs it
    result         a trial's epoch result appended to the journal
    last-result    the same for a trial's last epoch (before Tune ends the trial)
    mid-result     the same for an epoch after the first and before the last (the trial
                   has a checkpoint newer than its start and epochs still to train)
    trial-told     the study told a trial finished, before its row is written
    row-journaled  the row appended to the journal, before the parquet tables
    tables-written the parquet tables rewritten after a finished trial
    final          every trial done, before the final tables and summary
    compress-run   `ktg compress --no-ray`: a run's folder written, before the next run
    compare-run    `ktg compare`: a run's folder written, before the next (on Ray: before
                   the next finished run is taken)
"""
from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def hit(name: str) -> None:
    """Count a pass through point `name`; die here if KTG_FAILPOINT says so."""
    spec = os.environ.get("KTG_FAILPOINT")
    if not spec:
        return
    want, _, rest = spec.partition(":")
    if want != name:
        return
    n, _, how = rest.partition(":")
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(n or 1):
        os.kill(os.getpid(), signal.SIGSTOP if how == "stop" else signal.SIGKILL)
