"""Several discriminators in a graph (issue 20): the file format, canonical keys, bad input."""
import json

import pytest

from ktg_search.errors import KtgError
from ktg_search.method.graph import Graph, builtin_graphs
from ktg_search.method.params import edge_param, graph_from_params

# canonical keys of every built-in graph as computed by main's code (3aeae9c) from the raw
# files: a graph with one D must keep its key, or every results table would split
MAIN_KEYS = {
    'dcgan-sn': 'daf22c3b724a0eeb', 'dcgan': 'a8f7897b3922ec55',
    'kd-joint': 'cc797e786676f40d', 'kd-mse': '19855e3c23b27079',
    'mad-gan-2': '4ba75fc08314bec5', 'mad-gan-3': '123c3f0ad79b603a',
    'through-2-feature-in': 'eed139c0c43efbd3', 'through-2-image': '5638a069b85cd5bb',
    'through-2': '06e34859e87008ee', 'through-3-feature-in': 'df38a88aacf978f4',
    'through-3-image': '8cee06ec93d4bc83', 'through-3': 'bcb6dee539b7fbd5'}
SMALL = {"model": "dcgan-small"}
# the kd graphs changed on purpose since (issue 22: the KD paper's pixel MSE and its alpha);
# their keys are checked on the graph as main had it
WAS = {"kd-joint": {"transfer": "image", "alpha": 1000}, "kd-mse": {"transfer": "image",
                                                                    "alpha": 1000}}


@pytest.mark.parametrize("name", sorted(MAIN_KEYS))
def test_one_d_builtin_keys_unchanged(name):
    spec = {**json.loads(builtin_graphs()[name].read_text()), **WAS.get(name, {})}
    g = Graph.from_dict(spec)
    assert g.m == 1 and g.regroup is None
    assert g.canonical_key() == MAIN_KEYS[name]
    assert "discriminators" not in g.to_dict() and "regroup" not in g.to_dict()
    assert all(s == "D" or isinstance(s, int) for s, _ in g.gates)


def multi(edges, m=3, k=3, **extra):
    return Graph.from_dict({"nodes": [SMALL] * k, "discriminators": m,
                            "edges": [{"src": s, "dst": t, "gate": g} for s, t, g in edges],
                            **extra})


def test_multi_d_edges_and_columns():
    g = multi([("D0", 0, "through"), ("D1", 1, "linear_up"), ("D2", 2, "through"),
               ("D2", 0, "correct"), (0, 1, "through")])
    assert g.m == 3 and g.faced("D2") == [0, 2] and g.faced("D1") == [1]
    assert len(g.edges()) == 3 * 3 + 3 * 2
    assert edge_param("D2", 0) == "gate_D2_0"
    again = Graph.from_dict(json.loads(g.to_json()))
    assert again.gates == g.gates and again.canonical_key() == g.canonical_key()
    params = {**{f"model_{i}": "dcgan-small" for i in range(3)}, "transfer": "feature_out",
              "discriminators": 3,
              **{edge_param(s, t): x for (s, t), x in g.gates.items()}}
    assert graph_from_params(params, 3).canonical_key() == g.canonical_key()


def test_key_same_under_generator_and_discriminator_renumbering():
    a = multi([("D0", 0, "through"), ("D1", 1, "linear_up"), ("D1", 2, "through"),
               ("D2", 2, "correct"), (0, 1, "through")])
    # generators renamed 0->2, 1->0, 2->1 and discriminators D0->D1, D1->D2, D2->D0
    gm = {0: 2, 1: 0, 2: 1}
    dm = {"D0": "D1", "D1": "D2", "D2": "D0"}
    b = multi([(dm["D0"], gm[0], "through"), (dm["D1"], gm[1], "linear_up"),
               (dm["D1"], gm[2], "through"), (dm["D2"], gm[2], "correct"),
               (gm[0], gm[1], "through")])
    assert a.gates != b.gates
    assert a.canonical_key() == b.canonical_key()
    # teeth: the same picture with one D edge moved to another generator is another graph
    c = multi([("D0", 0, "through"), ("D1", 1, "linear_up"), ("D1", 0, "through"),
               ("D2", 2, "correct"), (0, 1, "through")])
    assert c.canonical_key() != a.canonical_key()
    # and a renumbering of the Ds alone (the rows swapped) keeps the key
    d = multi([("D2", 0, "through"), ("D0", 1, "linear_up"), ("D0", 2, "through"),
               ("D1", 2, "correct"), (0, 1, "through")])
    assert d.canonical_key() == a.canonical_key()


