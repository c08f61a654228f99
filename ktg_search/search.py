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
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ray.tune import Callback

from . import failpoints
from .checks import Bool, Choice, Float, Floats, Int, Names, Text, check_fields, check_instance, \
    field_checks, setting
from .errors import KtgError
from .progress import ProgressView
from .raylog import ray_output_to
from .fileio import LOG_FILE, RUN_FILE, atomic_write_text, is_uri
from .results import ResultsBook, error_text
from .runinfo import own_study_storage  # noqa: F401  (report.py's import until it moves)
from .study import RESUME_KEYS, logical_id
from .space import PAPER_GATES, SpaceSpec
from .training import TrainConfig

# ASHA's time unit -> the key of the trainable's reports that counts it
TIME_ATTRS = {"epochs": "epoch", "steps": "iteration", "images": "images"}
TIME_UNITS = tuple(TIME_ATTRS)
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"epochs", "seed"}


_T = field_checks(TrainConfig)  # a training field has one check, used by both configs


def _gates() -> list[str]:
    from .registry import GATES
    return GATES.names()


def _models() -> list[str]:
    from .registry import GENERATORS
    return GENERATORS.names()


def _transfers() -> list[str]:
    from .registry import TRANSFERS
    return TRANSFERS.names()


def _scalar(text: str) -> Any:
    """One item of a comma list in `--set`: a number if it parses as one, else the text."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


@dataclass
class SearchConfig:
    """A whole search: what to train, what to vary, and how to run it. JSON-serialisable.

    Every field is typed and bounded (checks.py); the training fields share
    `TrainConfig`'s checks, and every `TrainConfig` field a search sets has a field here
    (tests/test_safety.py checks that a new one cannot be missed)."""
    preset: str = setting("quick", Text(max_len=100))
    # data and training (see TrainConfig)
    dataset: str = setting("digits", _T["dataset"])
    image_size: int = setting(16, _T["image_size"])
    batch_size: int = setting(64, _T["batch_size"])
    nz: int = setting(100, _T["nz"])
    lr_g: float = setting(2e-4, _T["lr_g"])
    lr_d: float = setting(2e-4, _T["lr_d"])
    beta1: float = setting(0.5, _T["beta1"])
    beta2: float = setting(0.999, _T["beta2"])
    d_width: int = setting(64, _T["d_width"])
    d_passes: str = setting("auto", _T["d_passes"])
    d_loss_weighting: str = setting("uniform", _T["d_loss_weighting"])
    discriminator: str | None = setting(None, _T["discriminator"])
    ema_decay: float = setting(0.0, _T["ema_decay"])
    ema_start: int = setting(0, _T["ema_start"])
    transfer_scale: str = setting("plain", _T["transfer_scale"])
    eval_samples: int = setting(500, _T["eval_samples"])
    extractor: str = setting("classifier", _T["extractor"])
    fid: bool = setting(False, _T["fid"])
    inception_weights: str | None = setting(None, _T["inception_weights"])
    data_root: str | None = setting(None, _T["data_root"])
    device: str = setting("auto", _T["device"])
    amp: str = setting("off", _T["amp"])
    max_iters_per_epoch: int | None = setting(None, _T["max_iters_per_epoch"])
    seed: int = setting(0, _T["seed"])
    # the space (SpaceSpec checks it again: k <= 6 keeps the k^2 edges and k! renumberings
    # of the canonical key small)
    k: int = setting(3, Int(1, 6))
    gates: list[str] = setting(None, Names(_gates), factory=lambda: list(PAPER_GATES))
    target_model: str = setting("dcgan-small", Choice(_models))
    models: list[str] = setting(None, Names(_models), factory=lambda: ["dcgan-small"])
    transfer: list[str] = setting(None, Names(_transfers), factory=lambda: ["feature_out"])
    alpha: float = setting(1000.0, Float(0, 1e9, lo_open=True))
    # the transfer weights searched (the trial's `alpha` param); empty = `alpha` alone
    alphas: list[float] = setting(None, Floats(0, 1e9, lo_open=True, max_len=20),
                                  factory=list)
    target_node: bool = setting(False, Bool())  # score node 0 only, not the best generator
    # the search
    num_trials: int = setting(24, Int(1, 1_000_000))
    max_epochs: int = setting(8, Int(1, 100_000))
    # ASHA's clock: "epochs" of the data set, or training "steps" or "images" seen, so that
    # a rung means the same work on any data set (a digits epoch is 56 steps at batch 32,
    # a CIFAR-10 one 195 at batch 256). grace_period is counted in it.
    time_unit: str = setting("epochs", Choice(TIME_UNITS))
    grace_period: int = setting(1, Int(1, 10 ** 12))          # <= max_epochs in epochs
    reduction_factor: float = setting(2, Float(2, 100))       # ASHA's: rungs grow by it
    sampler: str = setting("random", Choice(("random", "tpe")))
    # Optuna storage URL or journal file; default SQLite in the run directory
    storage: str | None = setting(None, Text(optional=True))
    study_name: str | None = setting(None, Text(optional=True, max_len=200))
    # trials at once; default: as many as the resources allow
    concurrency: int | None = setting(None, Int(1, 100_000, optional=True))
    cpus_per_trial: float = setting(1.0, Float(0, 1024, lo_open=True))
    gpus_per_trial: float = setting(0.0, Float(0, 64))
    # how long a duplicate waits for its original's result (at most a week)
    duplicate_wait_s: float = setting(900.0, Float(0, 7 * 24 * 3600))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "search config") -> "SearchConfig":
        """A config from a parsed JSON object: every field checked for type and range
        (KtgError naming the first bad one and its valid values); unknown keys refused."""
        cfg = cls(**check_fields(cls, d, where))
        cfg.validate(where)
        return cfg

    def with_overrides(self, sets: list[str]) -> "SearchConfig":
        """Apply `--set key=value` overrides; values parse as JSON, else as strings."""
        d = asdict(self)
        types = {f.name: f.type for f in fields(self)}
        for item in sets:
            if "=" not in item:
                raise KtgError(f"--set {item!r} is not key=value; valid keys: "
                               f"{', '.join(sorted(d))}")
            key, raw = item.split("=", 1)
            key = key.strip()
            if key not in d:
                raise KtgError(f"--set: unknown setting {key!r}; valid: "
                               f"{', '.join(sorted(d))}")
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON: a string (checked below)
                value = raw
            if "list" in str(types[key]) and isinstance(value, (str, int, float)):
                value = [_scalar(v.strip()) for v in str(raw).split(",") if v.strip()]
            d[key] = value
        return SearchConfig.from_dict(d, where="--set")

    def validate(self, where: str = "") -> None:
        """Every field's type and range, then the rules between fields."""
        check_instance(self, where)
        if self.time_unit == "epochs" and self.grace_period > self.max_epochs:
            raise KtgError(f"{where + ': ' if where else ''}The value of `grace_period` is "
                           f"{self.grace_period}, but must be an integer with 1 <= "
                           f"grace_period <= max_epochs ({self.max_epochs})")
        self.space()
        self.train_config(0).validate(where)

    def space(self) -> SpaceSpec:
        return SpaceSpec(k=self.k, gates=tuple(self.gates), target_model=self.target_model,
                         models=tuple(self.models), transfer=tuple(self.transfer),
                         alpha=self.alpha, target_node=self.target_node,
                         alphas=tuple(self.alphas))

    def train_config(self, seed: int | None = None) -> TrainConfig:
        d = {k: v for k, v in asdict(self).items() if k in _TRAIN_FIELDS}
        return TrainConfig(epochs=self.max_epochs,
                           seed=self.seed if seed is None else seed, **d)


