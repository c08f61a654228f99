"""`ktg report` on a real small search made in this session: the ranked table, the
re-evaluation, the gate shares, the pictures, and runs with parts missing."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import shutil

import pandas as pd
import pytest
import torch

from ktg_search.commands import report as report_command
from ktg_search.errors import KtgError
from ktg_search.report import (REEVAL_FILE, asha_rungs, build_report, gate_shares,
                               restore_best)
from ktg_search.results.book import load_history, load_results
from ktg_search.search.config import SearchConfig
from ktg_search.search.driver import run_search

TINY = dict(dataset="digits", image_size=16, batch_size=32, k=2,
            gates=["through", "cutoff", "linear_up"], num_trials=10, max_epochs=3,
            grace_period=1, reduction_factor=2, eval_samples=100, max_iters_per_epoch=4,
            fid=True, d_width=16, seed=7, objective="weakest")
# (test_search.py's run scores the best generator, the default; this one the weakest)
REEVAL_N = 600   # samples per generator in the test's re-evaluation
REEVAL_TOP = 2


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    import ray
    from ktg_search.search.ledger import start_ledger
    root = tmp_path_factory.mktemp("report-runs")
    # Hold a handle on the search's duplicate ledger (run_search drops its own, and Ray
    # then collects the actor: every trial fails to find it). This file tests the
    # report; test_search.py is where the search itself is tested.
    ledger = start_ledger("rep", [])
    try:
        yield run_search(SearchConfig.from_dict({**TINY, "preset": "quick"}), name="rep",
                         storage_path=str(root), verbose=0)
    finally:
        ray.kill(ledger)


class EvalSpy:
    """Wraps the evaluator's per-generator draw (`Evaluator._collect`, under both
    `score_generator` and `score_generators`) and records how many images each drew."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        from ktg_search.data import metrics
        real = metrics.Evaluator._collect
        spy = self

        def collect(ev, sample_fn, num_samples):
            drawn, firsts = [], []

            def counting(m, *args, **kwargs):
                x = sample_fn(m, *args, **kwargs)
                drawn.append(int(x.shape[0]))
                firsts.append(x[0].clone())
                return x
            out = real(ev, counting, num_samples)
            spy.calls.append({"num_samples": num_samples, "images": sum(drawn),
                              "batches": len(drawn), "firsts": firsts})
            return out
        mp.setattr(metrics.Evaluator, "_collect", collect)


def _build(run, spy: EvalSpy | None = None, **kw):
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        if spy is not None:
            spy.install(mp)
        out = build_report(run, strict=True, **kw)
    return out, err.getvalue()


@pytest.fixture(scope="module")
def report(run):
    spy = EvalSpy()
    out, err = _build(run, spy, top=10, reeval_top=REEVAL_TOP, reeval_samples=REEVAL_N)
    return {"out": out, "html": (out / "report.html").read_text(),
            "md": (out / "report.md").read_text(), "spy": spy, "stderr": err}


def _ranked(df):
    """The ranking computed here, independently: non-duplicates with an objective, best
    first, ties in table order."""
    df = df[(df.status != "duplicate") & df.objective.notna()]
    return df.sort_values("objective", ascending=False, kind="stable")


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    nxt = md.find("\n## ", start + 3)
    return md[start:nxt if nxt >= 0 else len(md)]


def _md_table(text: str) -> list[list[str]]:
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


# ---- the full report -----------------------------------------------------------------------
def test_every_image_the_html_names_exists_and_is_a_png(report):
    from PIL import Image
    out, html = report["out"], report["html"]
    names = re.findall(r"<img src='([^']+)'", html)
    assert names, "the report shows no picture"
    for name in names:
        f = out / name
        assert f.is_file(), name
        assert f.parent == out, "images live beside report.html"
        with Image.open(f) as im:
            assert im.format == "PNG", name
            im.verify()
        with Image.open(f) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    for part in ("graph_01.png", "curves.png", "distributions.png", "gate_shares.png",
                 "asha.png", "reevaluation.png", "samples.png", "tsne.png"):
        assert part in names, part
    # the Markdown names the same pictures, and no picture is left unreferenced
    assert sorted(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report["md"])) == sorted(names)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    # offline: nothing is fetched from elsewhere
    assert not re.search(r"(src|href)=['\"]https?:", html)
    assert "<script" not in html


