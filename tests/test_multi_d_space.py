"""The search space with several discriminators (issue 20): sizes, sampling, columns."""
from __future__ import annotations

import itertools

import optuna
import pytest

from ktg_search.errors import KtgError
from ktg_search.method.params import graph_from_params
from ktg_search.report.tables import edge_label, is_d_column
from ktg_search.search.space import SpaceSpec


def test_default_space_is_unchanged():
    s = SpaceSpec(k=3)
    assert s.discriminators == (1,) and s.regroup == (False,)
    assert s.size() == 4 ** 9  # G^(k^2), one model, one transfer, one alpha
    params = s.define_by_run(optuna.trial.FixedTrial(
        {f"gate_{a}_{b}": "through" for a, b in [("D", 0), ("D", 1), ("D", 2), (0, 1),
                                                 (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]}))
    assert "discriminators" not in params and "regroup" not in params
    assert s.edge_columns()[:3] == ["gate_D_0", "gate_D_1", "gate_D_2"]


def test_size_counts_every_d_edge_and_regroup_choice():
    s = SpaceSpec(k=2, gates=("through", "cutoff"), discriminators=[1, 2, 3],
                  regroup=[False, True])
    # m=1: 2^(2+2); m=2: 2^(4+2) * 2 regroup choices; m=3: 2^(6+2) * 2
    assert s.size() == 2 ** 4 + 2 ** 6 * 2 + 2 ** 8 * 2
    assert s.size() == sum(2 ** (m * 2 + 2) * (2 if m > 1 else 1) for m in (1, 2, 3))
    cols = s.edge_columns()
    assert {"gate_D_0", "gate_D0_0", "gate_D2_1", "gate_0_1"} <= set(cols)
    assert cols.index("gate_0_1") > max(cols.index(c) for c in cols if is_d_column(c))


def _enumerate_trainable(k: int, m: int, gates: tuple[str, ...], transfer: str) -> int:
    """Every gate assignment of the m D edges and k(k-1) transfer edges, made into the
    graph the search would train (idle Ds dropped) and judged by the rule itself."""
    from ktg_search.method.graph import Graph
    from ktg_search.method.params import edge_param
    from ktg_search.method.trainability import untrainable_reason
    edges = Graph.edge_list(k, m)
    fixed = {f"model_{i}": "dcgan-small" for i in range(k)} | {"transfer": transfer,
                                                                "discriminators": m}
    n = 0
    for combo in itertools.product(gates, repeat=len(edges)):
        params = fixed | {edge_param(s, t): g for (s, t), g in zip(edges, combo)}
        n += untrainable_reason(graph_from_params(params, k)) is None
    return n


@pytest.mark.parametrize("k,m,gates,transfer", [
    (2, 2, ("through", "cutoff", "linear_up"), "feature_out"),
    (2, 3, ("through", "cutoff"), "image"),
    (3, 2, ("cutoff", "through"), "feature_in"),
    (2, 2, ("through", "linear_down"), "feature_out"),  # no blocking gate
])
def test_trainable_count_with_several_ds_equals_enumeration(k, m, gates, transfer):
    from ktg_search.method.trainability import trainable_gate_count
    assert trainable_gate_count(k, gates, transfer, m) == \
        _enumerate_trainable(k, m, gates, transfer)


def test_trainable_size_and_printed_formula_count_every_m():
    s = SpaceSpec(k=2, gates=("through", "cutoff"), discriminators=[1, 2],
                  regroup=[False, True], models=("dcgan-small", "dcgan-medium"))
    # feature_out, by the equation: a node has m D edges and 1 transfer edge; it learns
    # with some D edge on (2^m - 1) * 2 ways, or not at all (1 way); less the all-cut graph
    m1 = (1 + 1 * 2) ** 2 - 1
    m2 = (1 + 3 * 2) ** 2 - 1
    assert s.trainable_size() == 2 * (m1 + 2 * m2)  # 2 models for node 1, 2 regroup choices
    assert s.size() == 2 * (2 ** 4 + 2 * 2 ** 6)
    assert s.size_formula().endswith("= 2^1 * (2^4 + 2 * 2^6)")
    assert "sum over m in [1, 2]" in s.size_formula()
    assert SpaceSpec(k=3).size_formula() == "M^(k-1) * G^(k^2) = 1^2 * 4^9"


def test_sampling_several_ds_gives_gated_d_edges():
    s = SpaceSpec(k=2, discriminators=[3], regroup=[True])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_m = set()
    for _ in range(20):
        trial = study.ask()
        fixed = s.define_by_run(trial)
        params = {**trial.params, **fixed}
        assert params["discriminators"] == 3 and params["regroup"] is True
        assert {f"gate_D{j}_{t}" for j in range(3) for t in range(2)} <= set(params)
        g = s.graph(params)
        faced = [d for d in ([f"D{j}" for j in range(g.m)] if g.m > 1 else ["D"])]
        seen_m.add(g.m)
        if g.m > 1:
            assert all(g.faced(d) for d in faced) and g.regroup is not None
        study.tell(trial, 0.0)
    assert 3 in seen_m


def test_an_idle_sampled_d_is_dropped_and_renumbered():
    base = {"model_0": "dcgan-small", "model_1": "dcgan-small", "transfer": "feature_out",
            "gate_0_1": "cutoff", "gate_1_0": "cutoff", "discriminators": 3,
            "regroup": True}
    gates = {"gate_D0_0": "cutoff", "gate_D0_1": "cutoff",   # D0 idle: dropped
             "gate_D1_0": "through", "gate_D1_1": "cutoff",
             "gate_D2_0": "cutoff", "gate_D2_1": "linear_up"}
    g = graph_from_params({**base, **gates}, 2)
    assert g.m == 2 and g.gate("D0", 0) == "through" and g.gate("D1", 1) == "linear_up"
    assert g.regroup is not None
    # one D left: it is `D`, and regrouping is off
    gates.update(gate_D2_1="cutoff")
    one = graph_from_params({**base, **gates}, 2)
    assert one.m == 1 and one.gate("D", 0) == "through" and one.regroup is None


@pytest.mark.parametrize("spec, expected", [
    ({"discriminators": [0]}, "`discriminators` is [0]"),
    ({"discriminators": [9]}, "`discriminators` is [9]"),
    ({"discriminators": [1, 1]}, "`discriminators` is [1, 1]"),
    ({"regroup": [True]}, "needs a number of discriminators >= 2"),
    ({"regroup": ["yes"]}, "`regroup` is ['yes']"),
])
def test_bad_space_settings(spec, expected):
    with pytest.raises(KtgError) as e:
        SpaceSpec.from_dict({"k": 2, **spec})
    assert expected in str(e.value)


def test_d_columns_labels():
    assert is_d_column("gate_D_2") and is_d_column("gate_D1_2")
    assert not is_d_column("gate_0_1") and not is_d_column("gate_Dx_1")
    assert edge_label("gate_D1_2") == "D1->2"


def test_where_filters_on_multi_d_gate_columns():
    import pandas as pd
    from ktg_search.results.where import filter_rows
    df = pd.DataFrame({"trial_id": ["a", "b", "c"], "discriminators": [2, 3, 1],
                       "gate_D1_0": ["through", "cutoff", ""],
                       "gate_D_0": ["", "", "through"], "objective": [1.0, 2.0, 3.0]})
    out = filter_rows(df, "gate_D1_0 == 'through' and discriminators > 1")
    assert list(out.trial_id) == ["a"]
    assert list(filter_rows(df, "gate_D_0 == 'through'").trial_id) == ["c"]
    with pytest.raises(KtgError, match="gate_D7_0"):
        filter_rows(df, "gate_D7_0 == 'through'")


def test_results_row_has_the_d_columns_of_a_multi_d_space(tmp_path):
    from ktg_search.results.book import ResultsBook
    from ktg_search.search.config import SearchConfig
    cfg = SearchConfig.from_dict({"space": {"k": 2, "discriminators": [1, 2],
                                            "regroup": [False, True]}})
    book = ResultsBook(tmp_path, cfg)
    params = {"model_0": "dcgan-small", "model_1": "dcgan-small", "transfer": "feature_out",
              "alpha": 1000.0, "discriminators": 2, "regroup": True,
              "gate_D0_0": "through", "gate_D0_1": "cutoff", "gate_D1_0": "cutoff",
              "gate_D1_1": "through", "gate_0_1": "cutoff", "gate_1_0": "linear_up"}
    row = book.on_complete("t1", params, last=None, error=None)
    assert row["gate_D0_0"] == "through" and row["gate_D1_1"] == "through"
    assert row["gate_D_0"] == "" and row["discriminators"] == 2 and row["regroup"] is True
    assert row["graph_key"] == cfg.space.graph(params).canonical_key()
    # a one-D space's row has none of the new columns (today's tables)
    one = ResultsBook(tmp_path / "one", SearchConfig.from_dict({"space": {"k": 2}}))
    (tmp_path / "one").mkdir()
    row1 = one.on_complete("t2", {**{k: v for k, v in params.items()
                                     if not k.startswith("gate_D") and k not in ("discriminators", "regroup")},
                                  "gate_D_0": "through", "gate_D_1": "through"}, None, None)
    assert "discriminators" not in row1 and "gate_D0_0" not in row1 and row1["graph_key"]
