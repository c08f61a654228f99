"""`ktg`: the command line. One subcommand per user job; bad input exits with status 2.

    ktg train GRAPH --dataset D      train a graph file or built-in graph, several seeds
    ktg validate GRAPH [--no-files]  explain what is wrong with a graph file
    ktg graphs | presets             what ships with the package
    ktg search [--preset P]          the knowledge-transfer-graph search (Ray Tune)
    ktg status RUN [--watch]         a running or finished search, from its files
    ktg query RUN / ktg export RUN   read the results table, export a trial's graph
    ktg report RUN                   the ranked graph report (HTML + Markdown)
    ktg compare GRAPH... / pretrain  the papers' comparison tables; KD teachers
    ktg bench                        engine speed against the literal reference

Commands that write files take `-o/--out` and refuse an existing output without `--force`;
files from elsewhere (graphs, configs, run directories, checkpoints) are read as data
(safeload.py, checks.py), and bad input is one `ktg CMD: error: ...` line with status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

from .errors import KtgError

FORMATS = ("table", "json", "csv")
MAX_SEEDS = 1000
MAX_BENCH_STEPS = 10_000


def _one_line(text: str) -> str:
    """A message as one line: a value quoted in it may hold line breaks."""
    return " ".join(text.split("\n")) if "\n" in text else text


def _registry():
    from . import registry
    return registry


# ---- output ------------------------------------------------------------------------------
def print_frame(df, fmt: str) -> None:
    """A DataFrame as an aligned table, JSON records or CSV (optuna/cli.py's --format)."""
    if fmt == "json":
        print(df.to_json(orient="records", indent=2))
    elif fmt == "csv":
        print(df.to_csv(index=False), end="")
    else:
        import pandas as pd
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            print(df.to_string(index=False) if not df.empty else "(no rows)")


def _progress(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True,
                dynamic_ncols=True)


# ---- commands ----------------------------------------------------------------------------
def cmd_graphs(args) -> int:
    import pandas as pd
    from .graph import Graph, builtin_graphs
    rows = []
    for name, path in builtin_graphs().items():
        g = Graph.load(path)
        rows.append({"name": name, "k": g.k, "transfer": g.transfer,
                     "description": g.description})
    print_frame(pd.DataFrame(rows), args.format)
    return 0


def cmd_presets(args) -> int:
    import pandas as pd
    from .search import load_preset, preset_description, presets
    rows = []
    for name in presets():
        c = load_preset(name)
        rows.append({"name": name, "dataset": c.dataset, "px": c.image_size, "k": c.k,
                     "trials": c.num_trials, "max_epochs": c.max_epochs,
                     "description": preset_description(name)})
    print_frame(pd.DataFrame(rows), args.format)
    return 0


def cmd_validate(args) -> int:
    from .graph import resolve_graph
    g = resolve_graph(args.graph)
    if not args.no_files:
        from .safeload import check_pretrained_files
        check_pretrained_files(g)
    print(f"{args.graph}: valid; canonical key {g.canonical_key()}")
    print(g.draw())
    if g.dead_nodes():
        print(f"note: node(s) {', '.join(map(str, g.dead_nodes()))} have every incoming "
              f"edge cutoff and no pretrained checkpoint: they never learn")
    if not g.learning_nodes():
        print("note: no generator in this graph can learn")
    return 0


def _train_config(args, epochs: int, seed: int):
    from .training import TrainConfig
    return TrainConfig(dataset=args.dataset, image_size=args.image_size,
                       batch_size=args.batch_size, epochs=epochs, seed=seed,
                       lr_g=args.lr, lr_d=args.lr, beta1=args.betas[0], beta2=args.betas[1],
                       d_width=args.d_width, d_loss_weighting=args.d_loss_weighting,
                       device=args.device, eval_samples=args.eval_samples,
                       extractor=args.extractor, fid=not args.no_fid,
                       inception_weights=args.inception_weights, data_root=args.data_root,
                       amp=args.amp,
                       max_iters_per_epoch=getattr(args, "max_iters_per_epoch", None))


def _check_dataset(name: str) -> None:
    _registry()
    from .data import check_dataset_name
    check_dataset_name(name)


def cmd_train(args) -> int:
    from .data import load_dataset
    from .graph import resolve_graph
    from .metrics import Evaluator
    from .outputs import output_folder
    from .runs import seed_table, train_one
    _check_dataset(args.dataset)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise KtgError(f"The value of `--seeds` is {args.seeds}, but must be an integer "
                       f"with 1 <= --seeds <= {MAX_SEEDS}")
    graph = resolve_graph(args.graph)
    if args.teacher:
        from .compare import apply_teacher
        if not Path(args.teacher).expanduser().is_file():
            raise KtgError(f"--teacher {args.teacher!r} does not exist; valid: a checkpoint "
                           f"file written by `ktg pretrain --model M --dataset D -o PATH`")
        graph = apply_teacher(graph, args.teacher)
    cfg0 = _train_config(args, args.epochs, 0)
    cfg0.validate()
    _train_config(args, args.epochs, args.seed0 + args.seeds - 1).validate()  # last seed
    out, _ = output_folder(args.out, args.force)
    # everything that can fail on bad input fails before a file is written: the data,
    # the evaluator, and every frozen node's checkpoint (loaded as data)
    data = load_dataset(args.dataset, args.image_size, root=args.data_root)
    evaluator = Evaluator(data, extractor=args.extractor, num_samples=args.eval_samples,
                          fid=not args.no_fid, device="cpu" if args.device == "auto"
                          else args.device, inception_weights=args.inception_weights)
    from .compare import check_teachers
    check_teachers([(graph.name or str(args.graph), graph)], cfg0, data.channels)
    created = not out.exists()
    made: list[Path] = []  # the seed folders this call creates (removed if it fails)
    try:
        summaries = []
        bar = _progress(args.seeds * args.epochs, f"train {graph.name or args.graph}")
        for seed in range(args.seed0, args.seed0 + args.seeds):
            cfg = _train_config(args, args.epochs, seed)

            def tick(row, seed=seed):
                best = max((row.get(f"is_g{i}", float("nan")) for i in range(graph.k)),
                           default=float("nan"))
                bar.set_postfix(seed=seed, best_IS=f"{best:.2f}")
                bar.update(1)
            if not (out / f"seed{seed}").exists():
                made.append(out / f"seed{seed}")
            summaries.append(train_one(graph, cfg, out / f"seed{seed}", data=data,
                                       evaluator=evaluator, on_epoch=tick))
        bar.close()
    except BaseException:
        # nothing half-written is left behind, and nothing this call did not make is
        # deleted (with --force, files of an earlier run in OUT stay)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for d in made:
                shutil.rmtree(d, ignore_errors=True)
        raise
    table = seed_table(graph, summaries)
    from .results import atomic_write_text
    atomic_write_text(out / "table.md", table + "\n")
    print(graph.draw())
    print(table)
    statuses = {s.status for s in summaries}
    if "diverged" in statuses:
        print(f"note: {sum(s.status == 'diverged' for s in summaries)} run(s) diverged "
              f"(non-finite loss); their best IS before divergence is used")
    print(f"files: {out}")
    return 0


def cmd_search(args) -> int:
    from .results import load_results
    from .search import SearchConfig, load_config_file, load_preset, run_search
    if args.resume:
        run = run_search(SearchConfig(), resume=args.resume, address=args.address,
                         verbose=args.verbose,
                         allow_external_storage=args.allow_external_storage)
    else:
        cfg = load_config_file(args.config) if args.config else load_preset(args.preset)
        sets = list(args.set or [])
        if args.num_trials is not None:
            sets.append(f"num_trials={args.num_trials}")
        if args.max_epochs is not None:
            sets.append(f"max_epochs={args.max_epochs}")
            cfg_grace = cfg.grace_period
            if cfg_grace > args.max_epochs:
                sets.append(f"grace_period={args.max_epochs}")
        if args.cpus_per_trial is not None:
            sets.append(f"cpus_per_trial={args.cpus_per_trial}")
        if args.gpus_per_trial is not None:
            sets.append(f"gpus_per_trial={args.gpus_per_trial}")
        if sets:
            cfg = cfg.with_overrides(sets)
        run = run_search(cfg, name=args.name, storage_path=args.storage_path,
                         address=args.address, verbose=args.verbose)
    df = load_results(run)
    if len(df) and (df.status == "error").all():
        first = str(df.error.iloc[0]) if "error" in df else ""
        print(f"ktg search: every trial failed ({len(df)} of {len(df)}); the first: {first}; "
              f"details in {run}/search.log and the trials' error files", file=sys.stderr)
        return 1
    return 0


def cmd_status(args) -> int:
    from .status import run_status
    return run_status(args.run, watch=args.watch, top=args.top)


def cmd_query(args) -> int:
    from .results import load_results
    df = load_results(args.run)
    if args.where is not None:
        from .where import filter_rows
        df = filter_rows(df, args.where)  # our own small language: never Python
    if args.sort:
        if args.sort not in df.columns:
            raise KtgError(f"--sort: unknown column {args.sort!r}; valid: "
                           f"{', '.join(df.columns)}")
        df = df.sort_values(args.sort, ascending=args.asc, na_position="last")
    if args.top is not None:
        if args.top < 1:
            raise KtgError(f"The value of `--top` is {args.top}, but must be an integer >= 1")
        df = df.head(args.top)
    if args.columns:
        cols = [c for part in args.columns for c in part.split(",") if c]
        bad = [c for c in cols if c not in df.columns]
        if bad:
            raise KtgError(f"--columns: unknown column {bad[0]!r}; valid: "
                           f"{', '.join(df.columns)}")
        df = df[cols]
    elif args.format == "table":
        keep = [c for c in df.columns if c not in ("graph", "error") and
                not c.startswith("gate_")]
        df = df[keep]
    print_frame(df, args.format)
    return 0


def cmd_export(args) -> int:
    from .graph import Graph
    from .outputs import output_file
    from .results import load_results
    out = output_file(args.out, args.force)
    df = load_results(args.run)
    ranked = df[df.status != "duplicate"].sort_values("objective", ascending=False,
                                                      na_position="last")
    if args.trial:
        hit = df[df.trial_id == args.trial]
        if hit.empty:
            raise KtgError(f"--trial {args.trial!r} is not in {args.run}; valid: "
                           f"{', '.join(df.trial_id.astype(str).head(20))}"
                           f"{' ...' if len(df) > 20 else ''}")
        row = hit.iloc[0]
    else:
        if not 1 <= args.rank <= len(ranked):
            raise KtgError(f"--rank {args.rank} is out of range; valid: 1..{len(ranked)}")
        row = ranked.iloc[args.rank - 1]
    if not row["graph"]:
        raise KtgError(f"trial {row['trial_id']} has no graph recorded ({row['error']})")
    g = Graph.from_json(row["graph"], where=f"trial {row['trial_id']}'s graph in {args.run}")
    run_name = Path(args.run).resolve().name
    g.name = f"{run_name}-{row['trial_id']}"[:200]
    g.description = (f"exported from run {run_name}, trial {row['trial_id']}, "
                     f"objective {row['objective']:.4f} (best IS reached) at epoch "
                     f"{row['best_epoch']}")
    g.save(out)
    print(f"wrote {out}: trial {row['trial_id']}, objective {row['objective']:.4f}")
    print(g.draw())
    return 0


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench
    if not 1 <= args.steps <= MAX_BENCH_STEPS:
        raise KtgError(f"The value of `--steps` is {args.steps}, but must be an integer with "
                       f"1 <= --steps <= {MAX_BENCH_STEPS}")
    result = run_bench(steps=args.steps, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


# ---- the parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .outputs import add_out_args
    reg = _registry()
    p = argparse.ArgumentParser(prog="ktg", description="Search knowledge-transfer graphs "
                                "for multi-generator GAN training on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fmt(sp):
        sp.add_argument("--format", choices=FORMATS, default="table")

    sp = sub.add_parser("graphs", help="list the built-in graphs")
    fmt(sp)
    sp.set_defaults(func=cmd_graphs)
    sp = sub.add_parser("presets", help="list the search presets")
    fmt(sp)
    sp.set_defaults(func=cmd_presets)
    sp = sub.add_parser("validate", help="check a graph file and draw it")
    sp.add_argument("graph", help="a graph JSON file or a built-in graph name")
    sp.add_argument("--no-files", action="store_true",
                    help="do not check that the `pretrained` checkpoints exist and load (a "
                         "graph meant for another machine)")
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("train", help="train one graph on a data set with several seeds")
    sp.add_argument("graph", help="a graph JSON file or a built-in graph name")
    add_training_args(sp, reg)
    sp.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    sp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    add_out_args(sp, "output folder (default ktg_runs/train)", default="ktg_runs/train")
    sp.add_argument("--teacher", help="checkpoint from `ktg pretrain` for every pretrained "
                                      "node (the kd-* graphs)")
    sp.add_argument("--max-iters-per-epoch", type=int, help=argparse.SUPPRESS)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("search", help="run a knowledge-transfer-graph search on Ray Tune")
    sp.add_argument("--preset", default="quick", help="a preset name (see `ktg presets`)")
    sp.add_argument("--config", help="a whole search config as JSON")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one setting (repeatable)")
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
                         "postgresql://)")
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="show Ray's and Tune's own output (tables, start-up) instead of "
                         "the status line; otherwise it goes to RUN/search.log")
    sp.set_defaults(func=cmd_search)

    sp = sub.add_parser("status", help="a snapshot of a running or finished search")
    sp.add_argument("run", help="a run directory")
    sp.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                    help="refresh every SECONDS (default 5) until the search ends")
    sp.add_argument("--top", type=int, default=5, help="graphs to list (default 5)")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("query", help="filter and sort a run's results table")
    sp.add_argument("run", help="a run directory")
    sp.add_argument("--where", help='a filter over the columns, e.g. "objective > 5 and '
                    "transfer == 'image'\": column names, literals, == != < <= > >=, in "
                    "[...], + - * /, and/or/not, isna(column)")
    sp.add_argument("--sort", default="objective")
    sp.add_argument("--asc", action="store_true", help="ascending (default: descending)")
    sp.add_argument("--top", type=int)
    sp.add_argument("--columns", nargs="+")
    fmt(sp)
    sp.set_defaults(func=cmd_query)

    sp = sub.add_parser("export", help="write a trial's graph as a graph file")
    sp.add_argument("run", help="a run directory")
    who = sp.add_mutually_exclusive_group(required=True)
    who.add_argument("--rank", type=int, help="1 = the best trial by objective")
    who.add_argument("--trial", help="a trial id")
    add_out_args(sp, "graph file to write", required=True)
    sp.set_defaults(func=cmd_export)

    from .compare import add_compare_parser, add_pretrain_parser
    from .report import add_report_parser
    add_report_parser(sub)
    add_compare_parser(sub, reg)
    add_pretrain_parser(sub, reg)

    sp = sub.add_parser("bench", help="engine speed against the literal reference")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--steps", type=int, default=20)
    sp.set_defaults(func=cmd_bench)
    return p


