"""The Optuna side of a search: the study's storage and the searcher Tune asks.

The study is the source of truth for which trials exist and which finished: every trial
is asked of it (RUNNING there) before Tune runs it, and told when Tune ends it. A resumed
search reads it back (resume.py); Tune's own pickled searcher state is never read.
"""
from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from ray.tune.search.optuna import OptunaSearch

from ..errors import KtgError

TRIAL_ATTR = "trial_id"  # user attribute: the (logical) trial id that a study trial runs as
RESUME_OF = "resume_of"  # trial config keys of a re-run: which trial, from which checkpoints
RESUME_FROM = "resume_from"
RESUME_KEYS = (RESUME_OF, RESUME_FROM)


def logical_id(trial) -> str:
    """The id a Tune trial's row and ledger entry use: a re-run keeps its first run's."""
    return (trial.config or {}).get(RESUME_OF) or trial.trial_id


# ---- storage -----------------------------------------------------------------------------
def optuna_storage_url(storage: str | None, run_dir: Path) -> str:
    """The storage URL recorded in run.json: the given one, or SQLite in the run dir."""
    if storage:
        return storage
    # the folder resolved, the file not: a link named optuna.db is refused, not followed
    return f"sqlite:///{Path(run_dir).resolve() / 'optuna.db'}"


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy opens: a plain `postgresql://` (or `postgres://`) URL names the
    driver this package installs, psycopg2. SQLAlchemy 2.1 reads a plain one as psycopg 3,
    which is not installed, and every PostgreSQL study failed to open. A URL that names its
    driver (`postgresql+psycopg://`) is kept."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


SCHEMA_LOCK = 0x6b7467  # PostgreSQL advisory lock key ("ktg") held while the schema is made


@contextmanager
def _schema_lock(url: str):
    """On PostgreSQL, one process at a time opens the storage. Optuna creates its tables
    and enum types when it opens an empty database, unlocked: two searches that start at
    once on a new database both ran CREATE TYPE and the second failed (seen in
    tests/test_cluster_storage.py). A session advisory lock serialises that; it is released
    with the connection however the opening ends."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                             {"k": SCHEMA_LOCK})
    finally:
        engine.dispose()


def open_optuna_storage(url: str):
    """An Optuna storage object from a URL or a journal file (`journal:PATH` or *.log)."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = url[len("journal:"):] if url.startswith("journal:") else url
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    try:
        # SQLite under several writers: wait for the lock instead of failing at once
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        with _schema_lock(sqlalchemy_url(url)):
            return optuna.storages.RDBStorage(sqlalchemy_url(url), heartbeat_interval=None,
                                              engine_kwargs=kwargs)
    except Exception as e:  # bad URL, missing driver, unreachable server
        raise KtgError(f"cannot open the Optuna storage {url!r}: {e}; valid: a database "
                       f"URL (sqlite:///path, postgresql://...) or journal:PATH") from None


def warn_sqlite_on_cluster(url: str, out=None) -> None:
    """SQLite locks under many writers on several nodes: say so, once, clearly."""
    import ray
    if not url.startswith("sqlite"):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        print(f"warning: the Optuna study is in SQLite ({url}) but the Ray cluster has "
              f"{len(nodes)} nodes; SQLite locks under many writers and needs a file every "
              f"node can reach. Use --set storage=postgresql://... or "
              f"--set storage=journal:/shared/path/optuna.log", file=out or sys.stderr)


def load_study(storage, study_name: str) -> optuna.Study | None:
    """The study, or None when the search died before it was created."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None


def full_params(space, params: dict) -> dict:
    """A study trial's sampled params plus the values the space fixes (model_0, ...):
    the trial config Tune ran it with."""
    return {**params, **(space.define_by_run(optuna.trial.FixedTrial(params)) or {})}


def trial_config(space, ft) -> dict:
    """The config Tune ran a study trial with: `full_params`, and for a baseline its
    name, or (outside the space) its name and graph instead. ValueError when the trial
    lacks parameters (killed while Optuna stored them one by one)."""
    return _config(ft.user_attrs, lambda: full_params(space, ft.params))


def _config(attrs: dict, params: Callable[[], dict]) -> dict:
    """A trial's config from its user attributes: a baseline outside the space carries
    its graph and no parameter (`params` is not called); any other trial its
    `params()`, a baseline's with its name added."""
    from .baselines import BASELINE, BASELINE_GRAPH
    if BASELINE_GRAPH in attrs:
        return {BASELINE: attrs.get(BASELINE), BASELINE_GRAPH: attrs[BASELINE_GRAPH]}
    p = params()
    return {**p, BASELINE: attrs[BASELINE]} if BASELINE in attrs else p


