"""The Ray Tune trainable of a knowledge-transfer-graph search: one trial = one graph.

Thin on purpose: the graph comes from `ktg_search.space`, the training from
`ktg_search.training.Trainer`; this file only talks to Tune (report, checkpoints) and to
the search's duplicate ledger.

A trial's config holds only the graph's parameters (plus, for a trial a resumed search
re-runs, which trial it is and its checkpoints; for a baseline, its name, and its graph
when the space cannot express it: search/baselines.py). The search settings arrive through
`tune.with_parameters` as `settings`, so no restore of any kind can lose them.

Actors are reused across trials (`reuse_actors=True`): only the read-only data set and
evaluator are cached per process (workers.py); everything a trial changes (trainer, RNGs,
optimizers) is built anew per trial.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import ray
import torch
from ray import tune

from ktg_search.errors import KtgError
from ktg_search.search.ledger import ledger_name
from ktg_search.search.workers import checkpoint_scratch
from ktg_search.files.fileio import CHECKPOINT_FILE, CHECKPOINT_INFO
from ktg_search.files.safeload import load_checkpoint
from ktg_search.search.config import SearchConfig
from ktg_search.search.space import untrainable_reason
from ktg_search.search.study import RESUME_FROM, RESUME_KEYS, RESUME_OF
from ktg_search.method.params import BASELINE
from ktg_search.method.training import Trainer
from ktg_search.method.evaluation import data_and_evaluator

def _restore(trainer: Trainer, checkpoints: list, key: str) -> bool:
    """Load the newest readable checkpoint of this graph; False when there is none (a
    torn file from a killed run is skipped for the one before it)."""
    for ckpt in checkpoints:
        try:
            ckpt = tune.Checkpoint(ckpt) if isinstance(ckpt, str) else ckpt
            with ckpt.as_directory() as d:
                # loaded as data: tensors and plain values only (safeload.py)
                state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
            from ktg_search.method.graph import Graph
            if Graph.from_dict(state["graph"]).canonical_key() != key:
                continue
            trainer.load_state_dict(state)
            return True
        except Exception as e:  # torn, missing or foreign: try the previous one
            print(f"checkpoint {ckpt} not used: {type(e).__name__}: {e}", flush=True)
    return False


def train_ktg(config: dict, settings: dict) -> None:
    """One trial. `config`: the graph's parameters; `settings`: the search (run.json's
    config, the study name, the run directory).

    Bad input found only here (a data set a worker cannot load, a batch larger than the
    data) is reported as the trial's error at once: retrying it would fail the same way.
    Anything else raises, and Tune retries the trial from its checkpoint."""
    try:
        _train(config, settings)
    except KtgError as e:
        # the ledger hears it first: a duplicate waiting for this trial trains the graph
        # itself (and meets the same error) instead of waiting out its time
        trial_id = config.get(RESUME_OF) or tune.get_context().get_trial_id()
        ledger = ray.get_actor(ledger_name(settings["study_name"]))
        ray.get(ledger.update.remote(trial_id, float("nan"), 0, True, True))
        tune.report({"objective": float("nan"), "epoch": 0, "status": "error",
                     "reason": str(e)})


def _train(config: dict, settings: dict) -> None:
    cfg = SearchConfig.from_dict(settings["config"])
    study = settings["study_name"]
    space = cfg.space
    params = {k: v for k, v in config.items() if k not in RESUME_KEYS}
    graph = space.graph(params)  # a baseline outside the space carries its graph
    key = graph.canonical_key()
    # the logical id: a re-run keeps the id of the trial's first run (rows, ledger)
    trial_id = config.get(RESUME_OF) or tune.get_context().get_trial_id()
    # a trial gets the cores it asked for, not every core of the node
    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))
    ledger = ray.get_actor(ledger_name(study))

    # decided from the graph before anything is built: 0 epochs, told to Optuna as
    # PRUNED with no value (TPE ranks it below every scored trial), docs/untrainable.md
    reason = untrainable_reason(graph)
    if reason is not None:
        tune.report({"objective": float("nan"), "epoch": 0, "status": "untrainable",
                     "reason": reason, "graph_key": key})
        return
    tune_ckpt = tune.get_checkpoint()  # Tune's retry after a failure in this search
    candidates = [tune_ckpt] if tune_ckpt is not None else list(config.get(RESUME_FROM) or [])
    if not candidates:
        # a baseline trains its graph itself, whoever sampled it first: its figures are
        # the comparison the search is judged by (a later duplicate copies them)
        original = ray.get(ledger.claim.remote(key, trial_id, bool(config.get(BASELINE))))
        if original is not None:
            if _report_duplicate(ledger, original, key, cfg.duplicate_wait_s):
                return
            ray.get(ledger.claim.remote(key, trial_id, True))  # it failed: train it here

    data, evaluator = data_and_evaluator(cfg.train)
    trainer = Trainer(graph, cfg.train, data=data, evaluator=evaluator)
    restored_from = 0  # the epoch a restored trial continues from (0: a fresh start)
    if candidates and _restore(trainer, candidates, key):
        restored_from = trainer.epoch
    if candidates:  # it already trained part of this graph: it keeps it
        ray.get(ledger.claim.remote(key, trial_id, True))
    node_id = ray.get_runtime_context().get_node_id()

    def metrics_of(row: dict) -> dict:
        objective = row["objective"]
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float, str))}
        metrics.update(graph_key=key, objective=objective if math.isfinite(objective)
                       else float("nan"), restored_from=restored_from, node_id=node_id,
                       images=int(row["iteration"]) * cfg.train.batch_size)  # ASHA's clock
        return metrics

    if trainer.status != "running" or trainer.epoch >= cfg.train.epochs:
        # restored from its last epoch's checkpoint (the driver died after that result,
        # before Tune ended the trial): say the last epoch again, marked as a replay, so
        # that Tune can end it; nothing is trained
        tune.report({**metrics_of(trainer.history[-1]), "replay": 1})
        return
    scratch = None
    while trainer.epoch < cfg.train.epochs and trainer.status == "running":
        row = trainer.run_epoch()
        objective = row["objective"]
        metrics = metrics_of(row)
        done = trainer.status != "running"
        ledger.update.remote(trial_id, objective, trainer.epoch, done)
        scratch = checkpoint_scratch(study)
        trainer.save(scratch / CHECKPOINT_FILE)
        (scratch / CHECKPOINT_INFO).write_text(json.dumps(
            {"trial_id": trial_id, "epoch": trainer.epoch, "graph_key": key}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(scratch)))
    if scratch is not None:  # Tune holds its copy: the scratch is not needed
        shutil.rmtree(scratch, ignore_errors=True)


def _report_duplicate(ledger, original: str, key: str, wait_s: float) -> bool:
    """Report the original trial's result instead of training the same graph again.

    Waits (sleeping, no compute) until the original has reported at least one epoch, so
    that the value told to Optuna is the original's best so far rather than nothing; the
    results table shows the original's final numbers on the duplicate row. False (nothing
    reported) when the original failed: then this trial trains the graph."""
    deadline = time.monotonic() + wait_s
    state = ray.get(ledger.get.remote(original)) or {}
    while not (state.get("done") or (state.get("epoch") or 0) >= 1) \
            and time.monotonic() < deadline:
        time.sleep(1.0)
        state = ray.get(ledger.get.remote(original)) or {}
    if state.get("failed"):
        return False
    objective = state.get("objective")
    tune.report({"objective": float(objective) if objective is not None else float("nan"),
                 "epoch": int(state.get("epoch") or 0), "status": "duplicate",
                 "duplicate_of": original, "graph_key": key})
    return True
