"""Several discriminators end to end (issue 20): a real search on a real local Ray samples
graphs with m = 2, trains them as Tune trials, writes the D columns; `ktg export` gives a
graph file with its discriminators, which `ktg validate` and `ktg train` read back and
train with every D in the checkpoint."""
from __future__ import annotations

import json

import pytest

from ktg_search.files.safeload import load_checkpoint
from ktg_search.method.graph import Graph
from ktg_search.results.book import load_results
from ktg_search.search.config import SearchConfig
from shared_files import ktg

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2, gates=["through", "cutoff"],
            discriminators=[2], regroup=[True], num_trials=4, max_epochs=1, grace_period=1,
            eval_samples=50, max_iters_per_epoch=3, fid=False, d_width=8, seed=41,
            baselines=False)


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    from ktg_search.search.driver import run_search
    cfg = SearchConfig.from_dict({**TINY, "preset": "quick"})
    return run_search(cfg, name="md", storage_path=str(tmp_path_factory.mktemp("runs")))


def test_a_multi_d_search_trains_graphs_with_their_discriminators(run):
    df = load_results(run)
    assert len(df) == TINY["num_trials"]
    for col in ("gate_D0_0", "gate_D0_1", "gate_D1_0", "gate_D1_1", "discriminators",
                "regroup"):
        assert col in df.columns, col
    trained = df[df.status.isin(["completed", "diverged"])]
    assert len(trained) > 0, df[["status", "error"]]
    for _, r in trained.iterrows():
        g = Graph.from_json(r.graph)
        # a sampled D with every edge cut is dropped (graph_from_params): m is what is left
        live = [j for j in range(2) if any(r[f"gate_D{j}_{t}"] != "cutoff" for t in range(2))]
        assert g.m == max(1, len(live)) == r.discriminators
        assert g.canonical_key() == r.graph_key


def test_export_validate_and_train_round_trip_a_multi_d_graph(run, tmp_path, capsys):
    df = load_results(run)
    two = df[(df.discriminators == 2) & df.status.isin(["completed", "diverged"])]
    if two.empty:
        pytest.fail(f"no trained trial kept both discriminators: {list(df.discriminators)}")
    trial = two.iloc[0].trial_id
    best = tmp_path / "g.json"
    code, _, err = ktg(["export", run, "--trial", trial, "-o", best], capsys)
    assert code == 0, err
    spec = json.loads(best.read_text())
    assert spec.get("discriminators") == 2
    assert {e["src"] for e in spec["edges"]} & {"D0", "D1"}
    code, out, err = ktg(["validate", best], capsys)
    assert code == 0, err
    code, out, err = ktg(["train", best, "--device", "cpu", "--max-iters-per-epoch", "2",
                          "--epochs", "1", "-o", tmp_path / "t"], capsys)
    assert code == 0, err
    state = load_checkpoint(tmp_path / "t" / "seed0" / "checkpoint.pt", "test")
    # D0 is the checkpoint's `D`; D1 travels in multi_d
    assert state["multi_d"] is not None and len(state["multi_d"]["D"]) == 1
    assert Graph.from_dict(state["graph"]).canonical_key() == \
        Graph.from_dict(spec).canonical_key() == two.iloc[0].graph_key