# ---- presets -----------------------------------------------------------------------------
PRESET_DIR = Path(__file__).with_name("presets")


def presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.json"))}


def load_preset(name: str) -> SearchConfig:
    files = presets()
    if name not in files:
        raise KtgError(f"unknown preset {name!r}; valid: {', '.join(files)}")
    d = json.loads(files[name].read_text())
    d.pop("description", None)
    return SearchConfig.from_dict({"preset": name, **d}, where=f"preset {name}")


def preset_description(name: str) -> str:
    return json.loads(presets()[name].read_text()).get("description", "")


def load_config_file(path: str) -> SearchConfig:
    """A search config file (JSON): the fields it names over its preset's (default quick);
    every field checked (KtgError names the file and the first bad value)."""
    from .safeload import read_json
    p = Path(path)
    d = read_json(p, "search config")
    if not isinstance(d, dict):
        raise KtgError(f"search config {path!r}: the top level must be a JSON object")
    d.pop("description", None)
    preset = d.get("preset", "quick")
    if not isinstance(preset, str) or preset not in presets():
        raise KtgError(f"search config {path!r}: unknown preset {str(preset)[:80]!r}; "
                       f"valid: {', '.join(presets())}")
    base = asdict(load_preset(preset))
    base.update(d)
    return SearchConfig.from_dict(base, where=str(p))


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
        if result.get("epoch") == self.book.cfg.max_epochs:
            failpoints.hit("last-result")

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
    reaches is used, so that only rungs (and each trial's own max_epochs) stop trials."""
    return cfg.max_epochs if cfg.time_unit == "epochs" else float(10 ** 12)


def run_search(cfg: SearchConfig, name: str | None = None, storage_path: str = "runs",
               address: str | None = None, resume: str | None = None,
               verbose: bool = False, allow_external_storage: bool = False,
               progress_interval_s: float = 30.0) -> Path:
    """Run (or resume) a search; returns the run directory with results.parquet.

    A resume keeps every finished trial, re-runs the ones that were running (from their
    newest checkpoint) and runs the rest of the planned trials; see resume.py."""
    if resume:
        from .runinfo import resume_info
        run_dir = Path(resume).expanduser().resolve()
        info = resume_info(run_dir, allow_external_storage)
        cfg, name, study_name = info.config, info.name, info.study_name
        storage_url, tune_path = info.storage, info.tune_path
    else:
        cfg.validate()
        name = name or f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        if is_uri(storage_path):
            check_storage_uri(storage_path)
        run_dir = run_dir_of(storage_path, name)
        tune_path = tune_path_of(storage_path, run_dir)
        if (run_dir / RUN_FILE).exists():
            raise KtgError(f"run directory {str(run_dir)!r} already holds a search; use "
                           f"--resume {run_dir} or another --name")
        run_dir.mkdir(parents=True, exist_ok=True)
        study_name = cfg.study_name or name
        from .study import optuna_storage_url
        storage_url = optuna_storage_url(cfg.storage, run_dir)
        # first, so that a search killed from here on can always be resumed
        atomic_write_text(run_dir / RUN_FILE, json.dumps(
            {"name": name, "config": asdict(cfg), "storage": storage_url,
             "study_name": study_name, "space_size": cfg.space().size(),
             "tune_path": tune_path,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")
    failpoints.hit("startup")
    with ray_output_to(run_dir / LOG_FILE, verbose) as out:
        _run(cfg, run_dir, name, study_name, storage_url, tune_path, address,
             bool(resume), verbose, out, progress_interval_s)
    return run_dir


def _run(cfg: SearchConfig, run_dir: Path, name: str, study_name: str, storage_url: str,
         tune_path: str, address: str | None, resumed: bool, verbose: bool, out,
         progress_interval_s: float) -> None:
    import optuna
    from ray import tune

    from trainables.ktg_gan import train_ktg

    from .ledger import start_ledger
    from .workers import init_ray
    from .resume import ResumableASHA, ResumePlan, plan_resume, seed_points
    from .study import StudySearcher, load_study, open_optuna_storage, warn_sqlite_on_cluster
    space = cfg.space()
    started_ray = init_ray(address)
    warn_sqlite_on_cluster(storage_url, out)
    storage = open_optuna_storage(storage_url)
    book = ResultsBook(run_dir, cfg, mirror=tune_path if is_uri(tune_path) else None)
    print(f"search {name}: k={cfg.k}, {len(cfg.gates)} gates, {len(cfg.models)} model(s), "
          f"space size M^(k-1) * G^(k^2) = {len(cfg.models)}^{cfg.k - 1} * "
          f"{len(cfg.gates)}^{cfg.k ** 2}" +
          (f" * {len(cfg.transfer)} transfer kinds" if len(cfg.transfer) > 1 else "") +
          f" = {space.size():,} graphs; {cfg.num_trials} trials; run dir {run_dir}",
          file=out, flush=True)
    plan = plan_resume(storage, study_name, book, space, tune_path) if resumed \
        else ResumePlan()
    if resumed:
        print(plan.line(name, cfg.num_trials), file=out, flush=True)
        if plan.recovered or plan.told:
            book.write()
    new = max(0, cfg.num_trials - len(book.rows) - len(plan.reruns))
    todo = new + len(plan.reruns)
    book.journal_start(cfg.num_trials, resumed)
    if todo:
        study = load_study(storage, study_name)
        # a resumed search must not draw the same graphs again: seed the sampler with
        # how far the study got
        seed = cfg.seed if study is None else cfg.seed + 7919 * len(study.trials)
        sampler = (optuna.samplers.RandomSampler(seed=seed) if cfg.sampler == "random"
                   else optuna.samplers.TPESampler(seed=seed))
        searcher = StudySearcher(space=space.define_by_run, metric="objective", mode="max",
                                 sampler=sampler, storage=storage, study_name=study_name,
                                 reruns=plan.reruns)
        time_attr = TIME_ATTRS[cfg.time_unit]
        scheduler = ResumableASHA(time_attr=time_attr, max_t=asha_max_t(cfg),
                                  grace_period=cfg.grace_period,
                                  reduction_factor=cfg.reduction_factor)
        scheduler.seed(seed_points(book, time_attr))
        # keep the handle until the search ends: Ray deletes an actor nobody holds
        ledger = start_ledger(study_name, book.finished_rows())
        settings = {"config": asdict(cfg), "study_name": study_name,
                    "run_dir": str(run_dir)}
        trainable = tune.with_resources(tune.with_parameters(train_ktg, settings=settings),
                                        {"cpu": cfg.cpus_per_trial,
                                         "gpu": cfg.gpus_per_trial})
        view = ProgressView(book, cfg.num_trials, out, progress_interval_s)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=searcher,
                                        scheduler=scheduler, num_samples=todo,
                                        max_concurrent_trials=cfg.concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                # Tune's experiment directory is the run directory (or its URI twin)
                name=tune_path.rstrip("/").rsplit("/", 1)[1], verbose=2 if verbose else 0,
                storage_path=tune_path.rstrip("/").rsplit("/", 1)[0],
                callbacks=[SearchEvents(book, view, ledger)],
                failure_config=tune.FailureConfig(max_failures=3),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
        tuner.fit()
        del ledger
    failpoints.hit("final")
    book.reload()
    book.write()
    if started_ray:
        # stops Ray's log forwarding too, whose last worker lines would otherwise reach
        # the terminal after the log file is closed
        import ray
        ray.shutdown()
    print(book.summary(), file=out, flush=True)
