"""The search service: Ray Tune + OptunaSearch + ASHA over knowledge-transfer graphs.

    SearchConfig --> Optuna define-by-run space (space.py) --> Tuner(OptunaSearch, ASHA)
      --> trainables/ktg_gan.py per trial --> ResultsCallback --> RUN/results.parquet

The run directory (`storage_path/name`) holds Tune's experiment state, `run.json` (the
search config, the Optuna storage URL and study name), the Optuna storage (SQLite by
default), `results.parquet` and `history.parquet`.

Duplicates: graphs equal under node renumbering share a canonical key. A `GraphLedger`
actor (one per search, named after it) records which trial trains which key; a trial that
samples a key already trained or in training reports the original's result instead of
training (a `duplicate` row pointing at the original).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from .checks import Bool, Choice, Float, Int, Names, Text, check_fields, check_instance, \
    field_checks, setting
from .errors import KtgError
from .results import ResultsBook, atomic_write_text, error_text, is_uri
from .space import PAPER_GATES, SpaceSpec
from .training import TrainConfig

RUN_FILE = "run.json"
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
    target_node: bool = setting(False, Bool())  # score node 0 only, not the best generator
    # the search
    num_trials: int = setting(24, Int(1, 1_000_000))
    max_epochs: int = setting(8, Int(1, 100_000))
    grace_period: int = setting(1, Int(1, 100_000))           # <= max_epochs, see validate
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
            if "list" in str(types[key]) and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            d[key] = value
        return SearchConfig.from_dict(d, where="--set")

    def validate(self, where: str = "") -> None:
        """Every field's type and range, then the rules between fields."""
        check_instance(self, where)
        if self.grace_period > self.max_epochs:
            raise KtgError(f"{where + ': ' if where else ''}The value of `grace_period` is "
                           f"{self.grace_period}, but must be an integer with 1 <= "
                           f"grace_period <= max_epochs ({self.max_epochs})")
        self.space()
        self.train_config(0).validate(where)

    def space(self) -> SpaceSpec:
        return SpaceSpec(k=self.k, gates=tuple(self.gates), target_model=self.target_model,
                         models=tuple(self.models), transfer=tuple(self.transfer),
                         alpha=self.alpha, target_node=self.target_node)

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


# ---- Optuna storage ----------------------------------------------------------------------
def optuna_storage_url(cfg: SearchConfig, run_dir: Path) -> str:
    """The storage URL recorded in run.json: the given one, or SQLite in the run dir."""
    if cfg.storage:
        return cfg.storage
    return f"sqlite:///{(run_dir / 'optuna.db').resolve()}"


