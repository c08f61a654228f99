"""Knowledge-transfer graphs: the JSON file format, validation, canonical keys, drawing.

A graph file::

    {"name": "through-3",
     "nodes": [{"model": "dcgan-medium"}, {"model": "dcgan-small", "pretrained": "t.pt"}],
     "edges": [{"src": "D", "dst": 0, "gate": "through"},
               {"src": 1, "dst": 0, "gate": "linear_up"}],
     "transfer": "feature_out", "alpha": 1000}

Edge `s -> t` means: the loss compares s and t and its gradient flows into t only
(DESIGN.md). Every ordered pair of nodes and every D -> t is an edge; edges a file leaves
out are cutoff. Optional keys: `description`, `discriminator` ("sn" | "bn"), `target`
(the node the search scores; default: every generator, by the recipe's objective rule),
`recipe` (the training settings the graph was found with, written by `ktg export`: a
JSON object of TrainConfig fields, used by `ktg train` as defaults). Here a recipe is
only required to be an object; its fields are checked by `trainconfig.check_recipe` where
a run is built from it.

Several discriminators (`"discriminators": m`, 1 to 8, default 1): nodes `D0 .. D(m-1)`,
edge D_j -> t gated like any other (column `gate_D{j}_{t}`), each D_j facing a generator;
with m = 1 the node is `D` (`gate_D_{t}`): older files keep their meaning and key.
`regroup` (m >= 2, regroup.py) is MGGAN's regrouping (thesis, ch. 3).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtgError
from ..registry import DISCRIMINATORS, GATES, GENERATORS, TRANSFERS
from . import graphforms
from .graphforms import Src, d_names, is_d

BUILTIN_DIR = Path(__file__).with_name("graphs")
_TOP_KEYS = {"name", "description", "nodes", "edges", "transfer", "alpha", "discriminator",
             "target", "recipe", "discriminators", "regroup"}
MAX_RECIPE_KEYS = 100  # a TrainConfig has ~25 fields; the rest is refused by check_recipe
_NODE_KEYS = {"model", "pretrained"}
_EDGE_KEYS = {"src", "dst", "gate"}
MAX_NODES = MAX_DISCRIMINATORS = 8  # the canonical key tries k! generator renumberings
DEFAULT_ALPHA = 1000.0  # the transfer loss weight, the paper's (losses.py's default too)
MAX_ALPHA = 1e9
MAX_NAME, MAX_DESCRIPTION, MAX_PATH = 200, 10_000, 4096


def _is_text(value: Any, longest: int) -> bool:
    """A non-empty string that can be printed and saved: no NUL, no lone surrogate
    (JSON's "\\ud800" parses to one, and writing it would fail later)."""
    if not isinstance(value, str) or not value or len(value) > longest or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_object(value: Any, valid: set[str], what: str) -> None:
    """`value` is a JSON object with no field outside `valid` (KtgError naming the first
    unknown one and the valid fields)."""
    if not isinstance(value, dict):
        raise KtgError(f"{what} must be a JSON object with fields "
                       f"{', '.join(sorted(valid))}, got {type(value).__name__} "
                       f"{_short(value)}")
    unknown = sorted(set(value) - valid)
    if unknown:
        raise KtgError(f"{what} has unknown field {unknown[0]!r}; valid fields: "
                       f"{', '.join(sorted(valid))}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Node:
    model: str
    pretrained: str | None = None


@dataclass
class Graph:
    """Nodes (generators), a gate on every edge, the transfer kind and alpha."""
    nodes: list[Node]
    gates: dict[tuple[Src, int], str]  # every edge, cutoff included
    transfer: str = "feature_out"
    alpha: float = DEFAULT_ALPHA
    discriminator: str = "sn"
    target: int | None = None
    name: str = ""
    description: str = ""
    recipe: dict | None = None  # training settings (trainconfig.check_recipe), not in the key
    discriminators: int = 1  # m: discriminator nodes D0..D(m-1) ("D" when m = 1)
    regroup: dict | None = None  # MGGAN regrouping settings (regroup.py), m >= 2 only

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def build(cls, models: list[str], gates: dict[tuple[Src, int], str] | None = None,
              transfer: str = "feature_out", alpha: float = DEFAULT_ALPHA,
              **extra: Any) -> "Graph":
        """A graph from model keys and the non-cutoff gates (the rest are cutoff)."""
        spec = {"nodes": [{"model": m} for m in models], "transfer": transfer,
                "alpha": alpha,
                "edges": [{"src": s, "dst": t, "gate": g} for (s, t), g in
                          (gates or {}).items()]}
        spec.update(extra)
        return cls.from_dict(spec)

    @property
    def k(self) -> int:
        return len(self.nodes)

    @property
    def m(self) -> int:
        return self.discriminators

    @staticmethod
    def edge_list(k: int, m: int = 1) -> list[tuple[Src, int]]:
        """All m*k + k(k-1) gated edges in a fixed order: D_j -> t first (by j, then t),
        then s -> t by (s, t). With m = 1 the D edges are ("D", t), as always."""
        return [(d, t) for d in d_names(m) for t in range(k)] + \
            [(s, t) for s in range(k) for t in range(k) if s != t]

    def edges(self) -> list[tuple[Src, int]]:
        """This graph's edge_list."""
        return self.edge_list(self.k, self.m)

    def faced(self, d: str) -> list[int]:
        """The generators discriminator `d` faces: its edges that are not cutoff."""
        return [t for t in range(self.k) if self.gates[(d, t)] != "cutoff"]

    def gate(self, src: Src, dst: int) -> str:
        return self.gates[(src, dst)]

    def incoming(self, t: int) -> dict[Src, str]:
        return {s: g for (s, d), g in self.gates.items() if d == t}

    def frozen_nodes(self) -> list[int]:
        """KTG's rule: every incoming edge cutoff and a pretrained checkpoint -> frozen."""
        return [t for t in range(self.k) if self.nodes[t].pretrained and
                all(g == "cutoff" for g in self.incoming(t).values())]

    def learning_nodes(self) -> list[int]:
        """Nodes with at least one non-cutoff incoming edge: the ones that train."""
        return [t for t in range(self.k)
                if any(g != "cutoff" for g in self.incoming(t).values())]

    def dead_nodes(self) -> list[int]:
        """Nodes that neither learn nor are pretrained teachers: random, forever."""
        frozen, learning = set(self.frozen_nodes()), set(self.learning_nodes())
        return [t for t in range(self.k) if t not in frozen and t not in learning]

    # ---- JSON --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Any, where: str = "graph") -> "Graph":
        """Validate a parsed graph file; KtgError names the bad field and valid values."""
        _check_object(spec, _TOP_KEYS, f"{where}: the top level")
        nodes_spec = spec.get("nodes")
        if not isinstance(nodes_spec, list) or not nodes_spec:
            raise KtgError(f"{where}: `nodes` must be a non-empty list of "
                           f"{{\"model\": ...}} objects, got {_short(nodes_spec)}")
        if len(nodes_spec) > MAX_NODES:
            raise KtgError(f"{where}: {len(nodes_spec)} nodes, but at most {MAX_NODES} "
                           f"are supported")
        nodes = []
        for i, n in enumerate(nodes_spec):
            _check_object(n, _NODE_KEYS, f"{where}: nodes[{i}]")
            if "model" not in n:
                raise KtgError(f"{where}: nodes[{i}] has no `model`; valid models: "
                               f"{', '.join(GENERATORS.names())}")
            if n["model"] not in GENERATORS:
                raise KtgError(f"{where}: nodes[{i}].model {_short(n['model'])} is unknown; "
                               f"valid "
                               f"models: {', '.join(GENERATORS.names())}")
            pre = n.get("pretrained")
            if pre is not None and not _is_text(pre, MAX_PATH):
                raise KtgError(f"{where}: nodes[{i}].pretrained must be a checkpoint path "
                               f"(a string of 1 to {MAX_PATH} characters), got "
                               f"{_short(pre)}")
            nodes.append(Node(n["model"], pre))
        k = len(nodes)
        m = spec.get("discriminators", 1)
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_DISCRIMINATORS:
            raise KtgError(f"{where}: `discriminators` is {_short(m)}; valid: an integer "
                           f"from 1 to {MAX_DISCRIMINATORS}")
        dn = d_names(m)
        edges_spec = spec.get("edges", [])
        if not isinstance(edges_spec, list):
            raise KtgError(f"{where}: `edges` must be a list of {{\"src\", \"dst\", \"gate\"}} "
                           f"objects, got {type(edges_spec).__name__}")
        gates: dict[tuple[Src, int], str] = {e: "cutoff" for e in cls.edge_list(k, m)}
        seen = set()
        valid_src = dn + list(range(k))
        for j, e in enumerate(edges_spec):
            if not isinstance(e, dict):
                raise KtgError(f"{where}: edges[{j}] must be an object, got {_short(e)}")
            bad = set(e) - _EDGE_KEYS
            missing = _EDGE_KEYS - set(e)
            if bad or missing:
                what = (f"unknown field {sorted(bad)[0]!r}" if bad
                        else f"missing field {sorted(missing)[0]!r}")
                raise KtgError(f"{where}: edges[{j}] has {what}; an edge has exactly "
                               f"src, dst, gate")
            s, t, g = e["src"], e["dst"], e["gate"]
            if isinstance(s, bool) or not (s in dn or (isinstance(s, int) and 0 <= s < k)):
                raise KtgError(f"{where}: edges[{j}].src is {_short(s)}; valid: "
                               f"{', '.join(map(str, valid_src))} (the graph has "
                               f"{m} discriminator{'s' if m > 1 else ''}: `discriminators` "
                               f"= {m})")
            if isinstance(t, bool) or not (isinstance(t, int) and 0 <= t < k):
                raise KtgError(f"{where}: edges[{j}].dst is {_short(t)}; valid: "
                               f"{', '.join(map(str, range(k)))}")
            if s == t:
                raise KtgError(f"{where}: edges[{j}] is a self-loop {s} -> {t}; an edge joins "
                               f"two different nodes or D and a node")
            if g not in GATES:
                raise KtgError(f"{where}: edges[{j}].gate {_short(g)} is unknown; valid gates: "
                               f"{', '.join(GATES.names())}")
            if (s, t) in seen:
                raise KtgError(f"{where}: edges[{j}] repeats the edge {s} -> {t}")
            seen.add((s, t))
            gates[(s, t)] = g
        transfer = spec.get("transfer", "feature_out")
        if transfer not in TRANSFERS:
            raise KtgError(f"{where}: `transfer` {_short(transfer)} is unknown; valid: "
                           f"{', '.join(TRANSFERS.names())}")
        alpha = spec.get("alpha", DEFAULT_ALPHA)
        try:
            finite = math.isfinite(float(alpha))
        except (TypeError, ValueError, OverflowError):
            finite = False
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not finite \
                or not 0 < alpha <= MAX_ALPHA:
            raise KtgError(f"{where}: `alpha` is {_short(alpha)}, but must be a number > 0 "
                           f"and <= {MAX_ALPHA:.0f}")
        disc = spec.get("discriminator", "sn")
        if disc not in DISCRIMINATORS:
            raise KtgError(f"{where}: `discriminator` {_short(disc)} is unknown; valid: "
                           f"{', '.join(DISCRIMINATORS.names())}")
        target = spec.get("target")
        if target is not None and (isinstance(target, bool) or not isinstance(target, int)
                                   or not 0 <= target < k):
            raise KtgError(f"{where}: `target` is {_short(target)}; valid: null or "
                           f"{', '.join(map(str, range(k)))}")
        for key, longest in (("name", MAX_NAME), ("description", MAX_DESCRIPTION)):
            value = spec.get(key, "")
            if not (value == "" or _is_text(value, longest)):
                raise KtgError(f"{where}: `{key}` must be a string of at most {longest} "
                               f"characters (no NUL, no lone surrogate), got {_short(value)}")
        if m > 1:
            idle = [d for d in dn if all(gates[(d, t)] == "cutoff" for t in range(k))]
            if idle:
                raise KtgError(f"{where}: discriminator {idle[0]} faces no generator (all "
                               f"its edges are cutoff); give it at least one edge "
                               f"{idle[0]} -> t with t in {', '.join(map(str, range(k)))}, "
                               f"or lower `discriminators` (now {m})")
        regroup = spec.get("regroup")
        if regroup is False:
            regroup = None
        if regroup is not None:
            from .regroup import check_regroup
            regroup = check_regroup(regroup, m, where)
        recipe = spec.get("recipe")
        if recipe is not None and (not isinstance(recipe, dict) or
                                   len(recipe) > MAX_RECIPE_KEYS):
            raise KtgError(f"{where}: `recipe` must be a JSON object of at most "
                           f"{MAX_RECIPE_KEYS} training settings (e.g. {{\"lr_g\": 0.001}}), "
                           f"got {_short(recipe)}")
        return cls(nodes=nodes, gates=gates, transfer=transfer, alpha=float(alpha),
                   discriminator=disc, target=target, name=spec.get("name", ""),
                   description=spec.get("description", ""),
                   recipe=None if recipe is None else dict(recipe),
                   discriminators=m, regroup=regroup)

    @classmethod
    def from_json(cls, text: str, where: str = "graph") -> "Graph":
        from ..files.safeload import parse_json
        return cls.from_dict(parse_json(text, where), where)

    @classmethod
    def load(cls, path: str | Path) -> "Graph":
        from ..files.safeload import read_json
        p = Path(path)
        g = cls.from_dict(read_json(p, "graph file"), where=str(p))
        # a relative `pretrained` path is relative to the graph file, like an include
        g.nodes = [Node(n.model, str((p.parent / n.pretrained)) if n.pretrained and
                        not Path(n.pretrained).is_absolute() else n.pretrained)
                   for n in g.nodes]
        return g

    def to_dict(self) -> dict:
        """The file form: only non-cutoff edges, in the fixed edge order."""
        d: dict[str, Any] = {}
        if self.name:
            d["name"] = self.name
        if self.description:
            d["description"] = self.description
        d["nodes"] = [{"model": n.model, **({"pretrained": n.pretrained} if n.pretrained
                                            else {})} for n in self.nodes]
        if self.m != 1:
            d["discriminators"] = self.m
        d["edges"] = [{"src": s, "dst": t, "gate": self.gates[(s, t)]}
                      for s, t in self.edges() if self.gates[(s, t)] != "cutoff"]
        d["transfer"] = self.transfer
        d["alpha"] = self.alpha
        if self.discriminator != "sn":
            d["discriminator"] = self.discriminator
        if self.target is not None:
            d["target"] = self.target
        if self.regroup is not None:
            d["regroup"] = json.loads(json.dumps(self.regroup))
        if self.recipe is not None:
            d["recipe"] = dict(self.recipe)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        from ..files.fileio import atomic_write_text
        atomic_write_text(Path(path), self.to_json() + "\n")

    # ---- identity and picture (graphforms.py) -----------------------------------------
    def canonical_key(self) -> str:
        """Equal for graphs that differ only by renumbering the generators and the
        discriminators (graphforms.canonical_key)."""
        return graphforms.canonical_key(self)

    def permuted(self, perm: list[int]) -> "Graph":
        """The same graph with node `perm[i]` renamed to `i` (D nodes keep their names)."""
        inv = {old: new for new, old in enumerate(perm)}
        gates = {(s if is_d(s) else inv[s], inv[t]): g for (s, t), g in self.gates.items()}
        return Graph([self.nodes[o] for o in perm], gates, self.transfer, self.alpha,
                     self.discriminator, None if self.target is None else inv[self.target],
                     self.name, self.description, self.recipe, self.discriminators,
                     self.regroup)

    def draw(self) -> str:
        """A plain-text picture: the nodes, then the gate matrix (row = source)."""
        return graphforms.draw(self)


def builtin_graphs() -> dict[str, Path]:
    """The graph files shipped in the package, by name."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.json"))}


def resolve_graph(name_or_path: str | Path) -> Graph:
    """A built-in graph by name, or a graph file by path."""
    p = Path(name_or_path)
    builtins = builtin_graphs()
    if str(name_or_path) in builtins and not p.exists():
        return Graph.load(builtins[str(name_or_path)])
    if p.exists() or p.suffix == ".json" or "/" in str(name_or_path):
        return Graph.load(p)
    raise KtgError(f"unknown graph {str(name_or_path)!r}: not a file, and not a built-in "
                   f"graph; built-in graphs: {', '.join(builtins)}")
