"""A search's results: the journal, the results table and the per-epoch history."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..files.fileio import (HISTORY_FILE, JOURNAL_FILE, RESULTS_FILE, RUN_FILE,
                            find_checkpoints, latest_checkpoint, write_parquet)
from ..method.scoring import objective_rule
from .journal import read_journal  # re-exported: tests and tools read journals through here

__all__ = ["ResultsBook", "load_results", "load_history", "read_journal", "error_text",
           "find_checkpoints", "latest_checkpoint"]


# ---- the results table ---------------------------------------------------------------------

HISTORY_WRITE_S = 2.0
# untrainable: a graph some learning node of which can never train its output layer, or
# in which nothing learns (method/trainability.py): recorded at once with 0 epochs;
# skipped: the same for runs written before that rule (nothing learns)
STATUSES = ("completed", "stopped", "diverged", "error", "duplicate", "untrainable",
            "skipped")
FINISHED = ("completed", "stopped", "diverged")  # trained, with a result a duplicate reuses
# the columns query, export and the report read, and their kinds (checked when read)
RESULTS_COLUMNS = {"trial_id": "str", "status": "str", "graph": "str", "graph_key": "str",
                   "objective": "num", "best_epoch": "num", "epochs": "num",
                   "duplicate_of": "str", "error": "str"}
HISTORY_COLUMNS = {"trial_id": "str", "epoch": "num"}


def load_results(run_dir: str | Path):
    """The results table of a run as a pandas DataFrame, one row per trial.

    Ranked columns: `objective` is the best value reached (not the last) of the run's
    `train.objective` (`scoring.objective_rule`). Reads the
    journal too, so a search that is running (or was killed) shows every finished trial.
    """
    import pandas as pd
    run = Path(run_dir)
    if not (run / RUN_FILE).is_file():
        raise KtgError(f"{str(run)!r} is not a run directory (no run.json); a run directory "
                       f"is what `ktg search` prints as 'run dir'")
    from ..files.safeload import check_frame
    df = ResultsBook(run).table()
    if df.empty:
        return pd.DataFrame(columns=list(RESULTS_COLUMNS))
    # rows come from a shared run's files (tables, journal): checked like any input
    df = check_frame(df, f"results of {str(run)!r}", RESULTS_COLUMNS)
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise KtgError(f"results of {str(run)!r}: unknown status {str(bad[0])[:40]!r}; "
                       f"valid: {', '.join(STATUSES)}")
    return df


def load_history(run_dir: str | Path):
    """One row per trial and epoch, as reported to Tune (the journal included)."""
    import pandas as pd
    from ..files.safeload import check_frame
    df = ResultsBook(Path(run_dir)).history_frame()
    if df.empty:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    df = check_frame(df, f"history of {str(run_dir)!r}", HISTORY_COLUMNS)
    if not (df["epoch"].dropna() % 1 == 0).all():
        raise KtgError(f"history of {str(run_dir)!r}: column 'epoch' holds values that are "
                       f"not whole epochs")
    return df


def _whole(x: Any) -> bool:
    """A value usable as an epoch number (a journal from elsewhere may hold anything)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) \
        and x == int(x) and 0 <= x < 10 ** 9


def _finite(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) else float("nan")


def _history_row(trial_id: str, result: dict) -> dict:
    keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))
            and not k.startswith(("config", "time_this", "timestamp", "hostname",
                                  "node_ip", "date", "trial_id", "done",
                                  "training_iteration", "iterations_since",
                                  "checkpoint_dir"))}
    keep["trial_id"] = trial_id
    return keep


