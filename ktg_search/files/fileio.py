"""Files of a run: their names, and the one way they are written (atomically).

Depends on nothing else in the package, so that every module can write files the same
way: a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
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
# a run outside a search (`ktg train`, `ktg compare`): its files, and a comparison's table
RUN_FILES = ("summary.json", "metrics.csv", "graph.json")
TABLE_MD, TABLE_CSV = "table.md", "table.csv"


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


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (a teacher checkpoint's identity: its path may
    differ between machines and runs, its bytes may not)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_parquet(df, path: Path) -> None:
    """A DataFrame as a Parquet file, atomically."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


# ---- checkpoints of a search's trials ------------------------------------------------
def find_checkpoints(tune_path: str, trial_ids: set[str] | None = None
                     ) -> dict[str, list[tuple[int, str]]]:
    """(epoch, checkpoint directory) of each (logical) trial, newest epoch first.

    Scans `tune_path/*/checkpoint_*/trial.json` (a local directory or a URI pyarrow opens):
    a trial re-run by a resumed search writes its checkpoints under a new Tune trial
    directory, but `trial.json` names the trial it belongs to.
    """
    import pyarrow.fs as pafs
    try:
        fs, base = pafs.FileSystem.from_uri(tune_path) if is_uri(tune_path) else \
            (pafs.LocalFileSystem(), str(Path(tune_path).resolve()))
        tops = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except (OSError, ValueError):
        return {}
    found: dict[str, list[tuple[int, str]]] = {}
    for top in tops:
        if top.type != pafs.FileType.Directory:
            continue
        for ck in fs.get_file_info(pafs.FileSelector(top.path, allow_not_found=True)):
            if ck.type != pafs.FileType.Directory or \
                    not ck.base_name.startswith("checkpoint_"):
                continue
            try:
                with fs.open_input_stream(f"{ck.path}/{CHECKPOINT_INFO}") as fh:
                    # a few hundred bytes when ktg wrote it: read no more than 64 kB, and
                    # a file nested too deeply (RecursionError) is skipped like any other
                    info = json.loads(fh.read(1 << 16))
                tid, epoch = info["trial_id"], info["epoch"]
                if not isinstance(tid, str) or isinstance(epoch, bool) or \
                        not isinstance(epoch, int):
                    continue
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                continue
            if trial_ids is None or tid in trial_ids:
                uri = ck.path if not is_uri(tune_path) else \
                    f"{tune_path.split('://', 1)[0]}://{ck.path}"
                found.setdefault(tid, []).append((epoch, uri))
    return {t: sorted(v, reverse=True) for t, v in found.items()}


def latest_checkpoint(run_dir: str | Path, trial_id: str) -> Path | None:
    """The newest `trainer.pt` kept for a trial (it holds the best epoch's weights too,
    see `Trainer.best_generators`), or None. Only files inside the run directory: a
    shared run's links lead nowhere."""
    if not isinstance(trial_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", trial_id):
        return None
    root = Path(run_dir).resolve()
    for _, d in find_checkpoints(str(root), {trial_id}).get(trial_id, []):
        f = Path(d) / CHECKPOINT_FILE
        if f.is_file() and root in f.resolve().parents:
            return f
    # a run written before checkpoints carried trial.json: Tune's directory names
    found = sorted((p for p in root.glob(f"*{trial_id}*/checkpoint_*/{CHECKPOINT_FILE}")
                    if root in p.resolve().parents), key=lambda p: p.parent.name)
    return found[-1] if found else None
