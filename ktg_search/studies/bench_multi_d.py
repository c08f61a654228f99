"""`ktg bench`'s cost of several discriminators: the engine's step time on multi-d-3
(k = 3, m = 3) against through-3 (the same generators and transfer edges, m = 1), timed
interleaved in one run on the same batches, so that load from other processes hits both.
m discriminators cost m D steps and m judging passes in the G step, so the ratio is
expected between 1 and the share of D work times m."""
from __future__ import annotations

import statistics
import time
from typing import Any

from torch import Tensor

MULTI_GRAPH, ONE_GRAPH = "multi-d-3", "through-3"


def time_multi_d(config, data, batches: list[Tensor], warmup: int) -> dict[str, Any]:
    """Median step seconds of the engine on multi-d-3 and on through-3 over `batches`
    (after `warmup` steps each), alternating who goes first; their ratio."""
    from ..method.graph import resolve_graph
    from ..method.training import Trainer
    one = Trainer(resolve_graph(ONE_GRAPH), config, data=data, evaluator=object())
    three = Trainer(resolve_graph(MULTI_GRAPH), config, data=data, evaluator=object())
    t_one, t_three = [], []
    for i, real in enumerate(batches):
        order = (one, three) if i % 2 == 0 else (three, one)
        times = {}
        for who in order:
            t0 = time.perf_counter()
            who.train_step(real)
            times[id(who)] = time.perf_counter() - t0
        if i >= warmup:
            t_one.append(times[id(one)])
            t_three.append(times[id(three)])
    m1, m3 = statistics.median(t_one), statistics.median(t_three)
    return {"graph_m1": ONE_GRAPH, "graph_m3": MULTI_GRAPH, "step_s_m1": m1,
            "step_s_m3": m3, "ratio": m3 / m1, "steps": len(t_one)}


def format_multi_d(r: dict[str, Any], case: str) -> str:
    return (f"several discriminators ({case}, {r['steps']} steps each, interleaved): "
            f"{r['graph_m3']} (m=3) {r['step_s_m3'] * 1000:.0f} ms/step, {r['graph_m1']} "
            f"(m=1) {r['step_s_m1'] * 1000:.0f} ms/step: m=3 costs {r['ratio']:.2f}x")