class ResultsBook:
    """The driver-side record of a search: per-epoch history and one row per trial.

    Every event is first appended to `journal.jsonl` (one JSON line, written before
    anything else happens to the trial), then the parquet tables are rewritten
    atomically: the tables are a view, the journal is what a killed driver leaves
    behind. `reload` replays the journal over the tables, so no finished row and no
    reported epoch is lost however the driver dies. Only the driver writes; any process
    may read (`load_results`, `ktg status`).
    """

    def __init__(self, run_dir: Path, cfg=None, mirror: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.mirror = mirror  # a storage URI the files are copied to as well
        self._last_history_write = 0.0
        self._journal_checked = False
        self.rows: dict[str, dict] = {}
        self.history: dict[tuple[str, int], dict] = {}
        self.last: dict[str, dict] = {}       # each trial's newest result
        self.events: list[dict] = []          # start / resume events, for status
        self.started: set[str] = set()        # trials Tune started (finished ones too)
        self.last_time = 0.0                  # the newest journal event's time
        self.reload()

    def reload(self) -> None:
        self.rows, self.history, self.last, self.events = {}, {}, {}, []
        self.started, self.last_time = set(), 0.0
        from ..files.safeload import read_parquet
        f, h = self.run_dir / RESULTS_FILE, self.run_dir / HISTORY_FILE
        if f.exists():
            self.rows = {r["trial_id"]: r for r in read_parquet(
                f, "results table", RESULTS_COLUMNS).to_dict("records")}
        if h.exists():
            for r in read_parquet(h, "history table", HISTORY_COLUMNS).to_dict("records"):
                if _whole(r.get("epoch")):
                    self.history[(r["trial_id"], int(r["epoch"]))] = r
        for e in read_journal(self.run_dir):
            kind = e.get("event")
            if isinstance(e.get("time"), (int, float)):
                self.last_time = max(self.last_time, float(e["time"]))
            if kind == "result" and isinstance(e.get("result"), dict):
                self._apply_result(str(e.get("trial_id")), e["result"])
            elif kind == "row" and isinstance(e.get("row"), dict) and \
                    isinstance(e["row"].get("trial_id"), str):
                self.rows[e["row"]["trial_id"]] = e["row"]
            elif kind == "start":
                self.events.append(e)
                self.started = set()  # a new driver: trials of the old one are not running
            elif kind == "trial-start":
                self.started.add(str(e.get("trial_id")))

    def finished_rows(self) -> list[dict]:
        """Trials whose result a duplicate can reuse (the ledger is seeded with them)."""
        return [r for r in self.rows.values() if r["status"] in FINISHED]

    # ---- the journal -------------------------------------------------------------------
    def _append(self, event: dict) -> None:
        f = self.run_dir / JOURNAL_FILE
        if not self._journal_checked:  # a link left in a shared run dir: refused
            from ..files.schemas import writable_inside
            writable_inside(f, self.run_dir, "journal")
        with open(f, "ab") as fh:
            if not self._journal_checked:
                # a killed writer can leave half a line: end it, or the next event would
                # be glued to it and lost too
                self._journal_checked = True
                if fh.tell() > 0:
                    with open(f, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            fh.write(b"\n")
            fh.write(json.dumps(event, default=str).encode() + b"\n")
            fh.flush()
        self.last_time = max(self.last_time, float(event.get("time", 0.0)))

    def journal_start(self, planned: int, resumed: bool) -> None:
        """Mark a (re)start of the search: `ktg status` measures elapsed time and rate
        from it, and sees whether the driver that wrote it is still alive."""
        import socket
        event = {"event": "start", "time": time.time(), "planned": planned,
                 "resumed": resumed, "pid": os.getpid(), "host": socket.gethostname(),
                 "finished_before": len(self.rows)}
        self._append(event)
        self.events.append(event)

    # ---- events ------------------------------------------------------------------------
    def on_start(self, trial_id: str) -> None:
        """Tune started (or restarted) a trial: `ktg status` counts it as running."""
        self._append({"event": "trial-start", "trial_id": trial_id, "time": time.time()})
        self.started.add(trial_id)

    def _apply_result(self, trial_id: str, keep: dict) -> None:
        self.last[trial_id] = keep
        if _whole(keep.get("epoch")) and \
                keep.get("status") not in ("duplicate", "untrainable", "skipped", "error"):
            self.history[(trial_id, int(keep["epoch"]))] = keep

    def on_result(self, trial_id: str, result: dict) -> None:
        keep = _history_row(trial_id, result)
        if keep.get("replay") and _whole(keep.get("epoch")) and \
                (trial_id, int(keep["epoch"])) in self.history:
            self.last[trial_id] = keep  # an epoch said again after a resume: journaled
            return
        self._append({"event": "result", "trial_id": trial_id, "time": time.time(),
                      "result": keep})
        self._apply_result(trial_id, keep)
        # the history table is rewritten while trials run too, at most every few
        # seconds, for people who read it (the journal already holds the result)
        now = time.monotonic()
        if now - self._last_history_write >= HISTORY_WRITE_S:
            self._last_history_write = now
            write_parquet(self.history_frame(), self.run_dir / HISTORY_FILE)

    def on_complete(self, trial_id: str, params: dict, last: dict | None,
                    error: str | None) -> dict:
        """The trial's row from its history and last result; journaled, not yet written
        to the tables (`write`)."""
        row = self._row(trial_id, params, last, error)
        self._append({"event": "row", "trial_id": trial_id, "time": time.time(),
                      "row": row})
        self.rows[trial_id] = row
        return row

    def recover_row(self, trial_id: str, params: dict, failed: bool) -> dict:
        """The row of a trial the study says finished but the driver died before it
        recorded: built from the journal's history and last result."""
        last = self.last.get(trial_id) or {}
        error = "the trial failed; the driver stopped before it recorded why" \
            if failed and last.get("status") != "error" else None  # else: its own reason
        return self.on_complete(trial_id, params, last, error)

    def _row(self, trial_id: str, params: dict, last: dict | None,
             error: str | None) -> dict:
        from ..method.params import BASELINE, trial_graph
        cfg, space = self.cfg, self.cfg.space
        k = space.k
        # a baseline's name (search/baselines.py); empty for a searched trial
        row: dict[str, Any] = {"trial_id": trial_id,
                               "baseline": str(params.get(BASELINE) or "")}
        try:
            graph = trial_graph(params, k, space.alpha, 0 if space.target_node else None)
            row["graph"], row["graph_key"] = graph.to_json(indent=None), graph.canonical_key()
            # the transfer weight the trial trained with (searched when `alphas` has more
            # than one value), a column of its own so that `--where "alpha == 100"` works
            row["transfer"], row["alpha"] = graph.transfer, float(graph.alpha)
        except Exception as e:  # a config we cannot read back is still a row
            row["graph"], row["graph_key"], row["transfer"] = "", "", ""
            row["alpha"] = float("nan")
            error = error or f"bad parameters: {e}"
        # a baseline outside the space (dcgan-sn in a k = 3 search) has its own k
        row["n_generators"] = graph.k if row["graph"] else k
        for i in range(k):
            row[f"model_{i}"] = graph.nodes[i].model if row["graph"] and i < graph.k \
                else params.get(f"model_{i}", "") if not row["graph"] else ""
        for col in space.edge_columns():  # gate_D{j}_{t} too when the space has m > 1
            row[col] = params.get(col, "")
        if space.discriminators != (1,):  # only then: today's tables keep their columns
            row["discriminators"] = graph.m if row["graph"] else params.get(
                "discriminators", "")
            row["regroup"] = bool(graph.regroup) if row["graph"] else ""
        hist = sorted((h for (tid, _), h in self.history.items() if tid == trial_id),
                      key=lambda h: h["epoch"])
        last = last or {}
        row.update(objective=float("nan"), best_epoch=0, epochs=0, duplicate_of="")
        for i in range(k):
            row[f"is_best_g{i}"] = float("nan")
            row[f"fid_g{i}"] = float("nan")
            row[f"vol_g{i}"] = float("nan")  # the KD paper's sharpness, at the best epoch
            row[f"params_g{i}"] = float("nan")  # generator size (a run's own, any epoch)
        row["is_mix_best"] = float("nan")  # the learning generators' mixture, best epoch
        if hist:
            row["epochs"] = int(hist[-1]["epoch"])
            for i in range(k):
                row[f"params_g{i}"] = _finite(hist[-1].get(f"params_g{i}"))
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
                    row[f"vol_g{i}"] = _finite(best.get(f"vol_g{i}"))
                mix = [v for v in (_finite(h.get("is_mix")) for h in good) if math.isfinite(v)]
                row["is_mix_best"] = max(mix) if mix else float("nan")
        if error:
            status = "error"
        elif last.get("status") == "error":  # the trainable's own report of bad input
            status, error = "error", str(last.get("reason", "error"))
        elif last.get("status") == "duplicate":
            status = "duplicate"
            row["duplicate_of"] = str(last.get("duplicate_of", ""))
            row["objective"] = _finite(last.get("objective"))
            row["epochs"] = int(last.get("epoch", 0) or 0)
        elif last.get("status") in ("untrainable", "skipped"):
            status = last["status"]
            error = str(last.get("reason", "no generator can learn"))
        elif any(h.get("status") == "diverged" for h in hist):
            status = "diverged"
        elif row["epochs"] >= cfg.train.epochs:
            status = "completed"
        else:
            status = "stopped"
        row.update(status=status, seed=cfg.train.seed, wall_s=_finite(last.get("time_total_s")),
                   error=error or "")
        return row

    # ---- output ------------------------------------------------------------------------
    def table(self):
        import pandas as pd
        rows = [dict(r) for r in self.rows.values()]
        by_id = {r["trial_id"]: r for r in rows}
        # a duplicate shows its original's numbers once the original has a row; until
        # then, the original's best so far that the duplicate reported (its row follows
        # the original: the one row that can change after it is written)
        for r in rows:
            orig = by_id.get(r.get("duplicate_of") or "")
            if r["status"] == "duplicate" and orig is not None:
                for col in ["objective", "best_epoch", "epochs"] + \
                        [c for c in orig if c.startswith(("is_best_g", "fid_g", "is_mix", "vol_g", "params_g"))]:
                    r[col] = orig[col]
        df = pd.DataFrame(rows)
        if not df.empty:
            # rows written before baselines have none: every row says, so that
            # `--where "baseline != ''"` reads any run
            df["baseline"] = df["baseline"].fillna("").astype(str) \
                if "baseline" in df.columns else ""
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
        write_parquet(self.table(), self.run_dir / RESULTS_FILE)
        write_parquet(self.history_frame(), self.run_dir / HISTORY_FILE)
        if self.mirror:
            self.copy_to_mirror()

    def copy_to_mirror(self) -> None:
        """Copy run.json, the tables and the journal next to Tune's experiment on shared
        storage, so that every node (and a later `--resume` elsewhere) sees them."""
        import pyarrow.fs
        fs, base = pyarrow.fs.FileSystem.from_uri(self.mirror)
        fs.create_dir(base, recursive=True)
        for name in ("run.json", RESULTS_FILE, HISTORY_FILE, JOURNAL_FILE):
            src = self.run_dir / name
            if src.exists():
                # write to a temporary name, then move: readers never see half a file
                with fs.open_output_stream(f"{base}/.{name}.tmp") as out:
                    out.write(src.read_bytes())
                fs.move(f"{base}/.{name}.tmp", f"{base}/{name}")

    def summary(self, top: int = 5) -> str:
        """The search's closing lines: counts, the top graphs, whether searching paid."""
        from .verdict import searching_paid, top_lines
        df = self.table()
        if df.empty:
            return "no finished trials yet"
        counts = df["status"].value_counts().to_dict()
        rows = df.to_dict("records")
        lines = [f"{len(df)} trials: " + ", ".join(f"{counts.get(s, 0)} {s}"
                                                  for s in STATUSES if counts.get(s)),
                 f"duplicates (same graph up to renumbering, not retrained): "
                 f"{counts.get('duplicate', 0)}"]
        lines += top_lines(rows, objective_rule(self.cfg.train.objective if self.cfg
                                                else None), top)
        paid = searching_paid(rows)
        return "\n".join(lines + ([paid] if paid else []))


def error_text(trial) -> str:
    for attr in ("error_msg", "error_file"):
        v = getattr(trial, attr, None)
        if v and attr == "error_file" and Path(str(v)).exists():
            text = Path(str(v)).read_text().strip().splitlines()
            return text[-1] if text else "error"
        if v and attr == "error_msg":
            return str(v).strip().splitlines()[-1]
    return "trial failed"
