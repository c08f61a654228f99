"""Baselines for the report: a `ktg compare` output folder read back, and the training
settings of its runs set against the search's (`ktg report RUN --baselines DIR`).

A compare folder holds `table.csv` (one row per graph: the best generator's IS mean +-
std over seeds, seeds, epochs, the run directories) and one folder per (graph, seed)
run with `summary.json`, `metrics.csv`, `graph.json` and `checkpoint.pt`, whose saved
`TrainConfig` is the recipe that run trained with (runs.py, compare.py). Everything is
read as data: the table is type-checked, run directories must lie inside the folder,
checkpoints load with `weights_only` (safeload.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..files.schemas import MAX_TABLE_BYTES, check_size

# The settings that make two trainings comparable: (TrainConfig field, what the report
# calls it). `epochs` is set against the search's train.epochs (a trial's most).
RECIPE = (("dataset", "data set"), ("image_size", "image size"),
          ("batch_size", "batch size"), ("lr_g", "learning rate (G)"),
          ("lr_d", "learning rate (D)"), ("beta1", "Adam beta1"), ("beta2", "Adam beta2"),
          ("d_width", "D width"), ("discriminator", "discriminator"),
          ("d_loss_weighting", "D loss weighting"), ("d_classes", "D classes"),
          ("ema_decay", "EMA decay"),
          ("ema_start", "EMA start"), ("transfer_scale", "transfer scale"),
          ("extractor", "feature extractor"), ("eval_samples", "eval samples"),
          ("epochs", "epochs (search: max_epochs)"))

_TABLE_COLUMNS = {"graph": "str", "seeds": "num", "epochs": "num", "eval_at": "str",
                  "is_mean": "num", "is_std": "num", "runs": "str"}


@dataclass(frozen=True)
class Baselines:
    """A compare folder, read: `table` is its table.csv (compare's own numbers), `runs`
    maps each graph label to its run directories (inside `path`)."""
    path: Path
    table: Any
    runs: dict[str, list[Path]]


def read_baselines(folder: str | Path) -> Baselines:
    """Read a `ktg compare` output folder; KtgError naming it when it does not exist or
    is not one (no table.csv, a table compare did not write, runs outside it)."""
    import pandas as pd
    from ..files.fileio import TABLE_CSV
    from ..files.safeload import check_frame
    p = Path(folder).expanduser()
    what = f"--baselines {str(p)!r}"
    if not p.is_dir():
        raise KtgError(f"{what} {'is a file' if p.exists() else 'does not exist'}; valid: "
                       f"the output folder of `ktg compare` (it holds {TABLE_CSV})")
    table_file = p / TABLE_CSV
    if not table_file.is_file():
        raise KtgError(f"{what} is not a `ktg compare` output folder: it has no "
                       f"{TABLE_CSV}")
    check_size(table_file, f"{what}: {TABLE_CSV}", MAX_TABLE_BYTES)
    try:
        df = pd.read_csv(table_file, dtype={"graph": str, "runs": str, "eval_at": str})
    except (ValueError, OSError) as e:  # pandas' parser errors are ValueErrors
        raise KtgError(f"{what}: {TABLE_CSV} cannot be read ({e})") from None
    df = check_frame(df, f"{what}: {TABLE_CSV}", _TABLE_COLUMNS)
    if df.empty:
        raise KtgError(f"{what}: {TABLE_CSV} has no rows")
    root = p.resolve()
    runs: dict[str, list[Path]] = {}
    for graph, cell in zip(df["graph"], df["runs"], strict=True):
        dirs = []
        for rel in str(cell).split(";"):
            d = (p / rel).resolve()
            # a shared folder must not make the report read files elsewhere
            if not d.is_relative_to(root):
                raise KtgError(f"{what}: {TABLE_CSV} names run directory {rel!r} outside "
                               f"the folder")
            dirs.append(d)
        runs[str(graph)] = dirs
    return Baselines(p.resolve(), df, runs)


def run_config(run_dir: Path):
    """The TrainConfig a compare run trained with, from its checkpoint.pt; KtgError when
    the checkpoint is missing or refused."""
    from ..files.safeload import check_trainer_state, load_checkpoint
    from ..method.trainconfig import TrainConfig
    ckpt = run_dir / "checkpoint.pt"
    state = check_trainer_state(load_checkpoint(ckpt), ckpt)
    return TrainConfig.from_dict(state["config"], where=str(ckpt))


def graph_key(run_dir: Path) -> str:
    """The canonical key (equal up to renumbering) of a compare run's graph.json."""
    from ..method.graph import Graph
    f = run_dir / "graph.json"
    return Graph.from_json(f.read_text(), where=str(f)).canonical_key()


def recipe_differences(search, runs: dict[str, Any]) -> list[dict]:
    """The recipe settings on which compare runs differ from the search.

    `search` is the search's TrainConfig (`SearchConfig.train`: its `epochs` is a trial's
    most), `runs` maps a run label to its TrainConfig. One row per differing setting:
    setting, label, search (value), baselines (the differing values, sorted), runs (how
    many differ), of (how many runs)."""
    rows = []
    for name, label in RECIPE:
        mine = getattr(search, name)
        other = {lab: getattr(c, name) for lab, c in runs.items()}
        differ = {lab: v for lab, v in other.items() if v != mine}
        if differ:
            rows.append({"setting": name, "label": label, "search": mine,
                         "baselines": sorted({repr(v) for v in differ.values()}),
                         "runs": len(differ), "of": len(runs)})
    return rows
