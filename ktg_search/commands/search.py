"""`ktg search`: the knowledge-transfer-graph search on Ray Tune (or `--resume` one)."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    sp = sub.add_parser("search", help="run a knowledge-transfer-graph search on Ray Tune")
    sp.add_argument("--preset", default="quick", help="a preset name (see `ktg presets`)")
    sp.add_argument("--config", help="a whole search config as JSON")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one setting (repeatable): train.FIELD=V, space.FIELD=V, "
                         "a search setting (num_trials=V), or a section field alone (lr_g=V)")
    sp.add_argument("--name", help="run name (default: PRESET-DATE-TIME)")
    sp.add_argument("--storage-path", default="runs", help="where run directories live")
    sp.add_argument("--address", help="Ray address: auto, ray://HOST:10001 (default: local)")
    sp.add_argument("--num-trials", type=int)
    sp.add_argument("--max-epochs", type=int)
    sp.add_argument("--cpus-per-trial", type=float)
    sp.add_argument("--gpus-per-trial", type=float, help="fractions allowed, e.g. 0.5")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted search")
    sp.add_argument("--allow-external-storage", action="store_true",
                    help="with --resume: accept a run.json whose Tune path or Optuna storage "
                         "lies outside the run directory (your own cluster's s3://, "
                         "postgresql://); with --config: accept a config file that sets "
                         "storage or train.data_root (where the study and data go)")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="show Ray's and Tune's own output (tables, start-up) instead of "
                         "the status line; otherwise it goes to RUN/search.log")
    sp.set_defaults(func=run)


# the settings that say where ktg writes (the study) or reads and downloads (the data)
LOCATIONS = {"storage": "the study", "train.data_root": "the data"}


def _config_locations(path: str, cfg, sets: list[str], allow: bool) -> None:
    """A config file from someone else must not choose where ktg writes: the study's
    storage and the data root it sets (not overridden by --set, which is the user's own
    word) are refused without --allow-external-storage, and with it the first line of
    output says where the study and the data go."""
    from ..errors import KtgError
    from ..files.schemas import for_terminal
    values = {"storage": cfg.storage, "train.data_root": cfg.train.data_root}
    given = {s.split("=", 1)[0].strip() for s in sets}
    from_file = {k: v for k, v in values.items() if v and k not in given and
                 not (k == "train.data_root" and "data_root" in given)}
    if not from_file:
        return
    said = ", ".join(f"{k}={for_terminal(v)!r}" for k, v in from_file.items())
    if not allow:
        raise KtgError(f"search config {for_terminal(path)!r} sets {said}: a config file "
                       f"does not choose where the study and data go (outside the run "
                       f"directory); set them yourself with --set, or accept them with "
                       f"--allow-external-storage")
    print("config " + for_terminal(path) + ": " + "; ".join(
        f"{LOCATIONS[k]} goes to {for_terminal(v)!r} ({k})" for k, v in from_file.items()),
        flush=True)


def run(args) -> int:
    from ..results.book import load_results
    from ..search.config import SearchConfig, load_config_file, load_preset
    from ..search.driver import run_search
    if args.resume:
        run_dir = run_search(SearchConfig(), resume=args.resume, address=args.address,
                             verbose=args.verbose,
                             allow_external_storage=args.allow_external_storage)
    else:
        cfg = load_config_file(args.config) if args.config else load_preset(args.preset)
        sets = list(args.set or [])
        if args.config:
            _config_locations(args.config, cfg, sets, args.allow_external_storage)
        if args.num_trials is not None:
            sets.append(f"num_trials={args.num_trials}")
        if args.max_epochs is not None:
            sets.append(f"train.epochs={args.max_epochs}")
            if cfg.time_unit == "epochs" and cfg.grace_period > args.max_epochs:
                sets.append(f"grace_period={args.max_epochs}")
        if args.cpus_per_trial is not None:
            sets.append(f"cpus_per_trial={args.cpus_per_trial}")
        if args.gpus_per_trial is not None:
            sets.append(f"gpus_per_trial={args.gpus_per_trial}")
        if sets:
            cfg = cfg.with_overrides(sets)
        run_dir = run_search(cfg, name=args.name, storage_path=args.storage_path,
                             address=args.address, verbose=args.verbose)
    df = load_results(run_dir)
    if len(df) and (df.status == "error").all():
        first = str(df.error.iloc[0]) if "error" in df else ""
        print(f"ktg search: every trial failed ({len(df)} of {len(df)}); the first: {first}; "
              f"details in {run_dir}/search.log and the trials' error files", file=sys.stderr)
        return 1
    return 0
