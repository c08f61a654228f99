"""Results files: atomic writes, the results table and the per-epoch history."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .errors import KtgError


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


# ---- the results table ---------------------------------------------------------------------

RESULTS_FILE = "results.parquet"
HISTORY_FILE = "history.parquet"
HISTORY_WRITE_S = 2.0
STATUSES = ("completed", "stopped", "diverged", "error", "duplicate", "skipped")
# the columns query, export and the report read, and their kinds (checked when read)
RESULTS_COLUMNS = {"trial_id": "str", "status": "str", "graph": "str", "graph_key": "str",
                   "objective": "num", "best_epoch": "num", "epochs": "num",
                   "duplicate_of": "str", "error": "str"}
HISTORY_COLUMNS = {"trial_id": "str", "epoch": "num"}


def is_uri(path: str) -> bool:
    return "://" in str(path)


def _write_parquet(df, path: Path) -> None:
    import io
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def load_results(run_dir: str | Path):
    """The results table of a run as a pandas DataFrame, one row per trial.

    Ranked columns: `objective` is the best IS reached (not the last value)."""
    import pandas as pd
    run = Path(run_dir)
    if not (run / "run.json").is_file():
        raise KtgError(f"{str(run)!r} is not a run directory (no run.json); a run directory "
                       f"is what `ktg search` prints as 'run dir'")
    f = run / RESULTS_FILE
    if not f.exists():
        return pd.DataFrame(columns=list(RESULTS_COLUMNS))
    from .safeload import read_parquet
    df = read_parquet(f, "results table", RESULTS_COLUMNS)
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise KtgError(f"results table {str(f)!r}: unknown status {bad[0][:40]!r}; valid: "
                       f"{', '.join(STATUSES)}")
    return df


def load_history(run_dir: str | Path):
    """One row per trial and epoch, as reported to Tune."""
    import pandas as pd
    f = Path(run_dir) / HISTORY_FILE
    if not f.exists():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    from .safeload import read_parquet
    df = read_parquet(f, "history table", HISTORY_COLUMNS)
    if not df.empty and not (df["epoch"].dropna() % 1 == 0).all():
        raise KtgError(f"history table {str(f)!r}: column 'epoch' holds values that are "
                       f"not whole epochs")
    return df


def latest_checkpoint(run_dir: str | Path, trial_id: str) -> Path | None:
    """The newest `trainer.pt` Tune kept for a trial (it holds the best epoch's weights
    too, see `Trainer.best_generators`), or None."""
    # the id comes from a table in a shared run: glob characters or a path in it must not
    # reach files elsewhere (Tune's ids are hex digits, underscores and digits)
    if not isinstance(trial_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", trial_id):
        return None
    root = Path(run_dir).resolve()
    found = sorted((p for p in root.glob(f"*{trial_id}*/checkpoint_*/trainer.pt")
                    if root in p.resolve().parents), key=lambda p: p.parent.name)
    return found[-1] if found else None


def _finite(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


class ResultsBook:
    """The driver-side record of a search: per-epoch history and one row per trial.

    Lives in a Tune callback in the driver (the only writer), so that the files are written
    as trials finish; both files are replaced atomically. Picklable, because Tune pickles
    the run config (and its callbacks) for `Tuner.restore`.
    """

    def __init__(self, run_dir: Path, cfg, mirror: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.mirror = mirror  # a storage URI the files are copied to as well
        self._last_history_write = 0.0
        self.rows: dict[str, dict] = {}
        self.history: dict[tuple[str, int], dict] = {}
        self.reload()

    def reload(self) -> None:
        f, h = self.run_dir / RESULTS_FILE, self.run_dir / HISTORY_FILE
        if f.exists():
            import pandas as pd
            self.rows = {r["trial_id"]: r for r in pd.read_parquet(f).to_dict("records")}
        if h.exists():
            import pandas as pd
            self.history.update({(r["trial_id"], int(r["epoch"])): r
                                 for r in pd.read_parquet(h).to_dict("records")})

    def finished_rows(self) -> list[dict]:
        """Trials whose result a duplicate can reuse (the ledger is seeded with them)."""
        return [r for r in self.rows.values()
                if r["status"] in ("completed", "stopped", "diverged")]

    # ---- events ------------------------------------------------------------------------
    def on_result(self, trial_id: str, result: dict) -> None:
        if "epoch" not in result or result.get("status") in ("duplicate", "skipped"):
            return
        keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))
                and not k.startswith(("config", "time_this", "timestamp", "hostname",
                                      "node_ip", "date", "trial_id", "done",
                                      "training_iteration", "iterations_since",
                                      "checkpoint_dir"))}
        keep["trial_id"] = trial_id
        self.history[(trial_id, int(result["epoch"]))] = keep
        # the history is rewritten while trials run too, at most every few seconds, so a
        # killed driver loses little and running trials can be watched
        now = time.monotonic()
        if now - self._last_history_write >= HISTORY_WRITE_S:
            self._last_history_write = now
            _write_parquet(self.history_frame(), self.run_dir / HISTORY_FILE)

    def on_complete(self, trial_id: str, params: dict, last: dict | None,
                    error: str | None) -> dict:
        from .space import graph_from_params
        cfg, k = self.cfg, self.cfg.k
        params = {p: v for p, v in params.items() if p != "search"}
        row: dict[str, Any] = {"trial_id": trial_id}
        try:
            graph = graph_from_params(params, k, cfg.alpha, 0 if cfg.target_node else None)
            row["graph"], row["graph_key"] = graph.to_json(indent=None), graph.canonical_key()
            row["transfer"] = graph.transfer
        except Exception as e:  # a config we cannot read back is still a row
            row["graph"], row["graph_key"], row["transfer"] = "", "", ""
            error = error or f"bad parameters: {e}"
        row["n_generators"] = k
        for i in range(k):
            row[f"model_{i}"] = params.get(f"model_{i}", "")
        from .graph import Graph
        for s, t in Graph.edge_list(k):
            row[f"gate_{s}_{t}"] = params.get(f"gate_{s}_{t}", "")
        hist = sorted((h for (tid, _), h in self.history.items() if tid == trial_id),
                      key=lambda h: h["epoch"])
        last = last or {}
        row.update(objective=float("nan"), best_epoch=0, epochs=0, duplicate_of="")
        for i in range(k):
            row[f"is_best_g{i}"] = float("nan")
            row[f"fid_g{i}"] = float("nan")
        if hist:
            row["epochs"] = int(hist[-1]["epoch"])
            good = [h for h in hist if math.isfinite(_finite(h.get("objective_now")))]
            if good:
                best = max(good, key=lambda h: h["objective_now"])
                row["objective"], row["best_epoch"] = float(best["objective_now"]), \
                    int(best["epoch"])
                for i in range(k):
                    vals = [_finite(h.get(f"is_g{i}")) for h in good]
                    vals = [v for v in vals if math.isfinite(v)]
                    row[f"is_best_g{i}"] = max(vals) if vals else float("nan")
                    row[f"fid_g{i}"] = _finite(best.get(f"fid_g{i}"))
        if error:
            status = "error"
        elif last.get("status") == "duplicate":
            status = "duplicate"
            row["duplicate_of"] = str(last.get("duplicate_of", ""))
            row["objective"] = _finite(last.get("objective"))
            row["epochs"] = int(last.get("epoch", 0) or 0)
        elif last.get("status") == "skipped":
            status, error = "skipped", str(last.get("reason", "no generator can learn"))
        elif any(h.get("status") == "diverged" for h in hist):
            status = "diverged"
        elif row["epochs"] >= cfg.max_epochs:
            status = "completed"
        else:
            status = "stopped"
        row.update(status=status, seed=cfg.seed, wall_s=_finite(last.get("time_total_s")),
                   error=error or "")
        self.rows[trial_id] = row
        return row

    # ---- output ------------------------------------------------------------------------
    def table(self):
        import pandas as pd
        rows = [dict(r) for r in self.rows.values()]
        by_id = {r["trial_id"]: r for r in rows}
        for r in rows:  # a duplicate shows its original's final numbers
            orig = by_id.get(r.get("duplicate_of") or "")
            if r["status"] == "duplicate" and orig is not None:
                for col in ["objective", "best_epoch", "epochs"] + \
                        [c for c in orig if c.startswith(("is_best_g", "fid_g"))]:
                    r[col] = orig[col]
        df = pd.DataFrame(rows)
        if not df.empty:
            front = ["trial_id", "status", "objective", "best_epoch", "epochs", "graph_key"]
            df = df[front + [c for c in df.columns if c not in front]]
        return df

    def history_frame(self):
        import pandas as pd
        df = pd.DataFrame(list(self.history.values()))
        if not df.empty:
            df = df.sort_values(["trial_id", "epoch"]).reset_index(drop=True)
        return df

    def write(self) -> None:
        _write_parquet(self.table(), self.run_dir / RESULTS_FILE)
        _write_parquet(self.history_frame(), self.run_dir / HISTORY_FILE)
        if self.mirror:
            self.copy_to_mirror()

    def copy_to_mirror(self) -> None:
        """Copy run.json and the tables next to Tune's experiment on shared storage, so
        that every node (and a later `--resume` elsewhere) sees them."""
        import pyarrow.fs
        fs, base = pyarrow.fs.FileSystem.from_uri(self.mirror)
        fs.create_dir(base, recursive=True)
        for name in ("run.json", RESULTS_FILE, HISTORY_FILE):
            src = self.run_dir / name
            if src.exists():
                # write to a temporary name, then move: readers never see half a file
                with fs.open_output_stream(f"{base}/.{name}.tmp") as out:
                    out.write(src.read_bytes())
                fs.move(f"{base}/.{name}.tmp", f"{base}/{name}")

    def summary(self, top: int = 5) -> str:
        df = self.table()
        if df.empty:
            return "no finished trials yet"
        counts = df["status"].value_counts().to_dict()
        lines = [f"{len(df)} trials: " + ", ".join(f"{counts.get(s, 0)} {s}"
                                                  for s in STATUSES if counts.get(s)),
                 f"duplicates (same graph up to renumbering, not retrained): "
                 f"{counts.get('duplicate', 0)}",
                 f"top {top} graphs by objective = best IS reached (not the last value):"]
        best = df[df.status != "duplicate"].sort_values("objective", ascending=False)
        for _, r in best.head(top).iterrows():
            lines.append(f"  {r.trial_id}  objective {r.objective:.3f}  epoch "
                         f"{r.best_epoch}/{r.epochs}  {r.status:<9} key {r.graph_key}")
        return "\n".join(lines)


def error_text(trial) -> str:
    for attr in ("error_msg", "error_file"):
        v = getattr(trial, attr, None)
        if v and attr == "error_file" and Path(str(v)).exists():
            text = Path(str(v)).read_text().strip().splitlines()
            return text[-1] if text else "error"
        if v and attr == "error_msg":
            return str(v).strip().splitlines()[-1]
    return "trial failed"
