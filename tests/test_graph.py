"""Graph files: round trip, canonical keys under renumbering, validation messages,
built-in resolution, frozen/learning/dead nodes and the text drawing."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from ktg_search.errors import KtgError
from ktg_search.method.graph import Graph, Node, builtin_graphs, resolve_graph
from ktg_search.registry import DISCRIMINATORS, GATES, GENERATORS, TRANSFERS

torch.set_num_threads(1)

BUILTINS = builtin_graphs()


# ---- round trip --------------------------------------------------------------------------
def test_there_are_builtin_graphs():
    assert len(BUILTINS) >= 1


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_round_trip(name):
    g = Graph.load(BUILTINS[name])
    h = Graph.from_json(g.to_json())
    assert h.gates == g.gates
    assert h.nodes == g.nodes
    assert h.transfer == g.transfer
    assert h.alpha == g.alpha
    assert h.discriminator == g.discriminator
    assert h.target == g.target
    assert h.name == g.name
    assert h.canonical_key() == g.canonical_key()


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_matches_its_file(name):
    """The loaded graph says what the file says, read independently with json."""
    raw = json.loads(BUILTINS[name].read_text())
    g = Graph.load(BUILTINS[name])
    k = len(raw["nodes"])
    assert g.name == name  # the registered name is the name inside the file
    assert [n.model for n in g.nodes] == [n["model"] for n in raw["nodes"]]
    m = raw.get("discriminators", 1)
    # D_j -> t for each D and t, s -> t for each ordered pair
    assert len(g.gates) == m * k + k * (k - 1)
    listed = {(e["src"], e["dst"]): e["gate"] for e in raw.get("edges", [])}
    for (s, t), gate in g.gates.items():
        assert gate == listed.get((s, t), "cutoff"), (s, t)
    assert g.transfer == raw.get("transfer", "feature_out")
    assert g.alpha == pytest.approx(float(raw.get("alpha", 1000)))
    assert g.discriminator == raw.get("discriminator", "sn")


# ---- canonical key -----------------------------------------------------------------------
BASE = {
    "nodes": [{"model": "dcgan-small"}, {"model": "dcgan-medium"}, {"model": "dcgan-large"}],
    "edges": [
        {"src": "D", "dst": 0, "gate": "through"},
        {"src": "D", "dst": 1, "gate": "linear_up"},
        {"src": "D", "dst": 2, "gate": "correct"},
        {"src": 0, "dst": 1, "gate": "linear_down"},
        {"src": 1, "dst": 2, "gate": "through"},
        {"src": 2, "dst": 0, "gate": "correct"},
        {"src": 2, "dst": 1, "gate": "linear_up"},
        # 0 -> 2 and 1 -> 0 are left out: cutoff
    ],
    "transfer": "feature_in", "alpha": 500, "target": 0,
}

# BASE renumbered by hand, old -> new: 0 -> 2, 1 -> 0, 2 -> 1 (Graph.permuted([1, 2, 0]))
BASE_CYCLED = {
    "nodes": [{"model": "dcgan-medium"}, {"model": "dcgan-large"}, {"model": "dcgan-small"}],
    "edges": [
        {"src": "D", "dst": 2, "gate": "through"},
        {"src": "D", "dst": 0, "gate": "linear_up"},
        {"src": "D", "dst": 1, "gate": "correct"},
        {"src": 2, "dst": 0, "gate": "linear_down"},
        {"src": 0, "dst": 1, "gate": "through"},
        {"src": 1, "dst": 2, "gate": "correct"},
        {"src": 1, "dst": 0, "gate": "linear_up"},
    ],
    "transfer": "feature_in", "alpha": 500, "target": 2,
}

# BASE with nodes 0 and 1 swapped by hand (Graph.permuted([1, 0, 2]))
BASE_SWAPPED = {
    "nodes": [{"model": "dcgan-medium"}, {"model": "dcgan-small"}, {"model": "dcgan-large"}],
    "edges": [
        {"src": "D", "dst": 1, "gate": "through"},
        {"src": "D", "dst": 0, "gate": "linear_up"},
        {"src": "D", "dst": 2, "gate": "correct"},
        {"src": 1, "dst": 0, "gate": "linear_down"},
        {"src": 0, "dst": 2, "gate": "through"},
        {"src": 2, "dst": 1, "gate": "correct"},
        {"src": 2, "dst": 0, "gate": "linear_up"},
    ],
    "transfer": "feature_in", "alpha": 500, "target": 1,
}


def _same_models(spec: dict) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["nodes"] = [{"model": "dcgan-small"} for _ in spec["nodes"]]
    spec.pop("target", None)
    return spec


def _with(spec: dict, **changes) -> dict:
    spec = json.loads(json.dumps(spec))
    spec.update(changes)
    return spec


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_canonical_key_invariant_under_every_renumbering(perm):
    g = Graph.from_dict(BASE)
    p = g.permuted(list(perm))
    assert p.canonical_key() == g.canonical_key()
    # and with identical models, only the gates can tell the nodes apart
    s = Graph.from_dict(_same_models(BASE))
    assert s.permuted(list(perm)).canonical_key() == s.canonical_key()


@pytest.mark.parametrize("perm,hand", [([1, 2, 0], BASE_CYCLED), ([1, 0, 2], BASE_SWAPPED)])
def test_permuted_equals_hand_renumbered_graph(perm, hand):
    g = Graph.from_dict(BASE)
    h = Graph.from_dict(hand)
    p = g.permuted(perm)
    assert p.nodes == h.nodes
    assert p.gates == h.gates
    assert p.target == h.target
    assert h.canonical_key() == g.canonical_key()
    hs = Graph.from_dict(_same_models(hand))
    assert hs.canonical_key() == Graph.from_dict(_same_models(BASE)).canonical_key()


def _one_gate_changed(spec: dict) -> dict:
    # 0 -> 2 was cutoff; making it through changes the multiset of gates, so the result
    # cannot be a renumbering of the original
    spec = json.loads(json.dumps(spec))
    spec["edges"].append({"src": 0, "dst": 2, "gate": "through"})
    return spec


def _one_model_changed(spec: dict) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["nodes"][2]["model"] = "dcgan-medium"
    return spec


def _one_pretrained_added(spec: dict) -> dict:
    spec = json.loads(json.dumps(spec))
    spec["nodes"][1]["pretrained"] = "/ckpt/teacher.pt"
    return spec


@pytest.mark.parametrize("change", [
    pytest.param(_one_gate_changed, id="one-gate"),
    pytest.param(lambda s: _with(s, transfer="image"), id="transfer"),
    pytest.param(_one_model_changed, id="node-model"),
    pytest.param(lambda s: _with(s, alpha=250), id="alpha"),
    pytest.param(lambda s: _with(s, discriminator="bn"), id="discriminator"),
    pytest.param(lambda s: _with(s, target=1), id="target"),
    pytest.param(_one_pretrained_added, id="pretrained"),
])
def test_canonical_key_differs_for_a_different_graph(change):
    g = Graph.from_dict(BASE)
    other = Graph.from_dict(change(BASE))
    assert other.canonical_key() != g.canonical_key()
    # and the difference survives renumbering
    for perm in itertools.permutations(range(3)):
        assert other.permuted(list(perm)).canonical_key() != g.canonical_key()


def test_canonical_key_differs_for_one_gate_with_identical_models():
    s = Graph.from_dict(_same_models(BASE))
    t = Graph.from_dict(_one_gate_changed(_same_models(BASE)))
    assert s.canonical_key() != t.canonical_key()


def test_canonical_key_ignores_name_and_description():
    a = Graph.from_dict(_with(BASE, name="a", description="one"))
    b = Graph.from_dict(_with(BASE, name="b", description="two"))
    assert a.canonical_key() == b.canonical_key()


# ---- malformed files ---------------------------------------------------------------------
VALID = {
    "nodes": [{"model": "dcgan-small"}, {"model": "dcgan-medium"}],
    "edges": [{"src": "D", "dst": 0, "gate": "through"},
              {"src": "D", "dst": 1, "gate": "linear_up"}],
    "transfer": "image", "alpha": 1000,
}


def _spec(**changes) -> dict:
    return _with(VALID, **changes)


def _edge_spec(*edges) -> dict:
    return _spec(edges=[dict(src="D", dst=0, gate="through"), *edges])


def _without(key):
    s = json.loads(json.dumps(VALID))
    del s[key]
    return s


def _node(**kw):
    return _spec(nodes=[{"model": "dcgan-small", **kw}, {"model": "dcgan-small"}])


GEN = GENERATORS.names()
GAT = GATES.names()
TRA = TRANSFERS.names()
DIS = DISCRIMINATORS.names()
TOP = ["nodes", "edges", "transfer", "alpha", "discriminator", "target", "name",
       "description"]

# id, file text (str) or spec (dict), substrings the message must contain
MALFORMED = [
    ("not-json", '{"nodes": [{"model": "dcgan-small"}', ["not valid JSON"]),
    ("top-level-list", '[{"model": "dcgan-small"}]', ["top level", "object", "list"]),
    ("missing-nodes", _without("nodes"), ["`nodes`", "non-empty list", "None"]),
    ("empty-nodes", _spec(nodes=[]), ["`nodes`", "non-empty list", "[]"]),
    ("unknown-model", _spec(nodes=[{"model": "dcgan-huge"}]),
     ["nodes[0].model", "'dcgan-huge'", *GEN]),
    ("node-missing-model", _spec(nodes=[{"pretrained": "x.pt"}]), ["nodes[0]", "model", *GEN]),
    ("node-not-object", _spec(nodes=["dcgan-small"]), ["nodes[0]", "'dcgan-small'"]),
    ("node-unknown-field", _node(size=64), ["nodes[0]", "'size'", "model", "pretrained"]),
    ("unknown-gate", _edge_spec(dict(src=0, dst=1, gate="open")),
     ["edges[1].gate", "'open'", *GAT]),
    ("src-out-of-range", _edge_spec(dict(src=2, dst=1, gate="through")),
     ["edges[1].src", "is 2", "valid: D, 0, 1"]),
    ("src-negative", _edge_spec(dict(src=-1, dst=1, gate="through")),
     ["edges[1].src", "is -1", "valid: D, 0, 1"]),
    ("src-bool", _edge_spec(dict(src=True, dst=1, gate="through")),
     ["edges[1].src", "True"]),
    ("src-lowercase-d", _edge_spec(dict(src="d", dst=1, gate="through")),
     ["edges[1].src", "'d'", "valid: D, 0, 1"]),
    ("dst-not-int", _edge_spec(dict(src=0, dst="1", gate="through")),
     ["edges[1].dst", "'1'", "valid: 0, 1"]),
    ("dst-float", _edge_spec(dict(src=0, dst=1.0, gate="through")),
     ["edges[1].dst", "1.0", "valid: 0, 1"]),
    ("dst-D", _edge_spec(dict(src=0, dst="D", gate="through")), ["edges[1].dst", "'D'"]),
    ("self-loop", _edge_spec(dict(src=1, dst=1, gate="through")),
     ["edges[1]", "self-loop", "1 -> 1"]),
    ("duplicate-edge", _edge_spec(dict(src="D", dst=0, gate="linear_up")),
     ["edges[1]", "repeats", "D -> 0"]),
    ("edge-missing-gate", _edge_spec(dict(src=0, dst=1)),
     ["edges[1]", "missing field 'gate'", "src, dst, gate"]),
    ("edge-unknown-field", _edge_spec(dict(src=0, dst=1, gate="through", weight=2)),
     ["edges[1]", "'weight'", "src, dst, gate"]),
    ("edge-not-object", _edge_spec([0, 1, "through"]), ["edges[1]", "object"]),
    ("edges-not-list", _spec(edges={"D": 0}), ["`edges`", "list", "dict"]),
    ("unknown-transfer", _spec(transfer="pixels"), ["`transfer`", "'pixels'", *TRA]),
    ("alpha-negative", _spec(alpha=-1), ["`alpha` is -1", "> 0"]),
    ("alpha-zero", _spec(alpha=0), ["`alpha` is 0", "> 0"]),
    ("alpha-string", _spec(alpha="1000"), ["`alpha` is '1000'", "> 0"]),
    ("alpha-bool", _spec(alpha=True), ["`alpha` is True", "> 0"]),
    ("alpha-nan", _spec(alpha=float("nan")), ["`alpha` is nan", "> 0"]),
    ("alpha-infinite", _spec(alpha=float("inf")), ["`alpha` is inf", "> 0"]),
    ("unknown-top-level-field", _spec(colour="red"), ["unknown field 'colour'", *TOP]),
    ("target-out-of-range", _spec(target=2), ["`target` is 2", "valid: null or 0, 1"]),
    ("target-string", _spec(target="0"), ["`target` is '0'", "valid: null or 0, 1"]),
    ("pretrained-not-string", _node(pretrained=5), ["nodes[0].pretrained", "string", "5"]),
    ("pretrained-empty", _node(pretrained=""), ["nodes[0].pretrained", "string", "''"]),
    ("unknown-discriminator", _spec(discriminator="wgan"),
     ["`discriminator`", "'wgan'", *DIS]),
    ("name-not-string", _spec(name=3), ["`name`", "string", "3"]),
    ("too-many-nodes", _spec(nodes=[{"model": "dcgan-small"}] * 9), ["9 nodes", "at most 8"]),
]


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "bad-graph.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_valid_base_spec_loads(tmp_path):
    # the malformed cases below are one change away from this valid file
    g = Graph.load(_write(tmp_path, VALID))
    assert g.k == 2 and g.gate("D", 1) == "linear_up"


@pytest.mark.parametrize("content,expected", [pytest.param(c, e, id=i) for i, c, e in MALFORMED])
def test_malformed_graph_file_rejected(tmp_path, content, expected):
    path = _write(tmp_path, content)
    with pytest.raises(KtgError) as e:
        Graph.load(path)
    msg = str(e.value)
    assert str(path) in msg  # the message says which file
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


@pytest.mark.parametrize("content,expected", [
    pytest.param(_edge_spec(dict(src=0, dst=1, gate=["through"])), ["edges[1].gate", *GAT],
                 id="gate-is-list"),
    pytest.param(_spec(nodes=[{"model": ["dcgan-small"]}]), ["nodes[0].model", *GEN],
                 id="model-is-list"),
    pytest.param(_spec(transfer=["image"]), ["`transfer`", *TRA], id="transfer-is-list"),
    pytest.param(_spec(discriminator={"key": "sn"}), ["`discriminator`", *DIS],
                 id="discriminator-is-object"),
    pytest.param(_spec(alpha=10 ** 400), ["`alpha`", "> 0"], id="alpha-huge-integer"),
])
def test_malformed_graph_file_rejected_not_crashing(tmp_path, content, expected):
    path = _write(tmp_path, content)
    with pytest.raises(KtgError) as e:
        Graph.load(path)
    for part in expected:
        assert part in str(e.value)


def test_missing_graph_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(KtgError, match="does not exist"):
        Graph.load(path)


# ---- resolve_graph -----------------------------------------------------------------------
def test_resolve_unknown_name_lists_builtins():
    with pytest.raises(KtgError) as e:
        resolve_graph("no-such-graph")
    msg = str(e.value)
    assert "no-such-graph" in msg
    for name in BUILTINS:
        assert name in msg


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_resolve_builtin_by_name(name):
    g = resolve_graph(name)
    assert g.gates == Graph.load(BUILTINS[name]).gates
    assert g.name == name


def test_resolve_path(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(BASE))
    assert resolve_graph(str(path)).gates == Graph.from_dict(BASE).gates


# ---- missing edges, node roles -----------------------------------------------------------
def test_missing_edges_are_cutoff():
    g = Graph.from_dict({"nodes": [{"model": "dcgan-small"}] * 3,
                         "edges": [{"src": 2, "dst": 1, "gate": "correct"}]})
    expected = {("D", 0), ("D", 1), ("D", 2), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}
    assert set(g.gates) == expected
    assert g.gates[(2, 1)] == "correct"
    assert all(gate == "cutoff" for e, gate in g.gates.items() if e != (2, 1))
    # and the file form lists only the one non-cutoff edge
    assert g.to_dict()["edges"] == [{"src": 2, "dst": 1, "gate": "correct"}]


ROLES = {
    "nodes": [{"model": "dcgan-medium"},                          # 0: learns
              {"model": "dcgan-large", "pretrained": "teacher.pt"},  # 1: frozen teacher
              {"model": "dcgan-small"},                           # 2: never learns
              {"model": "dcgan-small", "pretrained": "/abs/t2.pt"}],  # 3: fine-tuned
    "edges": [{"src": "D", "dst": 0, "gate": "through"},
              {"src": 1, "dst": 0, "gate": "through"},
              {"src": 2, "dst": 0, "gate": "linear_up"},
              {"src": 1, "dst": 3, "gate": "correct"},
              {"src": "D", "dst": 1, "gate": "cutoff"}],  # explicit cutoff is still cutoff
    "transfer": "image",
}


def test_frozen_learning_dead_nodes(tmp_path):
    path = tmp_path / "roles.json"
    path.write_text(json.dumps(ROLES))
    g = Graph.load(path)
    assert g.frozen_nodes() == [1]
    assert g.learning_nodes() == [0, 3]
    assert g.dead_nodes() == [2]
    # a relative checkpoint path is relative to the graph file; an absolute one is kept
    assert g.nodes[1].pretrained == str(tmp_path / "teacher.pt")
    assert g.nodes[3].pretrained == "/abs/t2.pt"
    pic = g.draw()
    line = {i: next(ln for ln in pic.splitlines() if ln.strip().startswith(f"G{i}:"))
            for i in range(4)}
    assert "frozen teacher" in line[1] and "frozen teacher" not in line[0] + line[3]
    assert "never learns" in line[2] and "never learns" not in line[0] + line[1] + line[3]


def test_pretrained_with_incoming_edge_is_not_frozen():
    g = Graph.build(["dcgan-small"], {("D", 0): "linear_down"})
    g.nodes = [Node("dcgan-small", "/ckpt/x.pt")]
    assert g.frozen_nodes() == [] and g.learning_nodes() == [0] and g.dead_nodes() == []


# ---- drawing -----------------------------------------------------------------------------
def test_draw_shows_every_gate_and_model():
    g = Graph.from_dict(BASE)
    pic = g.draw()
    for gate in {v for v in g.gates.values() if v != "cutoff"}:
        assert gate in pic
    for i, n in enumerate(g.nodes):
        assert f"G{i}: {n.model}" in pic
    # each row (source) lists its destinations' gates in order, "." for cutoff
    rows = {ln.split()[0]: ln.split()[1:] for ln in pic.splitlines()
            if ln.split() and ln.split()[0] in {"D", "G0", "G1", "G2"}}
    for s in ["D", 0, 1, 2]:
        label = "D" if s == "D" else f"G{s}"
        expected = [("." if g.gates[(s, t)] == "cutoff" else g.gates[(s, t)])
                    for t in range(3) if t != s]
        assert rows[label] == expected, (label, rows[label])
