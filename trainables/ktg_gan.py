"""The Ray Tune trainable of a knowledge-transfer-graph search: one trial = one graph.

Thin on purpose: the graph comes from `ktg_search.space`, the training from
`ktg_search.training.Trainer`; this file only talks to Tune (report, checkpoints) and to
the search's duplicate ledger.

Actors are reused across trials (`reuse_actors=True`), so module globals persist: only the
read-only data set and evaluator are cached here; everything a trial changes (trainer,
RNGs, optimizers) is built anew per trial.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from ktg_search.safeload import load_checkpoint
from ktg_search.search import SearchConfig, ledger_name
from ktg_search.space import can_learn
from ktg_search.training import Trainer

_SHARED: dict[tuple, object] = {}  # (dataset, size, ...) -> ImageData / Evaluator
CHECKPOINT_FILE = "trainer.pt"


def _shared(cfg: SearchConfig):
    """The data set and evaluator of this search, loaded once per worker process."""
    from ktg_search.data import load_dataset
    from ktg_search.metrics import Evaluator
    key = (cfg.dataset, cfg.image_size, cfg.data_root, cfg.extractor, cfg.eval_samples,
           cfg.fid, cfg.inception_weights, cfg.device)
    if key not in _SHARED:
        data = load_dataset(cfg.dataset, cfg.image_size, root=cfg.data_root)
        ev = Evaluator(data, extractor=cfg.extractor, num_samples=cfg.eval_samples,
                       fid=cfg.fid, device=str(_device(cfg)),
                       inception_weights=cfg.inception_weights)
        _SHARED.clear()  # one search per process at a time: keep memory flat
        _SHARED[key] = (data, ev)
    return _SHARED[key]


def _device(cfg: SearchConfig):
    from ktg_search.training import resolve_device
    return resolve_device(cfg.device)


def train_ktg(config: dict) -> None:
    settings = dict(config["search"])
    study, run_dir = settings.pop("study_name"), settings.pop("run_dir")
    cfg = SearchConfig.from_dict(settings)
    space = cfg.space()
    params = {k: v for k, v in config.items() if k != "search"}
    graph = space.graph(params)
    key = graph.canonical_key()
    trial_id = tune.get_context().get_trial_id()
    # a trial gets the cores it asked for, not every core of the node
    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))
    ledger = ray.get_actor(ledger_name(study))
    checkpoint = tune.get_checkpoint()

    if not can_learn(graph):
        tune.report({"objective": float("nan"), "epoch": 0, "status": "skipped",
                     "reason": "no generator has a non-cutoff incoming edge",
                     "graph_key": key})
        return
    if checkpoint is None:
        original = ray.get(ledger.claim.remote(key, trial_id))
        if original is not None:
            _report_duplicate(ledger, original, key, cfg.duplicate_wait_s)
            return

    data, evaluator = _shared(cfg)
    trainer = Trainer(graph, cfg.train_config(), data=data, evaluator=evaluator)
    restored_from = 0  # the epoch a restored trial continues from (0: a fresh start)
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            # loaded as data: tensors and plain values only (safeload.py)
            trainer.load_state_dict(load_checkpoint(Path(d) / CHECKPOINT_FILE))
        restored_from = trainer.epoch
        ray.get(ledger.claim.remote(key, trial_id))
    node_id = ray.get_runtime_context().get_node_id()

    while trainer.epoch < cfg.max_epochs and trainer.status == "running":
        row = trainer.run_epoch()
        objective = row["objective"]
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str))}
        metrics.update(graph_key=key, objective=objective if math.isfinite(objective)
                       else float("nan"), restored_from=restored_from, node_id=node_id)
        done = trainer.status != "running"
        ledger.update.remote(trial_id, objective, trainer.epoch, done)
        with tempfile.TemporaryDirectory() as d:
            trainer.save(Path(d) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _report_duplicate(ledger, original: str, key: str, wait_s: float) -> None:
    """Report the original trial's result instead of training the same graph again.

    Waits (sleeping, no compute) until the original has reported at least one epoch, so
    that the value told to Optuna is the original's best so far rather than nothing; the
    results table shows the original's final numbers on the duplicate row."""
    deadline = time.monotonic() + wait_s
    state = ray.get(ledger.get.remote(original)) or {}
    while not (state.get("done") or (state.get("epoch") or 0) >= 1) \
            and time.monotonic() < deadline:
        time.sleep(1.0)
        state = ray.get(ledger.get.remote(original)) or {}
    objective = state.get("objective")
    tune.report({"objective": float(objective) if objective is not None else float("nan"),
                 "epoch": int(state.get("epoch") or 0), "status": "duplicate",
                 "duplicate_of": original, "graph_key": key})