def test_ranked_table_order_is_the_results_sorted_by_best_objective(run, report):
    df = load_results(run)
    want = list(_ranked(df).trial_id.head(10))
    sec = _section(report["md"], "Ranked graphs")
    rows = _md_table(sec)
    assert [r[1] for r in rows] == want
    assert [int(r[0]) for r in rows] == list(range(1, len(want) + 1))
    # the rule is written above the table
    rule = sec[:sec.index("| rank")]
    assert "weakest generator" in rule and "not the last" in rule
    # objective = the best epoch's IS of the weakest generator, from the history
    hist = load_history(run)
    trained = df[df.status.isin(["completed", "stopped"])]
    assert len(trained) > 0, "no completed or stopped trial to check"
    for _, r in trained.iterrows():
        h = hist[hist.trial_id == r.trial_id]
        assert r.objective == pytest.approx(h[["is_g0", "is_g1"]].min(axis=1).max())
    # duplicates are not ranked
    dups = set(df[df.status == "duplicate"].trial_id)
    assert not dups & {r[1] for r in rows}
    objectives = [float(r[2]) for r in rows]
    assert objectives == sorted(objectives, reverse=True)


def test_reevaluation_uses_the_requested_sample_count(run, report):
    df = load_results(run)
    ranked = _ranked(df)
    spy = report["spy"]
    k = TINY["k"]
    # every generator of every re-evaluated graph, each fed exactly REEVAL_N images
    assert len(spy.calls) == REEVAL_TOP * k
    for c in spy.calls:
        assert c["num_samples"] == REEVAL_N
        assert c["images"] == REEVAL_N
        # the evaluator draws in batches: each batch must be new images, not the first
        # batch again (a sampler that reseeds on every call would repeat it)
        assert c["batches"] > 1
        f = c["firsts"]
        assert all(not torch.equal(f[0], x) for x in f[1:])
    store = pd.read_parquet(run / REEVAL_FILE)
    store = store[store.num_samples == REEVAL_N]
    assert len(store) == REEVAL_TOP
    assert list(store.sort_values("search_rank").trial_id) == \
        list(ranked.trial_id.head(REEVAL_TOP))
    for i in range(k):
        assert store[f"fid_g{i}"].notna().all() and (store[f"fid_g{i}"] > 0).all()
    # the best graph's IS with many samples is in a plausible band around the search's
    best = ranked.iloc[0]
    row = store[store.trial_id == best.trial_id].iloc[0]
    assert row.objective == pytest.approx(best.objective, rel=0.35)
    assert store.objective.tolist() == pytest.approx(  # the run's rule: the weakest
        store[[f"is_g{i}" for i in range(k)]].min(axis=1).tolist())
    assert row.best_epoch == best.best_epoch
    assert (store.weights_epoch == store.best_epoch).all()  # the best epoch's weights
    # the re-ranked order stands beside the search order
    sec = _section(report["md"], "Re-evaluation with many more samples")
    rows = _md_table(sec)
    assert [r[2] for r in rows] == list(ranked.trial_id.head(REEVAL_TOP))
    assert sorted(int(r[1]) for r in rows) == list(range(1, REEVAL_TOP + 1))
    by_reeval = store.sort_values("objective", ascending=False).trial_id.tolist()
    assert [r[2] for r in sorted(rows, key=lambda r: int(r[1]))] == by_reeval
    # the learning generators' mixture is re-scored too, and shown beside them
    assert (store.is_mix > 1.0).all() and (store.is_std_mix >= 0).all()
    assert "IS mixture (± std)" in sec
    # and a progress bar was shown
    assert f"re-evaluate ({REEVAL_N} samples)" in report["stderr"]


