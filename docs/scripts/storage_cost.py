"""What does each Optuna storage cost per trial? (docs/cluster-storage.md)

For SQLite (a file), JournalStorage (a file) and PostgreSQL, in one run: a fresh study per
storage and repetition, then N trials the way a search's driver writes them (ask; the
graph's parameters sampled: 2 models, 9 gates, alpha; the trial id as a user attribute;
one intermediate value per epoch; tell). The storages are alternated within every
repetition (the order rotated), so a machine that slows down mid-run slows all three.
Prints the median ms per trial over the repetitions and each storage's ratio to SQLite.

The storages are opened as a search opens them (ktg_search.search.study.open_optuna_storage).
PostgreSQL: --postgres URL, or a private server started here with PostgreSQL's default
durability (fsync on) from tests/pg.py (initdb/pg_ctl on the PATH; as `nobody` when root).

    python docs/scripts/storage_cost.py [--trials 50] [--epochs 3] [--reps 3]
                                        [--postgres postgresql://user:pw@host:5432/db]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import optuna  # noqa: E402

from ktg_search.search.study import open_optuna_storage  # noqa: E402

GATES = ["through", "cutoff", "linear", "correct"]


def one_trial(study: optuna.Study, i: int, epochs: int) -> None:
    t = study.ask()
    t.suggest_categorical("model_1", ["dcgan-small", "resnet-small"])
    t.suggest_categorical("model_2", ["dcgan-small", "resnet-small"])
    for a in range(3):
        for b in range(3):
            t.suggest_categorical(f"gate_{a}_{b}", GATES)
    t.suggest_categorical("alpha", [1.0, 10.0, 100.0])
    t.set_user_attr("trial_id", f"bench_{i:05d}")
    for epoch in range(1, epochs + 1):
        t.report(float(epoch) / (i + 1), epoch)
    study.tell(t, float(i % 7))


def time_storage(url: str, name: str, trials: int, epochs: int) -> float:
    """ms per trial of `trials` trials in a new study `name` on `url`."""
    storage = open_optuna_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    for i in range(trials):
        one_trial(study, i, epochs)
    ms = (time.perf_counter() - start) * 1000 / trials
    assert len(study.trials) == trials
    return ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--postgres", help="a PostgreSQL URL (default: a private server)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = None
    if args.postgres is None:
        from pg import PgServer, pg_bin_dir
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            ap.error("no PostgreSQL binaries on this machine: pass --postgres URL")
        server = PgServer(bin_dir, fast=False).start()
        args.postgres = server.create_database("storage_cost")
    work = Path(tempfile.mkdtemp(prefix="ktg-storage-cost-"))
    urls = {"sqlite": f"sqlite:///{work / 'optuna.db'}",
            "journal": f"journal:{work / 'optuna.log'}",
            "postgresql": args.postgres}
    ms: dict[str, list[float]] = {k: [] for k in urls}
    try:
        for rep in range(args.reps):
            order = list(urls)[rep % 3:] + list(urls)[:rep % 3]
            for kind in order:
                ms[kind].append(time_storage(urls[kind], f"bench-{rep}", args.trials,
                                             args.epochs))
    finally:
        if server is not None:
            server.stop()
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"{args.trials} trials x {args.reps} repetitions, {args.epochs} reports each, "
          f"12 parameters; median ms per trial (ratio to SQLite)")
    for kind, m in med.items():
        reps = ", ".join(f"{x:.1f}" for x in ms[kind])
        print(f"  {kind:<11} {m:7.1f} ms  ({m / med['sqlite']:.2f}x)   repetitions: {reps}")
    print(json.dumps({"ms_per_trial": med, "runs": ms, "trials": args.trials,
                      "epochs": args.epochs, "reps": args.reps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
