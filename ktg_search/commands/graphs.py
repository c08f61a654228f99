"""`ktg graphs`: the built-in graphs."""
from __future__ import annotations

from .common import add_format_arg, print_frame


def add_parser(sub) -> None:
    sp = sub.add_parser("graphs", help="list the built-in graphs")
    add_format_arg(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from ..graph import Graph, builtin_graphs
    rows = []
    for name, path in builtin_graphs().items():
        g = Graph.load(path)
        rows.append({"name": name, "k": g.k, "transfer": g.transfer,
                     "description": g.description})
    print_frame(pd.DataFrame(rows), args.format)
    return 0