def test_key_separates_m_and_regrouping():
    edges = [("D0", 0, "through"), ("D1", 1, "through")]
    two = multi(edges, m=2, k=2)
    regrouped = multi(edges, m=2, k=2, regroup={"T0": 5})
    other_t0 = multi(edges, m=2, k=2, regroup={"T0": 6})
    one = Graph.from_dict({"nodes": [SMALL] * 2, "edges": [
        {"src": "D", "dst": 0, "gate": "through"}, {"src": "D", "dst": 1, "gate": "through"}]})
    keys = {two.canonical_key(), regrouped.canonical_key(), other_t0.canonical_key(),
            one.canonical_key()}
    assert len(keys) == 4


@pytest.mark.parametrize("spec, expected", [
    ({"discriminators": 2, "edges": [{"src": "D2", "dst": 0, "gate": "through"}]},
     "edges[0].src is 'D2'; valid: D0, D1, 0, 1"),
    ({"edges": [{"src": "D0", "dst": 0, "gate": "through"}]}, "valid: D, 0, 1"),
    ({"discriminators": 2, "edges": [{"src": "D", "dst": 0, "gate": "through"}]},
     "valid: D0, D1, 0, 1"),
    ({"discriminators": 0}, "`discriminators` is 0; valid: an integer from 1 to 8"),
    ({"discriminators": 9}, "`discriminators` is 9; valid: an integer from 1 to 8"),
    ({"discriminators": True}, "`discriminators` is True"),
    ({"discriminators": 2, "edges": [{"src": "D0", "dst": 0, "gate": "through"},
                                     {"src": "D1", "dst": 1, "gate": "cutoff"}]},
     "discriminator D1 faces no generator"),
    ({"regroup": {}, "edges": [{"src": "D", "dst": 0, "gate": "through"}]},
     "`regroup` needs at least 2 discriminators"),
])
def test_bad_multi_d_input(spec, expected):
    base = {"nodes": [SMALL, SMALL]}
    with pytest.raises(KtgError) as e:
        Graph.from_dict({**base, **spec})
    assert expected in str(e.value)


def test_bad_graph_file_exit_2(tmp_path):
    """ktg validate on a bad multi-D file: exit 2, one message naming the value."""
    import subprocess
    import sys
    from pathlib import Path
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": [SMALL], "discriminators": 9}))
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "ktg_search.cli", "validate", str(bad)],
                       capture_output=True, text=True, cwd=root,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    assert "`discriminators` is 9; valid: an integer from 1 to 8" in r.stderr


def test_report_drawing_shows_every_d_node():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch
    from ktg_search.method.graph import resolve_graph
    from ktg_search.report.figures import draw_graph
    for name, ds, arrows in [("multi-d-3", ["D0", "D1", "D2"], 3 + 6),
                             ("mggan-2", ["D0", "D1"], 2), ("mad-gan-3", ["D"], 3)]:
        fig, ax = plt.subplots()
        draw_graph(ax, resolve_graph(name))
        labels = [t.get_text() for t in ax.texts]
        assert [x for x in labels if x.startswith("D")] == ds, name
        assert sum(isinstance(p, Circle) for p in ax.patches) == len(ds)
        assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == arrows
        plt.close(fig)