# ---- the searcher ------------------------------------------------------------------------
@dataclass
class Rerun:
    """A trial the study holds as RUNNING when the search was resumed: it runs again,
    as the same Optuna trial and the same logical trial, from its newest checkpoint."""
    optuna_id: int                  # the storage's trial id (not the number)
    number: int
    trial_id: str | None            # None: asked of the study, but never given to Tune
    params: dict | None             # None: the driver died before all were sampled
    checkpoints: list[str] = field(default_factory=list)  # newest first
    reported: set = field(default_factory=set)  # steps the study already holds


class StudySearcher(OptunaSearch):
    """Ray's OptunaSearch with the study as the record of every trial.

    - Each asked trial carries its trial id as a user attribute, written before Tune
      sees the trial, so a resumed search can map study trials to Tune's files.
    - `reruns` are handed out first: a resumed search re-runs the trials the study holds
      as RUNNING, as the same Optuna trials.
    - Intermediate values are reported at the trial's epoch (Tune's iteration counter
      restarts when a trial is restored), so a re-run never reports a step twice.
    - A trial is told COMPLETE with a finite value, FAIL when it errored, and PRUNED
      when it has no value (a skipped graph, a duplicate of a trial that never scored):
      Ray's class tells NaN, which Optuna refuses, and the trial stayed RUNNING forever.
    """

    def __init__(self, *args, reruns: list[Rerun] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reruns = list(reruns or [])
        self._reported: dict[str, set] = {}
        self._baselines_waiting = 0

    def add_baselines(self, baselines: list) -> int:
        """Enqueue each baseline (search/baselines.py) the study does not hold yet, so a
        resumed search never adds one twice; returns how many wait to run (the ones
        enqueued now, and any a killed search enqueued but never started). They are
        handed out before any new trial."""
        from .baselines import BASELINE, BASELINE_GRAPH
        TS = optuna.trial.TrialState
        study = self._ot_study
        held = {t.user_attrs.get(BASELINE) for t in study.get_trials(deepcopy=False)}
        for b in baselines:
            if b.name not in held:
                attrs = {BASELINE: b.name}
                if b.params is None:  # the dashboard shows what it trains
                    attrs[BASELINE_GRAPH] = b.graph.to_dict()
                study.enqueue_trial(b.params or {}, user_attrs=attrs)
        self._baselines_waiting = sum(
            1 for t in study.get_trials(deepcopy=False, states=(TS.WAITING,))
            if BASELINE in t.user_attrs)
        return self._baselines_waiting

    def _config_of(self, trial_id: str, ot_trial) -> dict:
        """Name `ot_trial` after `trial_id` and return its config: a baseline outside the
        space runs the graph it carries and records no parameter; any other trial runs
        the define-by-run space (which takes an enqueued trial's fixed parameters) and a
        baseline adds its name."""
        self._ot_trials[trial_id] = ot_trial
        ot_trial.set_user_attr(TRIAL_ATTR, trial_id)
        return _config(ot_trial.user_attrs,
                       lambda: self._suggest_from_define_by_run_func(self._space, ot_trial))

    def suggest(self, trial_id: str) -> dict | None:
        from . import failpoints
        if self._reruns:
            if not self._ot_trials:
                # Optuna's cached storage writes only to trials it has read: read them
                self._ot_study.get_trials(deepcopy=False)
            r = self._reruns.pop(0)
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, r.optuna_id)
            self._reported[trial_id] = set(r.reported)
            if r.trial_id is None:  # never reached Tune: this run samples the rest, names it
                return self._config_of(trial_id, self._ot_trials[trial_id])
            return {**r.params, RESUME_OF: r.trial_id, RESUME_FROM: list(r.checkpoints)}
        if self._baselines_waiting > 0:  # Optuna's ask() hands out enqueued trials first
            self._baselines_waiting -= 1
            config = self._config_of(trial_id, self._ot_study.ask())
            failpoints.hit("suggested")
            return config
        config = super().suggest(trial_id)
        if config is not None:
            self._ot_trials[trial_id].set_user_attr(TRIAL_ATTR, trial_id)
            failpoints.hit("suggested")
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value, step = result.get(self.metric), result.get("epoch")
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or \
                not isinstance(step, (int, float)) or not _is_finite(value):
            return
        seen = self._reported.setdefault(trial_id, set())
        if int(step) not in seen:
            seen.add(int(step))
            self._ot_trials[trial_id].report(float(value), int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        from . import failpoints
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = (result or {}).get(self.metric)
        error = error or (result or {}).get("status") == "error"
        tell(self._ot_study, self._ot_trials[trial_id], value, error)
        self._completed_trials.add(trial_id)
        failpoints.hit("trial-told")


def tell(study: optuna.Study, trial, value: Any, error: bool) -> None:
    """Finish a study trial: COMPLETE with a finite value, FAIL on error, else PRUNED."""
    TS = optuna.trial.TrialState
    if error:
        study.tell(trial, state=TS.FAIL)
    elif _is_finite(value):
        study.tell(trial, float(value), state=TS.COMPLETE)
    else:
        study.tell(trial, state=TS.PRUNED)


def _is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
