"""A search trial's parameters and its graph: the column names of gated edges
(`edge_param`), the graph a sampled parameter dict describes (`graph_from_params`), and
the graph a trial config carries (`trial_graph`: a baseline outside the search space,
search/baselines.py). The results table's gate columns and Optuna's parameter names are
the same strings.
"""
from __future__ import annotations

from ..errors import KtgError
from .graph import Graph
from .graphforms import d_names, is_d

def edge_param(src, dst: int) -> str:
    """`gate_D_2` is the gate on D -> 2, `gate_D1_2` on D1 -> 2 (several discriminators),
    `gate_0_1` the gate on 0 -> 1 (DESIGN.md)."""
    return f"gate_{src}_{dst}"


def graph_from_params(params: dict, k: int, alpha: float = 1000.0,
                      target: int | None = None) -> Graph:
    """The graph a sampled parameter dict describes (KtgError names a missing key).

    The transfer weight is the params' `alpha` when they have one (a searched or fixed
    value of `SpaceSpec.alpha_values`), else the `alpha` argument. With several
    discriminators (`discriminators` in the params) a sampled D whose edges are all
    cutoff is dropped and the rest renumbered: it would train on real images alone and
    reach no generator, so the graph without it is the same method (and its key finds
    the duplicate); one D left is `D`, and regrouping needs two left."""
    alpha = params.get("alpha", alpha)
    m = params.get("discriminators", 1)  # absent from every space before several Ds
    try:
        models = [params[f"model_{i}"] for i in range(k)]
        gates = {(s, t): params[edge_param(s, t)] for s, t in Graph.edge_list(k, m)}
        transfer = params["transfer"]
    except KeyError as e:
        raise KtgError(f"sampled parameters lack {e.args[0]!r}; have: "
                       f"{', '.join(sorted(params))}") from None
    if m > 1:
        keep = [d for d in d_names(m) if any(gates[(d, t)] != "cutoff" for t in range(k))]
        m = max(1, len(keep))
        rename = dict(zip(keep, d_names(m))) if keep else {}
        gates = {(rename.get(s, s) if is_d(s) else s, t): g for (s, t), g in gates.items()
                 if not is_d(s) or s in rename}
    regroup = {} if params.get("regroup") and m > 1 else None
    return Graph.build(models, {e: g for e, g in gates.items() if g != "cutoff"},
                       transfer=transfer, alpha=alpha, target=target,
                       **({"discriminators": m} if m != 1 else {}),
                       **({"regroup": regroup} if regroup is not None else {}))


# trial config keys beside the sampled parameters (search/baselines.py): a baseline's
# name, and the graph of a baseline the search space cannot express
BASELINE, BASELINE_GRAPH = "baseline", "baseline_graph"


def trial_graph(config: dict, k: int, alpha: float = 1000.0,
                target: int | None = None) -> Graph:
    """The graph a search trial trains: the one its config carries (a baseline outside
    the space), else the one its sampled parameters describe (`graph_from_params`)."""
    if config.get(BASELINE_GRAPH) is not None:
        return Graph.from_dict(config[BASELINE_GRAPH],
                               where=f"baseline {str(config.get(BASELINE))!r}")
    return graph_from_params(config, k, alpha, target)
