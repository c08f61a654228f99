"""The search space's transfer weight: `alphas` sampled as the `alpha` param, carried into
the graph and its canonical key (real Optuna studies, no mocks)."""
from __future__ import annotations

import optuna
import pytest

from ktg_search.errors import KtgError
from ktg_search.method.params import graph_from_params
from ktg_search.search.space import SpaceSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(spec: SpaceSpec, n: int, seed: int = 0) -> list[dict]:
    """n trials of a real study with a RandomSampler: the params Tune would hand over."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = spec.define_by_run(trial)
        out.append({**trial.params, **fixed})
        study.tell(trial, 0.0)
    return out


def test_several_alphas_are_sampled_and_reach_the_graph():
    spec = SpaceSpec(k=2, alphas=(10.0, 100.0, 1000.0))
    params = _sample(spec, 40)
    assert {p["alpha"] for p in params} == {10.0, 100.0, 1000.0}
    for p in params:
        assert spec.graph(p).alpha == p["alpha"]
        # the results table's reading (graph_from_params with the config's alpha) agrees
        assert graph_from_params(p, 2, alpha=999.0).alpha == p["alpha"]
    assert spec.size() == 1 * 4 ** 4 * 1 * 3


def test_one_alpha_is_fixed_not_searched():
    spec = SpaceSpec(k=2, alphas=(30.0,))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    fixed = spec.define_by_run(trial)
    assert "alpha" not in trial.params and fixed["alpha"] == 30.0
    assert spec.graph({**trial.params, **fixed}).alpha == 30.0
    # without `alphas`, the single `alpha` is the space's value (the old setting)
    old = SpaceSpec(k=2, alpha=300.0)
    assert old.alpha_values == (300.0,) and old.size() == 4 ** 4


def test_graphs_that_differ_only_in_alpha_are_not_duplicates():
    spec = SpaceSpec(k=3, alphas=(10.0, 100.0))
    p = _sample(spec, 1)[0]
    a = spec.graph({**p, "alpha": 10.0})
    b = spec.graph({**p, "alpha": 100.0})
    assert a.gates == b.gates and a.nodes == b.nodes and a.transfer == b.transfer
    assert a.canonical_key() != b.canonical_key()
    # while a renumbering of the same graph with the same alpha is one
    assert a.permuted([2, 0, 1]).canonical_key() == a.canonical_key()


@pytest.mark.parametrize("alphas,msg", [((10.0, -1.0), "every alpha must be a number > 0"),
                                        ((float("inf"),), "every alpha must be a number > 0"),
                                        (("ten",), "every alpha must be a number > 0"),
                                        ((10.0, 10.0), "repeats a value")])
def test_bad_alphas_get_one_clear_message(alphas, msg):
    with pytest.raises(KtgError, match=msg):
        SpaceSpec(k=2, alphas=alphas)
