"""`ktg train GRAPH`: one graph, several seeds, files a person reads (and reuses a
graph found by a search on another data set)."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import KtgError
from .common import (add_training_args, base_recipe, check_seeds, epoch_bar, recipe_line,
                     train_config)


def add_parser(sub) -> None:
    from ..files.outputs import add_out_args
    sp = sub.add_parser("train", help="train one graph on a data set with several seeds")
    sp.add_argument("graph", help="a graph JSON file or a built-in graph name")
    add_training_args(sp, preset=True)
    sp.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    sp.add_argument("--seed0", type=int, default=0, help="first seed (default 0)")
    add_out_args(sp, "output folder (default ktg_runs/train)", default="ktg_runs/train")
    sp.add_argument("--teacher", help="checkpoint from `ktg pretrain` for every pretrained "
                                      "node (the kd-* graphs)")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..data.loading import load_dataset
    from ..method.graph import resolve_graph
    from .validate import warn_untrainable
    from ..method.evaluation import build_evaluator
    from ..files.outputs import output_folder
    from ..results.runs import seed_table, train_one
    from ..method.trainconfig import check_recipe
    check_seeds(args.seeds)
    graph = resolve_graph(args.graph)
    # the graph's recipe is checked even when --preset or flags replace it: a graph file
    # with a bad value is refused, whichever settings win
    recipe = None if graph.recipe is None else \
        check_recipe(graph.recipe, where=f"{args.graph}: recipe")
    base, source = base_recipe(args, recipe, str(args.graph))
    if args.teacher:
        from ..method.teachers import apply_teacher
        if not Path(args.teacher).expanduser().is_file():
            raise KtgError(f"--teacher {args.teacher!r} does not exist; valid: a checkpoint "
                           f"file written by `ktg pretrain --model M --dataset D -o PATH`")
        graph = apply_teacher(graph, args.teacher)
    cfg0 = train_config(args, args.seed0, base)
    train_config(args, args.seed0 + args.seeds - 1, base)  # the last seed is in range too
    print(recipe_line(source, args))
    warn_untrainable(graph, str(args.graph))
    out, _ = output_folder(args.out, args.force)
    # everything that can fail on bad input fails before a file is written: the data,
    # the evaluator, and every frozen node's checkpoint (loaded as data)
    data = load_dataset(cfg0.dataset, cfg0.image_size, root=cfg0.data_root)
    evaluator = build_evaluator(data, cfg0)  # on the device the runs train on
    from ..method.teachers import check_teachers
    # a teacher made on another data set, channel count or size cannot travel: exit 2
    check_teachers([(graph.name or str(args.graph), graph)], cfg0, data.channels)
    # only when its own recipe is the base: under --preset the recipe is the preset's
    line = travel_line(str(args.graph), recipe if args.preset is None else None, cfg0,
                       data.channels)
    if line:
        print(line)
    created = not out.exists()
    made: list[Path] = []  # the seed folders this call creates (removed if it fails)
    try:
        summaries = []
        bar = epoch_bar(args.seeds * cfg0.epochs, f"train {graph.name or args.graph}")
        for seed in range(args.seed0, args.seed0 + args.seeds):
            cfg = train_config(args, seed, base)

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
    from ..files.fileio import atomic_write_text
    atomic_write_text(out / "table.md", table + "\n")
    print(graph.draw())
    print(table)
    statuses = {s.status for s in summaries}
    if "diverged" in statuses:
        print(f"note: {sum(s.status == 'diverged' for s in summaries)} run(s) diverged "
              f"(non-finite loss); their best IS before divergence is used")
    print(f"files: {out}")
    return 0


def travel_line(where: str, recipe: dict | None, cfg, channels: int | None) -> str | None:
    """One line when a graph trains on another data set or image size than its recipe
    names (reusing a searched graph, the KTG paper's Table 3): what changed, and what of
    the recipe is kept. The models need no change of their own: a generator's output and
    the discriminator's input take the data set's channel count, and every model builds
    at 16, 32 or 64 px. `channels` None: `ktg compare`, whose one recipe replaces every
    graph's own. None when nothing travels."""
    if not recipe:
        return None
    changed = [f"{k} {recipe[k]} -> {getattr(cfg, k)}" for k in ("dataset", "image_size")
               if k in recipe and recipe[k] != getattr(cfg, k)]
    if not changed:
        return None
    made = f"graph travels: {where} was made for {recipe.get('dataset', '?')} at " \
        f"{recipe.get('image_size', '?')} px; {', '.join(changed)}"
    if channels is None:
        return (f"{made} (channels follow the data set); like every graph here it trains "
                f"under the comparison's one recipe, not its own")
    return (f"{made} ({channels} channel{'s' if channels != 1 else ''}: the generators' "
            f"output and D's input follow the data set); the rest of its recipe is kept")
