"""Baselines inside every search (issue 21): the known graphs trained beside the searched
ones, marked in the table and the study, never stopped early, not counted in
`num_trials`, and one sentence that says whether searching paid. The resume side (a
killed search never enqueues them twice) is in test_resume.py's kill test."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import optuna
import pytest

from ktg_search.method.graph import Graph
from ktg_search.results.book import load_results
from ktg_search.results.verdict import searching_paid
from ktg_search.search.baselines import baselines_of, params_in_space
from ktg_search.search.config import SearchConfig, load_preset
from shared_files import ktg, refused

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2, gates=["through", "cutoff"],
            num_trials=4, max_epochs=2, grace_period=1, reduction_factor=2,
            eval_samples=100, max_iters_per_epoch=4, fid=False, d_width=16, seed=31,
            concurrency=2, baselines=["mad-gan", "dcgan-sn"])


# ---- which graphs, and how the space holds them ---------------------------------------------
def test_every_preset_has_baselines_and_a_config_file_has_none():
    from ktg_search.search.config import presets
    assert {"quick", "digits", "digits-m", "paper-cifar10"} <= set(presets())
    for name in presets():
        assert load_preset(name).baselines is True
    # a run.json written before baselines resumes as it ran
    assert SearchConfig.from_dict({"num_trials": 3}).baselines is False


def test_the_space_derived_baselines_are_what_their_names_say():
    cfg = load_preset("quick")                     # k = 3, alphas 100, 300, 1000
    by_name = {b.name: b for b in baselines_of(cfg)}
    assert list(by_name) == ["mad-gan", "through", "dcgan-sn"]
    k = cfg.space.k
    gg = [(s, t) for s in range(k) for t in range(k) if s != t]
    mad, through = by_name["mad-gan"], by_name["through"]
    assert all(mad.graph.gate(s, t) == "cutoff" for s, t in gg)
    assert all(mad.graph.gate("D", t) == "through" for t in range(k))
    assert all(through.graph.gate(s, t) == "through" for s, t in gg + [("D", t) for t in
                                                                         range(k)])
    assert through.graph.alpha == 300.0            # the middle of 100, 300, 1000
    assert [n.model for n in mad.graph.nodes] == [cfg.space.target_model] * k
    # both are graphs the space samples: enqueued with their parameters
    assert mad.params is not None and through.params is not None
    assert mad.params["gate_0_1"] == "cutoff" and through.params["gate_2_1"] == "through"
    assert all(mad.params[f"gate_D_{t}"] == "through" for t in range(k))
    # dcgan-sn (k = 1) is not: its trial carries the graph, no parameter
    dcgan = by_name["dcgan-sn"]
    assert dcgan.params is None and dcgan.graph.k == 1
    assert Graph.from_dict(dcgan.trial_config()["baseline_graph"]).canonical_key() == \
        dcgan.graph.canonical_key()


def test_a_graph_is_in_the_space_only_when_the_space_can_draw_it():
    k1 = SearchConfig.from_dict({"k": 1, "gates": ["through", "cutoff"]}).space
    assert params_in_space(Graph.build(["dcgan-small"], {("D", 0): "through"}), k1) == \
        {"gate_D_0": "through"}
    k2 = SearchConfig.from_dict({"k": 2, "gates": ["through", "cutoff"]}).space
    up = Graph.build(["dcgan-small"] * 2, {("D", 0): "through", ("D", 1): "linear_up"})
    assert params_in_space(up, k2) is None           # linear_up is not a gate of the space
    other_model = Graph.build(["dcgan-small", "dcgan-medium"],
                              {("D", 0): "through", ("D", 1): "through"})
    assert params_in_space(other_model, k2) is None  # nor is dcgan-medium a model of it


@pytest.mark.parametrize("value, names", [("nope", ["'nope'", "mad-gan", "dcgan-sn"]),
                                          ("kd-mse", ["'kd-mse'", "teacher"]),
                                          ("3", ["baselines", "mad-gan"])])
def test_a_bad_baselines_setting_is_one_message(tmp_path, capsys, value, names):
    code, _, err = ktg(["search", "--preset", "quick", "--set", f"baselines={value}",
                        "--storage-path", tmp_path / "runs"], capsys)
    refused(code, err, *names)
    assert not (tmp_path / "runs").exists()


def test_baselines_setting_takes_false_and_lists():
    quick = load_preset("quick")
    assert quick.with_overrides(["baselines=false"]).baselines is False
    assert quick.with_overrides(["baselines=dcgan-sn,mad-gan"]).baselines == \
        ["dcgan-sn", "mad-gan"]


# ---- did searching pay ----------------------------------------------------------------------
def _row(tid, objective, baseline="", status="completed"):
    return {"trial_id": tid, "objective": objective, "baseline": baseline, "status": status}


def test_the_sentence_compares_the_best_searched_graph_with_the_best_baseline():
    rows = [_row("s1", 5.0), _row("s2", 4.2), _row("s3", float("nan"), status="untrainable"),
            _row("s4", 5.0, status="duplicate"), _row("b1", 4.5, "mad-gan"),
            _row("b2", 4.8, "dcgan-sn")]
    # by hand: 5.0 - 4.8 = +0.2; only s1 beats 4.8 (s4 is s1's duplicate, not a trial of
    # its own result); 4 searched trials
    assert searching_paid(rows) == (
        "Searching paid: the best searched graph (s1, objective 5.000) beats the best "
        "baseline (dcgan-sn, 4.800) by 0.200; 1 of 4 searched trials beat every baseline.")
    rows[0]["objective"] = 4.7
    assert searching_paid(rows) == (
        "Searching did not pay: the best searched graph (s1, objective 4.700) trails the "
        "best baseline (dcgan-sn, 4.800) by 0.100; 0 of 4 searched trials beat every "
        "baseline.")
    assert searching_paid([r for r in rows if not r["baseline"]]) is None
    assert "Not known yet: no baseline has an objective" in searching_paid(
        [_row("s1", 5.0), _row("b1", float("nan"), "mad-gan", "running")])


# ---- ASHA never stops a baseline ------------------------------------------------------------
def test_asha_never_stops_a_baseline_and_keeps_it_out_of_the_rungs():
    from ktg_search.search.resume import ResumableASHA
    asha = ResumableASHA(time_attr="epoch", max_t=8, grace_period=1, reduction_factor=2)
    asha.set_search_properties("objective", "max")

    def trial(tid, baseline=None):
        t = SimpleNamespace(trial_id=tid, config={"baseline": baseline} if baseline else {})
        asha.on_trial_add(None, t)
        return t
    strong, weak_base, weak = trial("a"), trial("b", "mad-gan"), trial("c")
    assert asha.on_trial_result(None, strong, {"epoch": 1, "objective": 5.0}) == "CONTINUE"
    # the same weak result: the searched trial is stopped at the rung, the baseline not
    assert asha.on_trial_result(None, weak_base, {"epoch": 1, "objective": 1.0}) == \
        "CONTINUE"
    assert asha.on_trial_result(None, weak, {"epoch": 1, "objective": 1.0}) == "STOP"
    assert dict(asha.recorded())[1] == 2           # a and c, not the baseline
    asha.on_trial_complete(None, weak_base, {"epoch": 8, "objective": 1.0})
    assert dict(asha.recorded())[1] == 2 and dict(asha.recorded())[8] == 0


# ---- a real search --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    from ktg_search.search.driver import run_search
    cfg = SearchConfig.from_dict({**TINY, "preset": "quick"})
    return run_search(cfg, name="b", storage_path=str(tmp_path_factory.mktemp("runs")))


def _study(run):
    info = json.loads((run / "run.json").read_text())
    return optuna.load_study(study_name=info["study_name"], storage=info["storage"])


def test_baselines_are_rows_of_their_own_trained_to_the_end(run):
    df = load_results(run)
    assert len(df) == TINY["num_trials"] + 2 and df.trial_id.is_unique
    base = df[df.baseline != ""].set_index("baseline")
    assert sorted(base.index) == ["dcgan-sn", "mad-gan"]
    assert (df.baseline == "").sum() == TINY["num_trials"]
    assert (base.epochs == TINY["max_epochs"]).all() and (base.status == "completed").all()
    dcgan = Graph.from_json(base.loc["dcgan-sn", "graph"])
    assert dcgan.k == 1 and base.loc["dcgan-sn", "n_generators"] == 1
    mad = Graph.from_json(base.loc["mad-gan", "graph"])
    assert mad.k == 2 and mad.gate(0, 1) == mad.gate(1, 0) == "cutoff"


def test_the_study_holds_each_baseline_once(run):
    trials = _study(run).trials
    named = {t.user_attrs["baseline"]: t for t in trials if "baseline" in t.user_attrs}
    assert sorted(named) == ["dcgan-sn", "mad-gan"] and len(trials) == TINY["num_trials"] + 2
    assert named["mad-gan"].params["gate_0_1"] == "cutoff"   # TPE learns from it
    assert named["dcgan-sn"].params == {}                     # outside the space: no params
    df = load_results(run).set_index("trial_id")
    for t in named.values():
        assert t.state.name == "COMPLETE"
        assert t.value == pytest.approx(df.loc[t.user_attrs["trial_id"], "objective"])


def test_status_and_query_say_whether_searching_paid(run, capsys):
    df = load_results(run)
    searched = df[(df.baseline == "") & (df.status != "duplicate") & df.objective.notna()]
    bases = df[(df.baseline != "") & df.objective.notna()]
    s, b = searched.loc[searched.objective.idxmax()], bases.loc[bases.objective.idxmax()]
    diff = s.objective - b.objective
    code, out, _ = ktg(["status", run], capsys)
    assert code == 0
    line = [ln for ln in out.splitlines() if "searching" in ln.lower()]
    assert len(line) == 1, out
    assert f"({s.trial_id}, objective {s.objective:.3f})" in line[0]
    assert f"({b.baseline}, {b.objective:.3f})" in line[0]
    assert (f"by {diff:+.3f}" in line[0]) == (abs(diff) >= 5e-4)
    assert line[0].startswith("Searching paid" if diff >= 5e-4 else "Searching did not pay")
    code, out, _ = ktg(["query", run, "--where", "baseline == 'dcgan-sn'", "--columns",
                        "trial_id", "baseline"], capsys)
    rows = [ln.split() for ln in out.strip().splitlines()[1:]]
    assert code == 0 and [r[-1] for r in rows] == ["dcgan-sn"], out


def test_a_resumed_finished_search_adds_no_baseline(run, capsys):
    before = len(_study(run).trials)
    code, out, err = ktg(["search", "--resume", run], capsys)
    assert code == 0, err
    assert len(_study(run).trials) == before
    assert len(load_results(run)) == TINY["num_trials"] + 2
    assert not math.isnan(load_results(run).objective.max())


def test_export_rank_ranks_the_searched_trials_and_names_a_stronger_baseline(run, tmp_path,
                                                                             capsys):
    df = load_results(run)
    searched = df[(df.baseline == "") & (df.status != "duplicate")].sort_values(
        "objective", ascending=False, na_position="last")
    best = searched.iloc[0]
    code, out, err = ktg(["export", run, "--rank", "1", "-o", tmp_path / "best.json"], capsys)
    assert code == 0, err
    assert Graph.load(tmp_path / "best.json").canonical_key() == best.graph_key
    stronger = df[(df.baseline != "") & (df.objective > best.objective)]
    named = [ln for ln in out.splitlines() if ln.startswith("baselines with a higher")]
    assert len(named) == (0 if stronger.empty else 1), out
    for b in stronger.itertuples():
        assert f"{b.baseline} ({b.objective:.4f}, trial {b.trial_id})" in named[0]
    # the last rank is the number of searched trials, not of rows
    code, _, err = ktg(["export", run, "--rank", str(len(searched) + 1), "-o",
                        tmp_path / "x.json"], capsys)
    refused(code, err, f"1..{len(searched)}", "--trial")
    assert not (tmp_path / "x.json").exists()