def add_training_args(sp, reg) -> None:
    from .training import D_LOSS_WEIGHTINGS
    sp.add_argument("--dataset", default="digits",
                    help="one of " + ", ".join(n + (":PATH" if n == "folder" else "")
                                               for n in reg.DATASETS.names()))
    sp.add_argument("--epochs", type=int, default=10)
    sp.add_argument("--image-size", type=int, choices=(16, 32, 64), default=16)
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (G and D)")
    sp.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999),
                    metavar=("B1", "B2"), help="Adam betas (default 0.5 0.999, the "
                    "paper's; 0 0.9 learns faster at digits scale, see README)")
    sp.add_argument("--d-width", type=int, default=64, help="discriminator base width")
    sp.add_argument("--d-loss-weighting", choices=D_LOSS_WEIGHTINGS, default="uniform",
                    help="eq. 1 over a D step: uniform (every sample alike) or paper_steps "
                    "(real half of the loss, as Sec. 3.3.1's steps repeated k times)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sp.add_argument("--amp", choices=("off", "bf16"), default="off")
    sp.add_argument("--eval-samples", type=int, default=1000)
    sp.add_argument("--extractor", choices=reg.EXTRACTORS.names() or None,
                    default="classifier")
    sp.add_argument("--inception-weights", help="torch-fidelity Inception weights file")
    sp.add_argument("--no-fid", action="store_true", help="skip FID")
    sp.add_argument("--data-root", help="where torchvision data sets live")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KtgError as e:
        print(f"ktg {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: permissions, disk full
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"ktg {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ktg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
