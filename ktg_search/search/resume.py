"""What `ktg search --resume` rebuilds, from the Optuna study and the run's journal.

Tune's experiment state (pickles, written at its own moments) is never read: a driver
killed while writing it left a torn file, Tune then started the experiment over, and the
restarted trials lost their settings. Instead:

- trials the study holds as COMPLETE, PRUNED or FAIL are done; if the driver died
  between the study's record and the row's (Tune tells the searcher first), the row is
  rebuilt from the journal;
- trials the study holds as RUNNING run again, as the same Optuna trial and under the
  same trial id, from their newest checkpoint (or from scratch when they have none);
- ASHA's rungs are refilled with every finished trial's history, so the resumed search
  stops trials as the uninterrupted one would;
- the rest of the planned trials are new.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import optuna
from ray.tune.schedulers import ASHAScheduler

from ..results.book import ResultsBook, find_checkpoints
from .study import TRIAL_ATTR, Rerun, load_study, tell, trial_config


@dataclass
class ResumePlan:
    """What a resumed search found and will do."""
    finished: int = 0                       # trials with a row (done, never retrained)
    recovered: int = 0                      # rows rebuilt from the journal
    told: int = 0                           # study trials finished from their rows
    reruns: list[Rerun] = field(default_factory=list)
    searched: int = 0                       # of `finished`: searched trials, not baselines

    def searched_reruns(self) -> int:
        return sum(1 for r in self.reruns if not (r.params or {}).get("baseline"))

    def line(self, name: str, planned: int) -> str:
        from_ckpt = sum(1 for r in self.reruns if r.checkpoints)
        new = max(0, planned - self.searched - self.searched_reruns())
        parts = [f"{self.finished} finished trial(s) kept"]
        if self.recovered:
            parts.append(f"{self.recovered} of them rebuilt from the journal")
        parts.append(f"{from_ckpt} re-run from their newest checkpoint")
        parts.append(f"{len(self.reruns) - from_ckpt} re-run from scratch")
        parts.append(f"{new} new")
        return f"resuming {name}: " + ", ".join(parts) + f" (of {planned} planned)"


def plan_resume(storage, study_name: str, book: ResultsBook, space,
                tune_path: str) -> ResumePlan:
    """Reconcile the study with the results book; returns what to re-run."""
    plan = ResumePlan()
    study = load_study(storage, study_name)
    TS = optuna.trial.TrialState
    pending: list[tuple] = []
    for ft in (study.get_trials(deepcopy=False) if study else []):
        tid = ft.user_attrs.get(TRIAL_ATTR)
        try:
            params = trial_config(space, ft)
        except ValueError:  # killed while Optuna stored its suggestions one by one
            params = None
        if ft.state in (TS.COMPLETE, TS.PRUNED, TS.FAIL):
            if tid and tid not in book.rows:
                book.recover_row(tid, params, failed=ft.state == TS.FAIL)
                plan.recovered += 1
        elif ft.state == TS.RUNNING:
            row = book.rows.get(tid) if tid else None
            if row is not None:  # the row made it, the study's record did not
                tell(study, ft.number, row.get("objective"), row.get("status") == "error")
                plan.told += 1
            else:
                pending.append((ft, tid, params))
    found = find_checkpoints(tune_path, {tid for _, tid, _ in pending if tid})
    for ft, tid, params in pending:
        # only checkpoints of epochs the journal holds: an epoch whose result never
        # reached it is trained again, so the history has every epoch exactly once
        known = max((e for (t, e) in book.history if t == tid), default=0)
        ckpts = [path for epoch, path in found.get(tid, []) if epoch <= known] if tid else []
        plan.reruns.append(Rerun(ft._trial_id, ft.number, tid, params, ckpts,
                                 set(ft.intermediate_values)))
    plan.finished = len(book.rows)
    # what counts towards num_trials: baselines do not (search/baselines.py)
    plan.searched = sum(1 for r in book.rows.values() if not r.get("baseline"))
    return plan


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs can be refilled with the history of trials that finished before
    a resume (`seed`), applied once Tune has told the scheduler its metric and mode."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._seed_points: dict[str, list[tuple[float, float]]] = {}

    def seed(self, points: dict[str, list[tuple[float, float]]]) -> None:
        """points: trial id -> [(time, objective)] in time order."""
        self._seed_points = points

    def set_search_properties(self, metric, mode, **spec) -> bool:
        ok = super().set_search_properties(metric, mode, **spec)
        for tid, pts in self._seed_points.items():
            trial = SimpleNamespace(trial_id=tid)
            for t, value in pts:
                # every bracket records the value at each milestone the trial reached
                for bracket in self._brackets:
                    bracket.on_result(trial, t, self._metric_op * value)
        self._seed_points = {}
        return ok

    # baselines (search/baselines.py) run their whole budget and stay out of the rungs:
    # the rungs rank the searched trials against each other, as without baselines
    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if _is_baseline(trial):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if _is_baseline(trial):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

    def recorded(self) -> list[tuple[float, int]]:
        """(milestone, number of trials recorded there) of the first bracket."""
        return [(m, len(rec)) for m, rec in self._brackets[0]._rungs]


def _is_baseline(trial) -> bool:
    from .baselines import BASELINE
    return bool((getattr(trial, "config", None) or {}).get(BASELINE))


def seed_points(book: ResultsBook, time_attr: str = "epoch") -> dict:
    """The (time, objective) history of every searched trial with a row (not the
    baselines: they are never in the rungs), for `ResumableASHA`."""
    import math
    out: dict[str, list] = {}
    for (tid, _), h in sorted(book.history.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if tid in book.rows and not book.rows[tid].get("baseline") and time_attr in h:
            v = h.get("objective")
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.setdefault(tid, []).append((h[time_attr], float(v)))
    return out
