"""Re-evaluation: the top graphs' best checkpoints re-scored with many more samples, and
its store `RUN/reevaluation.parquet`.

The search scores every epoch on a few hundred samples, so a graph can win on a lucky
draw; `reevaluate` restores each top trial's best epoch (`restore_best`), scores every
generator on `num_samples` fresh samples (IS and FID) and keeps the rows in the run, so a
later report reuses them instead of computing them again.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import KtgError
from ..files.fileio import atomic_write_bytes, latest_checkpoint
from .run import Missing, RunView, load_run_data, restore_best

REEVAL_FILE = "reevaluation.parquet"
REEVAL_SEED = 777_000     # re-evaluation z: not the search's EVAL_SEED, so fresh samples


def reevaluate(run: RunView, top: int = 3, num_samples: int = 10_000,
               device: str = "auto", progress: bool = True, data=None):
    """Re-score the best checkpoints of the top `top` ranked graphs with `num_samples`
    samples per generator (IS and FID), reusing `RUN/reevaluation.parquet` rows with the
    same trial, sample count and best epoch. Returns (rows for this request, notes)."""
    import pandas as pd
    from tqdm import tqdm
    notes: list[str] = []
    want = run.ranked.head(top)
    store_file = run.path / REEVAL_FILE
    stored = read_reevaluations(store_file) if store_file.exists() else pd.DataFrame()
    keep, todo = [], []
    for rank, (_, r) in enumerate(want.iterrows(), start=1):
        hit = stored[(stored.trial_id == r.trial_id) &
                     (stored.num_samples == num_samples) &
                     (stored.best_epoch == int(r.best_epoch))] if not stored.empty \
            else stored
        if len(hit):
            row = hit.iloc[-1].to_dict()
            row.update(search_rank=rank, search_objective=float(r.objective))
            keep.append(row)
        else:
            todo.append((rank, r))
    ready = []
    for rank, r in todo:  # checkpoints first: no evaluator is built for nothing
        ckpt = latest_checkpoint(run.path, r.trial_id)
        if ckpt is None:
            notes.append(f"rank {rank} (trial {r.trial_id}) has no checkpoint in the run "
                         f"directory; not re-evaluated")
        else:
            ready.append((rank, r))
    if ready:
        from ..method.evaluation import build_evaluator
        from ..method.trainconfig import resolve_device
        c = run.cfg.train
        data = data if data is not None else load_run_data(run)
        dev = str(resolve_device(device))
        evaluator = build_evaluator(data, c, num_samples=num_samples, fid=True, device=dev)
        bar = tqdm(total=len(ready) * run.k, desc=f"re-evaluate ({num_samples} samples)",
                   unit="generator", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        for rank, r in ready:
            row = _score_trial(run, rank, r, data, evaluator, dev, bar, notes)
            if row is None:
                continue
            keep.append(row)
            if not stored.empty:
                stored = stored[~((stored.trial_id == r.trial_id) &
                                  (stored.num_samples == num_samples))]
            stored = pd.concat([stored, pd.DataFrame([row])], ignore_index=True)
            _write_parquet(stored, store_file)  # after every trial: an interrupt keeps it
        bar.close()
    return _in_search_order(pd.DataFrame(keep)), notes


def _score_trial(run: RunView, rank: int, r, data, evaluator, dev: str, bar,
                 notes: list[str]) -> dict | None:
    """One store row: every generator of trial `r` (search rank `rank`) re-scored with
    the evaluator's sample count; None (and a note) when its checkpoint will not restore."""
    import torch
    num_samples = evaluator.num_samples
    t0 = time.perf_counter()
    try:
        trainer, ckpt = restore_best(run.path, r.trial_id, data=data, evaluator=evaluator)
    except (Missing, KtgError) as e:  # a gone, truncated or refused checkpoint
        notes.append(f"rank {rank} (trial {r.trial_id}): {type(e).__name__}: {e}; "
                     f"not re-evaluated")
        bar.update(run.k)
        return None
    trainer.device = torch.device(dev)  # the re-evaluation's device, not the run's
    trainer.generators.to(trainer.device)
    if trainer.best_generators is None:
        notes.append(f"rank {rank} (trial {r.trial_id}): its checkpoint holds no "
                     f"best-epoch weights; the last epoch's ({trainer.epoch}) "
                     f"were re-evaluated")
    row: dict[str, Any] = {"trial_id": r.trial_id, "num_samples": num_samples,
                           "best_epoch": int(r.best_epoch),
                           "weights_epoch": int(trainer.best_epoch
                                                if trainer.best_generators
                                                is not None else trainer.epoch),
                           "checkpoint_epoch": int(trainer.epoch),
                           "search_rank": rank,
                           "search_objective": float(r.objective)}
    bar.set_postfix(trial=r.trial_id)
    k = trainer.graph.k
    learning = [i for i in range(k) if i not in trainer.frozen]
    per, mix = evaluator.score_generators([_z_stream(trainer, i) for i in range(k)],
                                          num_samples=num_samples, mixture=learning)
    for tag, s in [*((f"g{i}", s) for i, s in enumerate(per)), ("mix", mix)]:
        if s is None:
            continue
        row[f"is_{tag}"] = float(s["is"])
        row[f"is_std_{tag}"] = float(s.get("is_std", float("nan")) or float("nan"))
        fid = s.get("fid")
        row[f"fid_{tag}"] = float(fid) if fid is not None else float("nan")
    bar.update(k)
    row["objective"] = trainer.score(row)
    row["seconds"] = time.perf_counter() - t0
    row["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return row


def stored_reevaluations(run: RunView, top: int, num_samples: int):
    """The stored rows (nothing computed, `--no-reeval`) of the top `top` ranked graphs
    scored with `num_samples` samples, in search order with their re-evaluated rank.
    Missing when none is stored."""
    store = run.path / REEVAL_FILE
    if not store.exists():
        raise Missing("re-evaluation skipped (--no-reeval) and none stored yet")
    stored = read_reevaluations(store)
    stored = stored[stored.num_samples == num_samples]
    ids = list(run.ranked.head(top).trial_id)
    stored = stored[stored.trial_id.isin(ids)]
    if stored.empty:
        raise Missing(f"re-evaluation skipped (--no-reeval) and no stored rows "
                      f"with {num_samples} samples for the top graphs")
    stored = stored.copy()
    stored["search_rank"] = [ids.index(t) + 1 for t in stored.trial_id]
    return _in_search_order(stored)


def _in_search_order(rows):
    """Rows sorted by search rank, with `reeval_rank`: their order by the re-evaluated
    objective (ties: search order)."""
    if rows.empty:
        return rows
    rows = rows.sort_values("search_rank").reset_index(drop=True)
    rows["reeval_rank"] = rows["objective"].rank(ascending=False,
                                                 method="first").astype(int)
    return rows


def read_reevaluations(path: Path):
    """RUN/reevaluation.parquet, checked like every table read from a run."""
    from ..files.safeload import read_parquet
    return read_parquet(path, "re-evaluation table", {
        "trial_id": "str", "num_samples": "num", "best_epoch": "num", "objective": "num",
        "search_objective": "num"})


def _z_stream(trainer, node: int) -> Callable[[int], Any]:
    """`sample(n)` for `Evaluator.score_generator`, which calls it once per batch: each
    call draws the next n latent points of one seeded stream, so that the batches are
    different images (a fixed seed per call would repeat the first batch). Every
    generator gets the same stream: they are compared on the same z."""
    import torch
    gen = torch.Generator().manual_seed(REEVAL_SEED)

    def sample(n: int):
        return trainer.sample(node, n, z=torch.randn(n, trainer.config.nz, generator=gen))
    return sample


def _write_parquet(df, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