def test_reevaluated_weights_are_the_best_epochs(run, report):
    """Scored again with the search's own z and sample count, the restored weights give
    the history's IS of the best epoch (not of the last epoch)."""
    from ktg_search.data.loading import load_dataset
    from ktg_search.data.metrics import Evaluator
    df, hist = load_results(run), load_history(run)
    data = load_dataset("digits", 16)
    ev = Evaluator(data, num_samples=TINY["eval_samples"], fid=True, device="cpu")
    ranked = _ranked(df)
    # trials whose best epoch is not their last: there the last weights would differ
    early = ranked[ranked.best_epoch < ranked.epochs].head(2)
    if early.empty:
        pytest.skip("no trial of this run peaked before its last epoch")
    checked = 0
    for _, r in pd.concat([ranked.head(1), early]).iterrows():
        trainer, _ = restore_best(run, r.trial_id, data=data, evaluator=ev)
        got = trainer.evaluate(TINY["eval_samples"])
        h = hist[hist.trial_id == r.trial_id].set_index("epoch")
        for i in range(TINY["k"]):
            assert got[f"is_g{i}"] == pytest.approx(h.loc[r.best_epoch, f"is_g{i}"],
                                                    abs=1e-6), (r.trial_id, i)
            others = h.drop(index=r.best_epoch)[f"is_g{i}"]
            checked += int((abs(others - got[f"is_g{i}"]) > 1e-6).any())
    assert checked, "no other epoch differed: the check could not tell epochs apart"


def test_reevaluation_is_reused_and_redone_for_another_sample_count(run, report, tmp_path):
    spy = EvalSpy()
    before = pd.read_parquet(run / REEVAL_FILE)
    out, _ = _build(run, spy, out=tmp_path / "again", reeval_top=REEVAL_TOP,
                    reeval_samples=REEVAL_N, only=["ranking", "reevaluation"])
    assert spy.calls == []  # nothing recomputed
    after = pd.read_parquet(run / REEVAL_FILE)
    pd.testing.assert_frame_equal(before, after)
    sec = _section((out / "report.md").read_text(), "Re-evaluation with many more samples")
    assert len(_md_table(sec)) == REEVAL_TOP
    # --no-reeval shows what is stored and computes nothing
    out, _ = _build(run, spy, out=tmp_path / "none", reeval_top=REEVAL_TOP,
                    reeval_samples=REEVAL_N, reeval=False, only=["reevaluation"])
    assert spy.calls == []
    sec = _section((out / "report.md").read_text(), "Re-evaluation with many more samples")
    assert len(_md_table(sec)) == REEVAL_TOP and "--no-reeval" in sec
    # another sample count: only the missing rows are computed, the old ones stay
    spy = EvalSpy()
    _build(run, spy, out=tmp_path / "other", reeval_top=1, reeval_samples=200,
           only=["reevaluation"])
    assert [c["num_samples"] for c in spy.calls] == [200] * TINY["k"]
    store = pd.read_parquet(run / REEVAL_FILE)
    assert sorted(store.num_samples.unique()) == [200, REEVAL_N]
    assert (store.num_samples == REEVAL_N).sum() == REEVAL_TOP


def test_gate_shares_match_counts_from_the_table(run, report):
    df = load_results(run)
    ranked = _ranked(df)
    n = len(ranked)
    n_top = max(1, math.ceil(0.1 * n))
    top = ranked.head(n_top)
    shares = gate_shares(df, 0.1, TINY["gates"])
    edges = [c for c in df.columns if c.startswith("gate_")]
    assert len(edges) == TINY["k"] ** 2, edges  # D -> t for each t, s -> t for each pair
    assert len(shares) == len(edges) * len(TINY["gates"])
    md_rows = {(r[0], r[1]): r for r in
               _md_table(_section(report["md"], "What matters: gate shares at the top"))}
    for col in edges:
        s, t = col.split("_")[1:]
        for g in TINY["gates"]:
            tc, ac = int((top[col] == g).sum()), int((ranked[col] == g).sum())
            got = shares[(shares.column == col) & (shares.gate == g)].iloc[0]
            assert (got.top_count, got.top_n, got.all_count, got.all_n) == \
                (tc, n_top, ac, n)
            assert got.top_share == pytest.approx(tc / n_top)
            assert got.all_share == pytest.approx(ac / n)
            # the numbers written in the report
            row = md_rows[(f"{s}->{t}", g)]
            assert row[2] == f"{tc / n_top:.2f} ({tc}/{n_top})"
            assert row[3] == f"{ac / n:.2f} ({ac}/{n})"
    # every edge: shares over the gates sum to one
    for _, grp in shares.groupby("column"):
        assert grp.top_share.sum() == pytest.approx(1.0)
        assert grp.all_share.sum() == pytest.approx(1.0)