def open_optuna_storage(url: str):
    """An Optuna storage object from a URL or a journal file (`journal:PATH` or *.log)."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        path = url[len("journal:"):] if url.startswith("journal:") else url
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None,
                                          engine_kwargs=_engine_kwargs(url))
    except Exception as e:  # bad URL, missing driver, unreachable server
        raise KtgError(f"cannot open the Optuna storage {url!r}: {e}; valid: a database "
                       f"URL (sqlite:///path, postgresql://...) or journal:PATH") from None


def _engine_kwargs(url: str) -> dict:
    # SQLite under several writers: wait for the lock instead of failing at once
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def warn_sqlite_on_cluster(url: str) -> None:
    """SQLite locks under many writers on several nodes: say so, once, clearly."""
    import ray
    if not url.startswith("sqlite"):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        print(f"warning: the Optuna study is in SQLite ({url}) but the Ray cluster has "
              f"{len(nodes)} nodes; SQLite locks under many writers and needs a file every "
              f"node can reach. Use --set storage=postgresql://... or "
              f"--set storage=journal:/shared/path/optuna.log", file=sys.stderr)


# ---- the duplicate ledger ----------------------------------------------------------------
def ledger_name(study: str) -> str:
    return f"ktg-ledger-{study}"


def _make_ledger_class():
    import ray

    @ray.remote(num_cpus=0)
    class GraphLedger:
        """Which trial trains which canonical graph key, and its best objective so far."""

        def __init__(self) -> None:
            self.owner: dict[str, str] = {}
            self.state: dict[str, dict] = {}

        def seed(self, rows: list[dict]) -> int:
            for r in rows:
                self.owner.setdefault(r["graph_key"], r["trial_id"])
                self.state.setdefault(r["trial_id"], {"objective": r.get("objective"),
                                                      "epoch": r.get("epochs", 0),
                                                      "done": True, "failed": False})
            return len(self.owner)

        def claim(self, key: str, trial_id: str) -> str | None:
            """None: train it yourself. Otherwise the trial id that owns the key."""
            owner = self.owner.get(key)
            if owner is None or owner == trial_id or self.state.get(owner, {}).get("failed"):
                self.owner[key] = trial_id
                self.state.setdefault(trial_id, {"objective": None, "epoch": 0,
                                                 "done": False, "failed": False})
                return None
            return owner

        def update(self, trial_id: str, objective: float, epoch: int, done: bool,
                   failed: bool = False) -> None:
            self.state[trial_id] = {"objective": objective, "epoch": epoch, "done": done,
                                    "failed": failed}

        def get(self, trial_id: str) -> dict | None:
            return self.state.get(trial_id)

    return GraphLedger


def start_ledger(study: str, seed_rows: list[dict]):
    """The study's ledger actor, pinned to the driver's node.

    With num_cpus=0 Ray may place it on any node, and a worker node that dies takes the
    ledger with it: every trial that asks it afterwards fails (seen on the simulated
    cluster). On the driver's node it lives exactly as long as the search does.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    cls = _make_ledger_class()
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(),
                                          soft=False)
    ledger = cls.options(name=ledger_name(study), get_if_exists=True,
                         scheduling_strategy=here).remote()
    ray.get(ledger.seed.remote(seed_rows))
    return ledger


