"""`ktg graphs`: the built-in graphs."""
from __future__ import annotations

from .common import add_listing


def add_parser(sub) -> None:
    add_listing(sub, "graphs", "list the built-in graphs", rows)


def rows() -> list[dict]:
    from ..method.graph import Graph, builtin_graphs
    out = []
    for name, path in builtin_graphs().items():
        g = Graph.load(path)
        out.append({"name": name, "k": g.k, "transfer": g.transfer,
                    "description": g.description})
    return out
