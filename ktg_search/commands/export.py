"""`ktg export RUN`: a trial's graph as a graph file (to train it elsewhere), with the
search's training settings as its `recipe` (config.recipe_of: the machine-local fields
seed, device, data_root, inception_weights and max_iters_per_epoch are left out)."""
from __future__ import annotations

from pathlib import Path

from ..errors import KtgError


def add_parser(sub) -> None:
    from ..files.outputs import add_out_args
    sp = sub.add_parser("export", help="write a trial's graph as a graph file")
    sp.add_argument("run", help="a run directory")
    who = sp.add_mutually_exclusive_group(required=True)
    who.add_argument("--rank", type=int,
                     help="1 = the best searched trial by objective (the search's baselines "
                          "are not ranked: they are known graphs; export one by --trial)")
    who.add_argument("--trial", help="a trial id")
    add_out_args(sp, "graph file to write", required=True)
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..files.schemas import for_terminal
    from ..method.trainconfig import recipe_of
    from ..method.graph import Graph
    from ..files.outputs import output_file
    from ..results.book import load_results
    from ..method.scoring import objective_rule
    from ..search.runinfo import read_run_info
    out = output_file(args.out, args.force)
    df = load_results(args.run)
    info = read_run_info(args.run)  # run.json, every field checked
    search = info["config"]  # the run's SearchConfig
    # --rank ranks what the search found: a baseline ranked 1 would hand the user the
    # graph they already had (dcgan-sn often wins at the embedded scale)
    ranked = df[(df.status != "duplicate") & (df.baseline == "")].sort_values(
        "objective", ascending=False, na_position="last")
    above = df.iloc[:0]  # the baselines that beat the exported trial (said for --rank)
    if args.trial:
        hit = df[df.trial_id == args.trial]
        if hit.empty:
            raise KtgError(f"--trial {args.trial!r} is not in {args.run}; valid: "
                           f"{', '.join(df.trial_id.astype(str).head(20))}"
                           f"{' ...' if len(df) > 20 else ''}")
        row = hit.iloc[0]
    else:
        if not 1 <= args.rank <= len(ranked):
            raise KtgError(f"--rank {args.rank} is out of range; valid: 1..{len(ranked)} "
                           f"(the searched trials; baselines by --trial)")
        row = ranked.iloc[args.rank - 1]
        above = df[(df.baseline != "") & (df.objective > row["objective"])]
    if not row["graph"]:
        raise KtgError(f"trial {row['trial_id']} has no graph recorded ({row['error']})")
    g = Graph.from_json(row["graph"], where=f"trial {row['trial_id']}'s graph in {args.run}")
    run_name = Path(args.run).resolve().name
    g.name = f"{run_name}-{row['trial_id']}"[:200]
    g.description = (f"exported from run {run_name}, trial {row['trial_id']}, "
                     f"objective {row['objective']:.4f} "
                     f"({objective_rule(search.train.objective)}) at epoch "
                     f"{row['best_epoch']}")
    g.recipe = recipe_of(search.train)
    g.save(out)
    # the trial id and the graph come from the run's files: escaped for the terminal
    print(for_terminal(f"wrote {out}: trial {row['trial_id']}, objective "
                       f"{row['objective']:.4f}"))
    if not above.empty:  # say it, so nobody reads rank 1 as "the best there is"
        print(for_terminal("baselines with a higher objective: " + ", ".join(
            f"{b.baseline} ({b.objective:.4f}, trial {b.trial_id})"
            for b in above.sort_values("objective", ascending=False).itertuples())))
    print(for_terminal(g.draw()))
    return 0