def test_asha_rungs_count_trials_from_the_history(run, report):
    hist = load_history(run)
    table = asha_rungs(hist, TINY["max_epochs"], 1, 2)
    reached = hist.groupby("trial_id").epoch.max()
    assert list(table.epoch) == [1, 2, 3]
    for e, v in zip(table.epoch, table.trials):
        assert v == (reached >= e).sum()
    assert table.trials.iloc[0] >= table.trials.iloc[-1]
    rows = _md_table(_section(report["md"], "ASHA at a glance"))
    assert [int(r[2]) for r in rows] == list(table.trials)


def test_every_part_says_what_it_rests_on_or_why_it_is_missing(report):
    md = report["md"]
    sections = md.split("\n## ")[1:]
    assert len(sections) > 0, "the report has no section to check"
    for sec in sections:
        title = sec.splitlines()[0]
        assert "*Rests on:*" in sec or "> **Note:**" in sec, title
    # importances: Optuna's evaluator ran on the stored study, or the report says why not
    imp = _section(md, "What matters: parameter importances (Optuna)")
    assert "COMPLETE trial(s)" in imp
    assert "importances.png" in imp or "> **Note:**" in imp


# ---- runs with parts missing, and bad input -------------------------------------------------
def test_report_renders_for_a_run_with_zero_finished_trials(run, tmp_path):
    """Like a search that has just started: run.json only, no table, no study yet."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    info = json.loads((run / "run.json").read_text())
    info.update(name="fresh", storage=f"sqlite:///{fresh / 'optuna.db'}")
    (fresh / "run.json").write_text(json.dumps(info))
    out, _ = _build(fresh)
    assert out == fresh / "report"
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "no finished trial yet" in md and "no finished trial yet" in html
    assert "Trials in the results table: 0 of 10" in md
    for name in re.findall(r"<img src='([^']+)'", html):
        assert (out / name).is_file()
    assert not (fresh / "optuna.db").exists()  # reading did not create a study
    assert not (fresh / REEVAL_FILE).exists()


def test_report_renders_without_checkpoints_and_ranks_no_duplicate(run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("run.json", "history.parquet"):
        shutil.copy(run / f, bare / f)
    # a duplicate of the best trial (as the results book writes it: the original's
    # numbers, pointing at it) must not take a place in the ranking
    df = load_results(run)
    best = _ranked(df).iloc[0]
    dup = best.copy()
    dup["trial_id"], dup["status"], dup["duplicate_of"] = "dup00001", "duplicate", \
        best.trial_id
    df = pd.concat([pd.DataFrame([dup]), df], ignore_index=True)
    df.to_parquet(bare / "results.parquet", index=False)
    out, _ = _build(bare, reeval_samples=100, only=["ranking", "reevaluation", "graphs",
                                                    "curves", "samples"])
    md = (out / "report.md").read_text()
    ranking = _section(md, "Ranked graphs")
    ids = [r[1] for r in _md_table(ranking)]
    assert "dup00001" not in ids and ids[0] == best.trial_id
    assert f"dup00001 -> {best.trial_id}" in ranking
    shares = gate_shares(df, 0.1)
    assert shares.all_n.iloc[0] == len(_ranked(df)) == len(_ranked(load_results(run)))
    assert "has no checkpoint" in _section(md, "Re-evaluation with many more samples")
    assert "no checkpoint" in _section(md, "Samples of the best graph (same z)")
    assert "graph_01.png" in md and "curves.png" in md  # the rest is still there
    assert "## Distributions" not in md  # `only` leaves the other parts out
    assert not (bare / REEVAL_FILE).exists()


def test_report_folder_is_replaced_whole(run, report, tmp_path):
    out = tmp_path / "rep"
    _build(run, out=out, top=2, only=["ranking", "graphs"])
    assert (out / "graph_02.png").is_file()
    (out / "stale.png").write_bytes(b"x")
    _build(run, out=out, top=1, only=["ranking", "graphs"])
    assert (out / "graph_01.png").is_file() and not (out / "graph_02.png").exists()
    assert not (out / "stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temp dirs left
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.tex").write_text("x")
    with pytest.raises(KtgError, match="non-empty directory"):
        build_report(run, out=keep)
    assert (keep / "thesis.tex").exists()


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="ktg")
    sub = parser.add_subparsers(dest="command", required=True)
    report_command.add_parser(sub)
    args = parser.parse_args(["report", str(tmp_path), "--top", "5", "--no-reeval"])
    assert (args.top, args.no_reeval, args.reeval_samples) == (5, True, 10_000)
    with pytest.raises(KtgError, match="not a run directory.*run.json"):
        args.func(args)
    with pytest.raises(KtgError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(KtgError, match="not a run directory"):
        build_report(tmp_path / "f.txt")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(KtgError, match="not valid JSON"):
        build_report(tmp_path)
    with pytest.raises(KtgError, match="reeval_samples"):
        build_report(tmp_path, reeval_samples=0)
    with pytest.raises(KtgError, match="unknown report part 'pie'; valid: ranking"):
        build_report(tmp_path, only=["pie"])
    assert not (tmp_path / "report").exists()
    # once `report` is wired into the CLI, the same is exit status 2 with one message
    from ktg_search import cli
    choices = next(a.choices for a in cli.build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction))
    if "report" in choices:
        assert cli.main(["report", str(tmp_path / "nope")]) == 2
        assert "does not exist" in capsys.readouterr().err


def test_spearman_by_hand_and_the_rank_correlation_of_rungs():
    import pandas as pd

    from ktg_search.report import rung_rank_correlation, spearman
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); d = (-1, 1, -1, 1, 0) -> 1 - 24/120
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    # four completed trials and one stopped one; objective = best so far per step
    hist = pd.DataFrame([
        {"trial_id": t, "epoch": e, "iteration": 10 * e, "objective": v}
        for t, vals in {"a": [1.0, 1.5, 4.0], "b": [2.0, 2.5, 3.0], "c": [3.0, 3.5, 2.0],
                        "d": [4.0, 4.5, 5.0], "s": [9.0]}.items()
        for e, v in enumerate(vals, start=1)])
    res = pd.DataFrame({"trial_id": list("abcds"),
                        "status": ["completed"] * 4 + ["stopped"],
                        "objective": [4.0, 3.0, 3.5, 5.0, 9.0]})
    t = rung_rank_correlation(hist, res, [10, 20], time_col="iteration")
    # at 10 steps: ranks (1, 2, 3, 4) vs final (3, 1, 2, 4): d = (-2, 1, 1, 0) -> 0.4
    assert list(t.trials) == [4, 4]
    assert t.spearman[0] == pytest.approx(1 - 6 * 6 / (4 * 15))
    assert t.spearman[1] == pytest.approx(1 - 6 * 6 / (4 * 15))  # 1.5 2.5 3.5 4.5: same
    # a rung between reports takes the first report at or past it
    t = rung_rank_correlation(hist, res, [25], time_col="iteration")
    assert t.spearman[0] == pytest.approx(spearman([4.0, 3.0, 2.0, 5.0], [4, 3, 3.5, 5]))


def test_the_report_says_how_far_early_stops_can_be_trusted(run, report):
    md = report["md"]
    assert "## Do early stops predict the final rank?" in md
    part = md.split("## Do early stops predict the final rank?")[1].split("\n## ")[0]
    df = load_results(run)
    n = int((df.status == "completed").sum())
    assert f"{n} trial(s) that ran the whole budget" in part


def test_ranking_shows_the_vol_of_every_generator_where_the_table_has_it(run_copy):
    """The results table's vol_g{i} (the KD paper's sharpness at the best epoch) in the
    ranked table, checked against the history."""
    out, _ = _build(run_copy, out=run_copy / "rep", only=["ranking"])
    sec = _section((out / "report.md").read_text(), "Ranked graphs")
    header = [ln for ln in sec.splitlines() if ln.startswith("| rank")][0]
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert "VoL G0" in cols and "VoL G1" in cols and "Variance of Laplacian" in sec
    hist = load_history(run_copy)
    for row in _md_table(sec):
        h = hist[hist.trial_id == row[1]].iloc[0]  # one epoch per trial
        for i in (0, 1):
            assert float(row[cols.index(f"VoL G{i}")]) == pytest.approx(h[f"vol_g{i}"],
                                                                      rel=1e-3)
