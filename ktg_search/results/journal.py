"""Reading a search's journal (`journal.jsonl`): what a killed driver leaves behind, read
as data however it was made (results/book.py replays it over the tables)."""
from __future__ import annotations

from pathlib import Path

from ..files.fileio import JOURNAL_FILE


def read_journal(run_dir: str | Path) -> list[dict]:
    """The events of a run's journal, oldest first. A line the writer did not finish (it
    was killed mid-write) is skipped: every event before it is intact. So is a line that
    is not an event ktg writes (`schemas.journal_event`: a field missing or of the wrong
    type, nested too deeply, a duplicate key, over a MB): a journal edited or made
    elsewhere is read for what it holds, never a traceback. KtgError for a journal over
    `MAX_JOURNAL_BYTES` (not read)."""
    from ..files.safeload import loads
    from ..files.schemas import MAX_JOURNAL_BYTES, MAX_JOURNAL_LINE, check_size, \
        journal_event
    f = Path(run_dir) / JOURNAL_FILE
    events = []
    try:
        check_size(f, "journal", MAX_JOURNAL_BYTES)
        with open(f, "rb") as fh:
            while line := fh.readline(MAX_JOURNAL_LINE + 1):
                if len(line) > MAX_JOURNAL_LINE:  # skip the rest of an oversized line
                    while line and not line.endswith(b"\n"):
                        line = fh.readline(MAX_JOURNAL_LINE)
                    continue
                try:
                    e = journal_event(loads(line))
                except (ValueError, RecursionError):
                    continue
                if e is not None:
                    events.append(e)
    except FileNotFoundError:
        pass
    return events
