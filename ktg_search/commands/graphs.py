"""`ktg graphs`: the built-in graphs."""
from __future__ import annotations

from .common import add_listing, print_listing


def add_parser(sub) -> None:
    add_listing(sub, "graphs", "list the built-in graphs", run)


def run(args) -> int:
    print_listing(rows(), args.format)
    return 0


def rows() -> list[dict]:
    from ..method.graph import Graph, builtin_graphs
    out = []
    for name, path in builtin_graphs().items():
        g = Graph.load(path)
        out.append({"name": name, "k": g.k, "transfer": g.transfer,
                    "description": g.description})
    return out
