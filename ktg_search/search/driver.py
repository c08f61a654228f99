"""The search service: Ray Tune + Optuna + ASHA over knowledge-transfer graphs.

    SearchConfig --> Optuna define-by-run space (space.py) --> Tuner(StudySearcher, ASHA)
      --> trainables/ktg_gan.py per trial --> ResultsCallback --> RUN/journal.jsonl
                                                               --> RUN/results.parquet

The run directory (`storage_path/name`) holds `run.json` (the search config, the Optuna
storage URL and study name), the Optuna storage (SQLite by default), the journal and the
tables, `search.log` (Ray's and Tune's own output), and Tune's experiment (trial
checkpoints). A resumed search rebuilds itself from the study and the journal
(resume.py), never from Tune's pickled state.

Duplicates: graphs equal under node renumbering share a canonical key; the ledger
(ledger.py) lets one trial train a key and the others report its result.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from ray.tune import Callback

from . import failpoints
from .config import TIME_ATTRS, SearchConfig  # TIME_ATTRS: report.py's import too
from ..errors import KtgError
from .progress import ProgressView, Schedule
from .raylog import ray_output_to
from ..files.fileio import LOG_FILE, RUN_FILE, atomic_write_text, is_uri
from ..files.schemas import plain_name, writable_inside
from ..results.book import ResultsBook, error_text
from .study import RESUME_KEYS, logical_id


# ---- Tune's events -------------------------------------------------------------------------
class SearchEvents(Callback):
    """Tune's events in the driver, in one place and in order: every result and every
    finished trial is journaled first (the book), the tables rewritten atomically as
    trials finish, then the person watching is told (the progress view)."""

    def __init__(self, book: ResultsBook, view, ledger=None) -> None:
        self.book, self.view, self.ledger = book, view, ledger

    def on_trial_start(self, iteration, trials, trial, **info):
        self.book.on_start(logical_id(trial))
        self.view.trial_started(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.book.on_result(logical_id(trial), result)
        failpoints.hit("result")
        epoch = result.get("epoch")
        if epoch == self.book.cfg.train.epochs:
            failpoints.hit("last-result")
        elif isinstance(epoch, int) and 1 < epoch < self.book.cfg.train.epochs \
                and result.get("status") == "running" and not result.get("replay"):
            failpoints.hit("mid-result")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, error_text(trial))

    def _finish(self, trial, error: str | None) -> None:
        params = {k: v for k, v in (trial.config or {}).items() if k not in RESUME_KEYS}
        tid = logical_id(trial)
        row = self.book.on_complete(tid, params, trial.last_result, error)
        if error and self.ledger is not None:
            # a duplicate waiting for this trial trains the graph itself, now
            self.ledger.update.remote(tid, float("nan"), row["epochs"], True, True)
        failpoints.hit("row-journaled")
        self.book.write()
        failpoints.hit("tables-written")
        self.view.trial_finished(trial.trial_id, row)

    def on_step_end(self, iteration, trials, **info):
        self.view.tick()

    def on_experiment_end(self, trials, **info):
        self.view.close()


# ---- running -----------------------------------------------------------------------------
def run_dir_of(storage_path: str, name: str, local_root: str = "runs") -> Path:
    """Where the run's own files live: under the storage path when it is a local or
    mounted directory; under `local_root` on this machine when it is a URI (s3://, gs://,
    ...), in which case Tune's experiment goes to the URI and the results files are
    mirrored there (`ResultsBook.mirror`)."""
    if is_uri(storage_path):
        return Path(local_root).expanduser().resolve() / name
    return Path(storage_path).expanduser().resolve() / name


def tune_path_of(storage_path: str, run_dir: Path) -> str:
    """Where Tune keeps the experiment (checkpoints, state): every node must reach it."""
    if is_uri(storage_path):
        return storage_path.rstrip("/") + "/" + run_dir.name
    return str(run_dir)


def check_storage_uri(uri: str) -> None:
    """Fail early, with the scheme named, when pyarrow cannot open a storage URI."""
    import pyarrow.fs
    try:
        pyarrow.fs.FileSystem.from_uri(uri)
    except Exception as e:
        raise KtgError(f"--storage-path {uri!r} cannot be opened: {e}; valid: a directory "
                       f"every node can reach (NFS), or a URI pyarrow supports (s3://, "
                       f"gs://, file://)") from None


def asha_max_t(cfg: SearchConfig) -> float:
    """ASHA's max_t in the search's time unit. In steps or images the budget depends on
    the data set's size, which the driver does not load: an upper bound that no trial
    reaches is used, so that only rungs (and each trial's own train.epochs) stop trials."""
    return cfg.train.epochs if cfg.time_unit == "epochs" else float(10 ** 12)


def _check_study_file(storage_url: str, run_dir: Path) -> None:
    """The run directory's own SQLite study database is never written through a link."""
    if storage_url.startswith("sqlite:///"):
        db = Path(storage_url[len("sqlite:///"):])
        if db.parent == run_dir.resolve():
            writable_inside(db, run_dir, "study database")


def run_search(cfg: SearchConfig, name: str | None = None, storage_path: str = "runs",
               address: str | None = None, resume: str | None = None,
               verbose: bool = False, allow_external_storage: bool = False,
               progress_interval_s: float = 30.0) -> Path:
    """Run (or resume) a search; returns the run directory with results.parquet.

    A resume keeps every finished trial, re-runs the ones that were running (from their
    newest checkpoint) and runs the rest of the planned trials; see resume.py."""
    from .workers import check_address
    if resume:
        from .runinfo import resume_info
        run_dir = Path(resume).expanduser().resolve()
        info = resume_info(run_dir, allow_external_storage)
        cfg, name, study_name = info.config, info.name, info.study_name
        storage_url, tune_path = info.storage, info.tune_path
        check_address(address)  # after the run's own files: a bad run.json is said first
    else:
        cfg.validate()
        # a plain name, from --name or the preset: `../x` would leave --storage-path
        name = plain_name(name or f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}",
                          "--name" if name else "the run name (from the preset)")
        if is_uri(storage_path):
            check_storage_uri(storage_path)
        run_dir = run_dir_of(storage_path, name)
        if run_dir.is_symlink():
            writable_inside(run_dir, run_dir.parent, "run directory")
        tune_path = tune_path_of(storage_path, run_dir)
        if (run_dir / RUN_FILE).exists():
            raise KtgError(f"run directory {str(run_dir)!r} already holds a search; use "
                           f"--resume {run_dir} or another --name")
        check_address(address)  # a head node that does not answer: a message, no run dir
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        study_name = cfg.study_name or name
        from .study import optuna_storage_url
        storage_url = optuna_storage_url(cfg.storage, run_dir)
        _check_study_file(storage_url, run_dir)
        # first, so that a search killed from here on can always be resumed
        atomic_write_text(run_dir / RUN_FILE, json.dumps(
            {"name": name, "config": cfg.to_dict(), "storage": storage_url,
             "study_name": study_name, "space_size": cfg.space.size(),
             "tune_path": tune_path,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")
    if resume:
        _check_study_file(storage_url, run_dir)
    failpoints.hit("startup")
    try:
        with ray_output_to(run_dir / LOG_FILE, verbose) as out:
            _run(cfg, run_dir, name, study_name, storage_url, tune_path, address,
                 bool(resume), verbose, out, progress_interval_s)
    except _Unplaceable as e:
        if not resume and created:
            # nothing ran: a folder holding only run.json and a log would block the name
            shutil.rmtree(run_dir, ignore_errors=True)
        raise KtgError(str(e)) from None
    return run_dir


class _Unplaceable(KtgError):
    """No node can place one trial: raised before anything of the search ran."""


def _run(cfg: SearchConfig, run_dir: Path, name: str, study_name: str, storage_url: str,
         tune_path: str, address: str | None, resumed: bool, verbose: bool, out,
         progress_interval_s: float) -> None:
    import optuna
    from ray import tune

    from trainables.ktg_gan import train_ktg

    from .ledger import start_ledger
    from .workers import check_trial_resources, init_ray
    from .resume import ResumableASHA, ResumePlan, plan_resume, seed_points
    from .baselines import baselines_of
    from .study import (StudySearcher, load_study, open_optuna_storage,
                        warn_sqlite_on_cluster)
    space = cfg.space
    started_ray = init_ray(address)
    try:  # before the first trial: a trial no node can place would wait forever
        check_trial_resources(cfg.cpus_per_trial, cfg.gpus_per_trial)
    except KtgError as e:
        if started_ray:
            import ray
            ray.shutdown()
        raise _Unplaceable(str(e)) from None
    warn_sqlite_on_cluster(storage_url, out)
    storage = open_optuna_storage(storage_url)
    book = ResultsBook(run_dir, cfg, mirror=tune_path if is_uri(tune_path) else None)
    print(f"search {name}: k={space.k}, {len(space.gates)} gates, {len(space.models)} "
          f"model(s), space size {space.size_formula()} = {space.size():,} graphs, {space.trainable_size():,} of them trainable "
          f"(the search trains no other: docs/untrainable.md); {cfg.num_trials} trials; "
          f"run dir {run_dir}",
          file=out, flush=True)
    plan = plan_resume(storage, study_name, book, space, tune_path) if resumed \
        else ResumePlan()
    if resumed:
        print(plan.line(name, cfg.num_trials), file=out, flush=True)
        if plan.recovered or plan.told:
            book.write()
    # baselines are not counted in num_trials (search/baselines.py)
    new = max(0, cfg.num_trials - plan.searched - plan.searched_reruns())
    todo = new + len(plan.reruns)
    baselines = baselines_of(cfg) if cfg.baselines else []
    # planned trials as the status line counts them: the baselines too
    book.journal_start(cfg.num_trials + len(baselines), resumed)
    if todo or baselines:
        study = load_study(storage, study_name)
        # a resumed search must not draw the same graphs again: seed the sampler with
        # how far the study got
        seed = cfg.train.seed if study is None else cfg.train.seed + 7919 * len(study.trials)
        sampler = (optuna.samplers.RandomSampler(seed=seed) if cfg.sampler == "random"
                   else optuna.samplers.TPESampler(seed=seed))
        searcher = StudySearcher(space=space.define_by_run, metric="objective", mode="max",
                                 sampler=sampler, storage=storage, study_name=study_name,
                                 reruns=plan.reruns)
        # once per study: a resumed search finds them there (run, running or waiting)
        waiting = searcher.add_baselines(baselines) if baselines else 0
        if waiting:
            print(f"baselines: {waiting} to train beside the search "
                  f"({', '.join(b.name for b in baselines)}; never stopped early, not "
                  f"counted in num_trials)", file=out, flush=True)
        time_attr = TIME_ATTRS[cfg.time_unit]
        scheduler = ResumableASHA(time_attr=time_attr, max_t=asha_max_t(cfg),
                                  grace_period=cfg.grace_period,
                                  reduction_factor=cfg.reduction_factor)
        scheduler.seed(seed_points(book, time_attr))
        # keep the handle until the search ends: Ray deletes an actor nobody holds
        ledger = start_ledger(study_name, book.finished_rows())
        settings = {"config": cfg.to_dict(), "study_name": study_name,
                    "run_dir": str(run_dir)}
        trainable = tune.with_resources(tune.with_parameters(train_ktg, settings=settings),
                                        {"cpu": cfg.cpus_per_trial,
                                         "gpu": cfg.gpus_per_trial})
        view = ProgressView(book, cfg.num_trials + len(baselines), out,
                            progress_interval_s,
                            schedule=Schedule.of(cfg.to_dict(), len(baselines)))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=searcher,
                                        scheduler=scheduler, num_samples=todo + waiting,
                                        max_concurrent_trials=cfg.concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                # Tune's experiment directory is the run directory (or its URI twin)
                name=tune_path.rstrip("/").rsplit("/", 1)[1], verbose=2 if verbose else 0,
                storage_path=tune_path.rstrip("/").rsplit("/", 1)[0],
                callbacks=[SearchEvents(book, view, ledger)],
                failure_config=tune.FailureConfig(max_failures=3),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        _fit(tuner, run_dir)
        del ledger
        from .workers import remove_scratch
        remove_scratch(study_name)  # this node's; a worker node keeps one per process
    failpoints.hit("final")
    book.reload()
    book.write()
    if started_ray:
        # stops Ray's log forwarding too, whose last worker lines would otherwise reach
        # the terminal after the log file is closed
        import ray
        ray.shutdown()
    print(book.summary(), file=out, flush=True)


def _fit(tuner, run_dir: Path) -> None:
    """`tuner.fit()`, with Ray's own failures (a node lost for good, a placement that
    became impossible, the head gone) said in one line; the traceback goes to the log.
    Trials that fail are not among them: Tune records those and the search goes on."""
    import ray.exceptions
    from ray.tune.error import TuneError
    try:
        tuner.fit()
    except (TuneError, ray.exceptions.RayError) as e:
        # sys.stderr is the log here (ray_output_to), the terminal only with --verbose
        print("".join(traceback.format_exception(e)), file=sys.stderr, flush=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise KtgError(f"Ray stopped the search: {first} (details in "
                       f"{run_dir / LOG_FILE}); what finished is kept, and "
                       f"`ktg search --resume {run_dir}` goes on from there") from None
