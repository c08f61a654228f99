"""`ktg compare GRAPH...`: the papers' comparison protocol, one table of IS / FID
mean +- std over seeds per graph (compare.py)."""
from __future__ import annotations

from .common import add_parallel_args, add_training_args, recipe_config
from .train import travel_line


def add_parser(sub) -> None:
    from ..files.outputs import add_out_args
    from ..method.scoring import EPOCH_RULES
    sp = sub.add_parser(
        "compare", help="train graphs over several seeds; one table of IS / FID mean +- std",
        description="Train every GRAPH with every seed (independent runs, in parallel on "
                    "Ray) and write OUT/table.md and OUT/table.csv: per graph, its best "
                    "generator's IS and FID mean +- std over the seeds, every generator's IS, "
                    "parameter counts, epochs and wall time, from the per-run files in "
                    "OUT/<graph>/seed<N>/.")
    sp.add_argument("graphs", nargs="+", metavar="GRAPH",
                    help="a graph JSON file or a built-in graph name (see `ktg graphs`)")
    add_training_args(sp, preset=True)
    sp.add_argument("--seeds", type=int, default=5, help="seeds per graph (default 5)")
    sp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    sp.add_argument("--eval-at", choices=EPOCH_RULES, default="best",
                    help="score a run at its best epoch (default) or at its last")
    add_out_args(sp, "output folder (default ktg_runs/compare)", default="ktg_runs/compare")
    sp.add_argument("--teacher", metavar="PATH",
                    help="teacher checkpoint (from `ktg pretrain`) for every pretrained node; "
                         "needed by the built-in kd-mse and kd-joint")
    sp.add_argument("--resume", action="store_true",
                    help="keep the finished runs in --out that are these runs (the same "
                         "graph, seed, recipe and teacher) and train the rest; a graph or "
                         "seed added to the command trains beside them")
    add_parallel_args(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..studies.compare import compare
    from ..files.fileio import TABLE_CSV, TABLE_MD
    from ..method.trainconfig import check_recipe
    from ..method.graph import resolve_graph
    # one table needs one recipe: --preset and flags (not the graphs' own recipes, which
    # may differ); a graph file's recipe is still checked, as every field read from a file
    recipes = {}
    for spec in args.graphs:
        g = resolve_graph(spec)
        if g.recipe is not None:
            recipes[spec] = check_recipe(g.recipe, where=f"{spec}: recipe")
    cfg = recipe_config(args, args.seed0)
    for spec, recipe in recipes.items():   # graphs searched on another data set or size
        line = travel_line(spec, recipe, cfg, None)
        if line:
            print(line)
    result = compare(args.graphs, cfg, out=args.out, seeds=args.seeds, seed0=args.seed0,
                     eval_at=args.eval_at, teacher=args.teacher, use_ray=not args.no_ray,
                     address=args.address, gpus_per_run=args.gpus_per_run,
                     force=args.force, resume=args.resume)
    print(result.markdown)
    diverged = int(result.table["diverged"].sum())
    if diverged:
        print(f"note: {diverged} run(s) diverged (non-finite loss); their scores before "
              f"divergence are used")
    print(f"files: {result.out}/{TABLE_MD}, {result.out}/{TABLE_CSV}, per run: "
          f"{result.out}/<graph>/seed<N>/ (summary.json, metrics.csv); "
          f"{result.wall_s:.0f} s in all")
    return 0