# ---- the results callback ------------------------------------------------------------------
def _trial_params(result: dict | None) -> dict[str, Any]:
    """The sampled top-level values of a trial's config, from a Tune result (nested
    `config` or flattened `config/...` keys); the nested `search` settings left out."""
    if not result:
        return {}
    if isinstance(result.get("config"), dict):
        return {k: v for k, v in result["config"].items() if not isinstance(v, dict)}
    return {k[len("config/"):]: v for k, v in result.items()
            if k.startswith("config/") and "/" not in k[len("config/"):]}


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a driver killed between two saves of its state.

    Tune saves the experiment (its trials) and the searcher's pickled state at different
    moments. After a SIGKILL the restored experiment can hold a trial that the restored
    searcher never saw, and Ray's OptunaSearch raises KeyError on that trial's first
    result, which ends the resumed search (seen once in the resume test). Optuna's
    `ask()` had already written that trial to the study's storage, where it is still
    RUNNING: it is found by its sampled parameters and adopted.
    """

    def _known(self, trial_id: str, result: dict | None) -> bool:
        if trial_id in self._ot_trials or trial_id in self._completed_trials:
            return True
        params = _trial_params(result)
        taken = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False,
                                                states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in taken and frozen.params and all(
                    params.get(k) == v for k, v in frozen.params.items()):
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, frozen._trial_id)
                return True
        print(f"warning: trial {trial_id} is not in the Optuna study (restored search); "
              f"its results stay in the results table only", file=sys.stderr, flush=True)
        self._completed_trials.add(trial_id)  # warn once
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._known(trial_id, result):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if self._known(trial_id, result):
            super().on_trial_complete(trial_id, result, error)


class ResultsCallback(Callback):
    """Feeds Tune's events (in the driver) to the book, which rewrites the results files
    atomically as trials finish. Pickled with the run config for `Tuner.restore`; it
    re-reads the files at setup so that a resumed search continues the same table."""

    def __init__(self, book: ResultsBook) -> None:
        self.book = book

    def setup(self, **info):
        self.book.reload()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.book.on_result(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, error_text(trial))

    def _finish(self, trial, error: str | None) -> None:
        row = self.book.on_complete(trial.trial_id, trial.config, trial.last_result, error)
        self.book.write()
        print(f"[{len(self.book.rows)}/{self.book.cfg.num_trials}] trial {trial.trial_id} "
              f"{row['status']}: objective {row['objective']:.3f} after {row['epochs']} "
              f"epoch(s)" + (f" ({error})" if error else ""), flush=True)


# ---- running -----------------------------------------------------------------------------
def _init_ray(address: str | None) -> None:
    import ray
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise KtgError(f"cannot connect to Ray at {address!r}: {e}; valid: auto, "
                       f"ray://HOST:10001, HOST:6379, or no --address for a local Ray") \
            from None


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


def run_search(cfg: SearchConfig, name: str | None = None, storage_path: str = "runs",
               address: str | None = None, resume: str | None = None,
               verbose: int = 1) -> Path:
    """Run (or resume) a search; returns the run directory with results.parquet."""
    # Tune saves its experiment state every >= 10 s by default; a SIGKILL then loses the
    # newest trials. 0 means "after every step", so no started trial is ever lost.
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if resume:
        run_dir = Path(resume).expanduser().resolve()
        info_file = run_dir / RUN_FILE
        if not info_file.exists():
            raise KtgError(f"--resume {resume!r}: not a run directory (no {RUN_FILE})")
        info = json.loads(info_file.read_text())
        cfg = SearchConfig.from_dict(info["config"], where=str(info_file))
        name, study_name, storage_url = info["name"], info["study_name"], info["storage"]
        tune_path = info.get("tune_path", str(run_dir))
    else:
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
        storage_url = optuna_storage_url(cfg, run_dir)
    cfg.validate()
    space = cfg.space()
    _init_ray(address)
    warn_sqlite_on_cluster(storage_url)
    storage = open_optuna_storage(storage_url)
    if not resume:
        atomic_write_text(run_dir / RUN_FILE, json.dumps(
            {"name": name, "config": asdict(cfg), "storage": storage_url,
             "study_name": study_name, "space_size": space.size(),
             "tune_path": tune_path,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")
    print(f"search {name}: k={cfg.k}, {len(cfg.gates)} gates, {len(cfg.models)} model(s), "
          f"space size M^(k-1) * G^(k^2) = {len(cfg.models)}^{cfg.k - 1} * "
          f"{len(cfg.gates)}^{cfg.k ** 2}" +
          (f" * {len(cfg.transfer)} transfer kinds" if len(cfg.transfer) > 1 else "") +
          f" = {space.size():,} graphs; {cfg.num_trials} trials; run dir {run_dir}",
          flush=True)

    book = ResultsBook(run_dir, cfg, mirror=tune_path if is_uri(tune_path) else None)
    # keep the handle until the search ends: Ray deletes an actor nobody holds
    ledger = start_ledger(study_name, book.finished_rows())
    from trainables.ktg_gan import train_ktg
    trainable = tune.with_resources(train_ktg, {"cpu": cfg.cpus_per_trial,
                                                "gpu": cfg.gpus_per_trial})
    callback = ResultsCallback(book)
    if resume:
        tuner = tune.Tuner.restore(tune_path, trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
    else:
        sampler = (optuna.samplers.RandomSampler(seed=cfg.seed) if cfg.sampler == "random"
                   else optuna.samplers.TPESampler(seed=cfg.seed))
        searcher = ResumableOptunaSearch(space=space.define_by_run, metric="objective",
                                         mode="max", sampler=sampler, storage=storage,
                                         study_name=study_name)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=cfg.max_epochs,
                                  grace_period=cfg.grace_period,
                                  reduction_factor=cfg.reduction_factor)
        settings = {"search": {**asdict(cfg), "study_name": study_name,
                               "run_dir": str(run_dir)}}
        tuner = tune.Tuner(
            trainable, param_space=settings,
            tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=searcher,
                                        scheduler=scheduler, num_samples=cfg.num_trials,
                                        max_concurrent_trials=cfg.concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=name, storage_path=tune_path.rsplit("/", 1)[0] if is_uri(tune_path)
                else str(run_dir.parent), verbose=verbose,
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=3),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    tuner.fit()
    del ledger
    book.reload()
    book.write()
    print(book.summary(), flush=True)
    return run_dir
