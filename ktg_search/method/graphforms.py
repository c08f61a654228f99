"""A graph's discriminator names, its identity (the canonical key) and its text picture.

Kept apart from graph.py (the file format and its validation) so that each stays short;
this module imports nothing from graph.py (graph.py imports it), and reads a `Graph`
through its attributes only.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Union

Src = Union[str, int]  # "D" (one discriminator), "D0".."D7" (several) or a node index


def d_names(m: int) -> list[str]:
    """The discriminator nodes of a graph with m of them: ["D"] for one (today's files and
    columns), else ["D0", ..., "D{m-1}"]."""
    return ["D"] if m == 1 else [f"D{j}" for j in range(m)]


def is_d(src: Src) -> bool:
    """Whether an edge source is a discriminator node ("D" or "Dj")."""
    return isinstance(src, str)


def d_index(src: str) -> int:
    """0 for "D", j for "Dj"."""
    return 0 if src == "D" else int(src[1:])


def _signature(g: Any, perm: tuple[int, ...]) -> tuple:
    """The graph read with generator `perm[new]` renamed to `new`. With several
    discriminators their rows (D_j's gates into G0..G(k-1)) are sorted: the smallest of
    all m! renumberings of the D nodes, since the D rows come first and the rest does not
    depend on their order."""
    inv = {old: new for new, old in enumerate(perm)}
    nodes = tuple((g.nodes[old].model, g.nodes[old].pretrained or "") for old in perm)
    target = None if g.target is None else inv[g.target]
    k = g.k
    if g.m == 1:  # today's signature, unchanged, so that every key written so far holds
        gates = tuple(g.gates[(s if s == "D" else perm[s], perm[t])]
                      for s, t in g.edge_list(k))
        return (nodes, gates, target)
    rows = tuple(sorted(tuple(g.gates[(d, perm[t])] for t in range(k))
                        for d in d_names(g.m)))
    gen = tuple(g.gates[(perm[s], perm[t])] for s in range(k) for t in range(k) if s != t)
    return (nodes, rows, gen, target)


def canonical_key(g: Any) -> str:
    """Equal for graphs that differ only by renumbering the generators and renumbering
    the discriminators.

    The smallest signature over all k! generator renumberings (each with its best D
    order), hashed; transfer kind, alpha, the discriminator kind and, with m > 1, m and the
    regrouping settings are part of the key, node names are not.
    """
    best = min(_signature(g, p) for p in itertools.permutations(range(g.k)))
    if g.m == 1:
        blob = json.dumps([g.transfer, g.alpha, g.discriminator, best])
    else:
        blob = json.dumps([g.transfer, g.alpha, g.discriminator, g.m,
                           g.regroup or None, best], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def draw(g: Any) -> str:
    """A plain-text picture: the nodes, then the gate matrix (row = source, every D
    node first)."""
    head = g.name or "graph"
    lines = [f"{head}: k={g.k}, transfer={g.transfer}, alpha={g.alpha:g}, "
             f"D={g.discriminator}" + (f" x{g.m}" if g.m > 1 else "") +
             (f", target=G{g.target}" if g.target is not None else "")]
    if g.regroup:
        r = g.regroup
        lines.append(f"  regrouping: T0={r['T0']:g}, xi={r['xi']:g}, T_max={r['T_max']:g}, "
                     f"seed={r['seed']}, lr rule {'on' if r['lr_rule'] else 'off'}")
    frozen, dead = set(g.frozen_nodes()), set(g.dead_nodes())
    for i, n in enumerate(g.nodes):
        note = " (frozen teacher)" if i in frozen else " (never learns)" if i in dead else ""
        pre = f" <- {n.pretrained}" if n.pretrained else ""
        lines.append(f"  G{i}: {n.model}{pre}{note}")
    w = max(11, *(len(x) + 1 for x in g.gates.values()))
    lines.append("  source -> destination (cutoff edges shown as .)")
    lines.append("  " + " " * 6 + "".join(f"-> G{t}".ljust(w) for t in range(g.k)))
    for s in d_names(g.m) + list(range(g.k)):
        name = s if is_d(s) else f"G{s}"
        cells = []
        for t in range(g.k):
            if s == t:
                cells.append("".ljust(w))
            else:
                x = g.gates[(s, t)]
                cells.append(("." if x == "cutoff" else x).ljust(w))
        lines.append(f"  {name:<6}" + "".join(cells).rstrip())
    return "\n".join(lines)
