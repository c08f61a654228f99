"""`ktg validate GRAPH`: what is wrong with a graph file, or its picture."""
from __future__ import annotations


def add_parser(sub) -> None:
    sp = sub.add_parser("validate", help="check a graph file and draw it")
    sp.add_argument("graph", help="a graph JSON file or a built-in graph name")
    sp.add_argument("--no-files", action="store_true",
                    help="do not check that the `pretrained` checkpoints exist and load (a "
                         "graph meant for another machine)")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..files.schemas import for_terminal
    from ..method.trainconfig import check_recipe
    from ..method.graph import resolve_graph
    g = resolve_graph(args.graph)
    recipe = None if g.recipe is None else \
        check_recipe(g.recipe, where=f"{args.graph}: recipe")
    if not args.no_files:
        from ..files.safeload import check_pretrained_files
        check_pretrained_files(g)
    print(for_terminal(f"{args.graph}: valid; canonical key {g.canonical_key()}"))
    print(for_terminal(g.draw()))  # model names, paths: from the file
    if recipe is not None:
        print("recipe (ktg train's defaults): " +
              ", ".join(f"{k}={v}" for k, v in recipe.items()))
    if g.dead_nodes():
        print(f"note: node(s) {', '.join(map(str, g.dead_nodes()))} have every incoming "
              f"edge cutoff and no pretrained checkpoint: they never learn")
    warn_untrainable(g, str(args.graph))
    return 0


def warn_untrainable(graph, where: str) -> None:
    """One warning line when some learning node of `graph` can never train its output
    layer, or nothing learns (method/trainability.py): a search never trains such a graph;
    `ktg train` still does, as asked."""
    from ..method.trainability import untrainable_reason
    reason = untrainable_reason(graph)
    if reason is not None:
        print(f"warning: {where} is untrainable: {reason}")
