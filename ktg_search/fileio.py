"""Files of a run: their names, and the one way they are written (atomically).

Depends on nothing else in the package, so that every module can write files the same
way: a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

# a search's run directory
RUN_FILE = "run.json"                 # the search config, storage URL and study name
RESULTS_FILE = "results.parquet"      # one row per trial
HISTORY_FILE = "history.parquet"      # one row per trial and epoch
JOURNAL_FILE = "journal.jsonl"        # every event, appended as it happens
LOG_FILE = "search.log"               # Ray's and Tune's own output, unless --verbose
# a trial's checkpoint directory
CHECKPOINT_FILE = "trainer.pt"        # the whole training state (Trainer.state_dict)
CHECKPOINT_INFO = "trial.json"        # beside it: whose checkpoint, which epoch


def is_uri(path: str) -> bool:
    """s3://, gs://, file://: storage pyarrow opens, not a local path."""
    return "://" in str(path)


def umask() -> int:
    """The process's umask, read without changing it (Linux's /proc), else by the
    set-and-restore idiom."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` beside `path`, then rename over it: readers see the old file
    or the new one, never half. The one atomic-write mechanism of the package (torch.save,
    np.savez, parquet and text all go through it). The file gets the mode a plain
    `open(path, "w")` would give (0666 minus the umask), not mkstemp's private 0600:
    colleagues on a shared file system can read the results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_parquet(df, path: Path) -> None:
    """A DataFrame as a Parquet file, atomically."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
