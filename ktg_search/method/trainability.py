"""Which generators of a knowledge-transfer graph can ever learn to draw: decided from the
graph alone, without torch (`ktg validate` and the search's space size use it).

The rule, derived from where each loss's gradient goes (training.py, losses.py):

- A learning node t (some incoming edge not cutoff, graph.learning_nodes) is trained by
  the sum of its incoming edges' gated losses. The source side of a transfer is detached,
  so an edge's gradient reaches t only; a frozen teacher or a dead node receives none.
- A gate either blocks its edge at every progress and on every sample (`Gate.blocks`:
  cutoff), or passes it at some point of the schedule: through always, linear_up for
  p > 0, linear_down for p < 1, correct on the samples where the source is right. So an
  edge whose gate does not block is active at some point of the run, and one that blocks
  never is.
- The D edge (the adversarial loss, eq. 2) reads t's image: its gradient reaches every
  parameter of t, the output layer (`to_image`) included.
- A transfer edge s -> t reads what the transfer kind compares (`registry.Transfer.layers`):
  the image (None) reaches every parameter; feature taps (block outputs, all before the
  output layer) reach the blocks up to the deepest tap and never the output layer (nor
  the blocks after the deepest tap).

So t trains its output layer iff its D edge is not blocked or the graph's transfer kind
compares images and some transfer edge into t is not blocked. A graph is **untrainable**
when some learning node can never train its output layer (it draws through a random
output layer forever: IS ~1), or when no node learns at all. Nodes with every incoming
edge cut are not learning nodes: a pretrained one is a frozen teacher, any other a dead
node (graph.dead_nodes; reported by `ktg validate`, not untrainable by this rule).

tests/test_trainability.py checks the rule against a one-step autograd probe of the real
Trainer on every built-in graph and on 200 random graphs of each preset's space.
"""
from __future__ import annotations

import re

from ..registry import GATES, transfer_layers
from .graph import Graph


def _blocks(gate: str) -> bool:
    return GATES.entry(gate).blocks


def _has_d_edge(edges: dict) -> bool:
    """A discriminator among the sources: `D`, or `D0`..`D7` with several (generator
    sources are node numbers)."""
    return any(isinstance(s, str) for s in edges)


def reached_layers(graph: Graph, t: int) -> str:
    """What of node t's parameters some active incoming edge trains, in words: "all" (the
    output layer included), "blocks 0-m" (feature taps only), or "none"."""
    edges = {s: g for s, g in graph.incoming(t).items() if not _blocks(g)}
    if not edges:
        return "none"
    layers = transfer_layers(graph.transfer)
    if _has_d_edge(edges) or layers is None:
        return "all"
    return f"blocks 0-{max(layers)}"


def output_dead_nodes(graph: Graph) -> dict[int, str]:
    """Learning nodes that can never train their output layer, each with its reason
    (naming the node, its D edge and its active incoming edges)."""
    out = {}
    layers = transfer_layers(graph.transfer)
    for t in graph.learning_nodes():
        edges = {s: g for s, g in graph.incoming(t).items() if not _blocks(g)}
        if _has_d_edge(edges) or layers is None:
            continue
        names = ", ".join(f"{s} -> {t} ({g})" for s, g in sorted(edges.items()))
        d_edges = ", ".join(f"{s} -> {t} is {g}" for s, g in graph.incoming(t).items()
                            if isinstance(s, str))
        out[t] = (f"node {t} learns only from {graph.transfer} transfers ({names}) and its "
                  f"D edge{'s' if graph.m > 1 else ''} {d_edges}: {graph.transfer} compares "
                  f"generator blocks {', '.join(map(str, layers))} before the output layer, "
                  f"so node {t}'s output layer never gets a gradient")
    return out


# output_dead_nodes' wording, read back by dead_nodes_named: keep the two together
_DEAD_NODE = re.compile(r"node (\d+) learns only from ")


def dead_nodes_named(reason: str) -> list[int]:
    """The nodes an untrainable reason (as written above, also when read back from a
    results table) names as output-dead, in order; for lines too short for the reason."""
    return [int(n) for n in _DEAD_NODE.findall(reason)]


def untrainable_reason(graph: Graph) -> str | None:
    """None when every learning node can train its output at some point of the run and
    at least one node learns; else why not, naming the nodes and edges."""
    if not graph.learning_nodes():
        return "no generator has an incoming edge that is not cutoff: nothing learns"
    dead = output_dead_nodes(graph)
    return "; ".join(dead.values()) if dead else None


def is_trainable(graph: Graph) -> bool:
    return untrainable_reason(graph) is None


def trainable_gate_count(k: int, gates: tuple[str, ...], transfer: str, m: int = 1) -> int:
    """How many of the G^(m k + k(k-1)) gate assignments of a k-node graph with m
    discriminators are trainable, exactly, by counting node by node (each edge enters
    exactly one node, so nodes are independent). With B blocking gates among the G (0 or
    1: cutoff), a node's n = m + k - 1 incoming edges (its m D edges and k - 1 transfer
    edges) may be:
      - all blocked (the node does not learn): B^n ways;
      - image transfer: any of the other G^n - B^n ways;
      - feature transfer: some D edge not blocked, the rest anything:
        (G^m - B^m) * G^(k-1) ways.
    The product over the k nodes, less the B^(k n) graphs in which no node learns. A
    sampled D that faces no generator is dropped (params.graph_from_params), which
    changes no node's edges, so the count holds for the sampled assignments."""
    g = len(gates)
    b = sum(1 for x in gates if _blocks(x))
    n = m + k - 1
    if transfer_layers(transfer) is None:
        per_node = g ** n
    else:
        per_node = b ** n + (g ** m - b ** m) * g ** (k - 1)
    return per_node ** k - b ** (k * n)
