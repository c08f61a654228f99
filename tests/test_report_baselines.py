"""`ktg report RUN --baselines DIR`: the best searched graphs against a real tiny
`ktg compare` folder, its numbers checked against the compare runs' own metrics.csv, the
recipe differences listed, and a folder that is not a compare folder refused."""
from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from shared_files import TINY_TRAIN, ktg, refused

from ktg_search.report import build_report
from ktg_search.results.book import load_history

SECTION = "Searched graphs against the baselines"
SEEDS = 2


def _best_is(run_dir: Path) -> float:
    """The run's best learning generator's best IS over the epochs, from metrics.csv and
    summary.json alone (not through ktg's scoring code)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    k = len(summary["params"])
    nodes = [i for i in range(k) if i not in summary["frozen"]] or list(range(k))
    return max(max(float(r[f"is_g{i}"]) for r in rows) for i in nodes)


def _mix_is(run_dir: Path) -> float:
    """The run's mixture IS at its best epoch, from metrics.csv alone: the `is_mix`
    column with two or more learning generators, the one learner's IS otherwise."""
    summary = json.loads((run_dir / "summary.json").read_text())
    k = len(summary["params"])
    if k - len(summary["frozen"]) < 2:
        return _best_is(run_dir)
    with open(run_dir / "metrics.csv", newline="") as f:
        return max(float(r["is_mix"]) for r in csv.DictReader(f))


@pytest.fixture(scope="module")
def compared(shared_run, tmp_path_factory):
    """A real `ktg compare` (no Ray, tiny): a built-in baseline and the search's rank-1
    graph, two seeds each, with a learning rate and epochs the search did not use."""
    from ktg_search.cli import main
    root = tmp_path_factory.mktemp("baselines")
    results = pd.read_parquet(shared_run / "results.parquet")
    best = results.sort_values("objective", ascending=False, kind="stable").iloc[0]
    graph_file = root / "searched.json"
    graph_file.write_text(best.graph)
    out = root / "cmp"
    code = main(["compare", "dcgan-sn", str(graph_file), *TINY_TRAIN, "--seeds", str(SEEDS),
                 "--lr", "0.0003", "--no-ray", "--out", str(out)])
    assert code == 0
    return out, best


def _section(md: str) -> str:
    start = md.index(f"## {SECTION}")
    nxt = md.find("\n## ", start + 3)
    return md[start:nxt if nxt >= 0 else len(md)]


def _rows(text: str) -> list[list[str]]:
    """Every Markdown table row of `text` (header and rule lines left out)."""
    out, tables = [], re.split(r"\n\n", text)
    for t in tables:
        lines = [ln for ln in t.splitlines() if ln.startswith("|")]
        out += [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return out


def test_the_section_shows_the_compare_means_and_the_recipe_differences(
        shared_run, compared, tmp_path):
    cmp_dir, best = compared
    out = build_report(shared_run, out=tmp_path / "rep", baselines=cmp_dir, strict=True,
                       progress=False, only=["ranking", "baselines"])
    sec = _section((out / "report.md").read_text())
    main_rows = [r for r in _rows(sec) if r[0].startswith(("search #", "compare"))]
    rows = {r[1]: r for r in main_rows}
    # every compare graph: mean (+- std) of the best generator's IS over its seed folders
    labels = sorted(p.name for p in cmp_dir.iterdir() if p.is_dir())
    assert labels == sorted(["dcgan-sn", "searched"])
    for label in labels:
        values = [_best_is(d) for d in sorted((cmp_dir / label).glob("seed*"))]
        assert len(values) == SEEDS
        mean, std = (float(x) for x in rows[label][2].split("±"))
        assert mean == pytest.approx(statistics.fmean(values), abs=6e-5)
        assert std == pytest.approx(statistics.stdev(values), abs=6e-5)
        assert rows[label][4] == str(SEEDS) and rows[label][5] == "1"
        # the mixture column: k = 1 (dcgan-sn) is its own generator, k = 2 its is_mix
        mixes = [_mix_is(d) for d in sorted((cmp_dir / label).glob("seed*"))]
        mix_mean, mix_std = (float(x) for x in rows[label][3].split("±"))
        assert mix_mean == pytest.approx(statistics.fmean(mixes), abs=6e-5)
        assert mix_std == pytest.approx(statistics.stdev(mixes), abs=6e-5)
    assert rows["dcgan-sn"][3] == rows["dcgan-sn"][2]
    # the searched graph's compare rows say which searched graph they retrain
    assert rows["searched"][0] == "compare: searched #1"
    assert rows["dcgan-sn"][0] == "compare (baseline)"
    # the search's own top graphs, by objective, each shown with its best generator's
    # best IS (what a compare row reports), whatever rule the objective used
    ranked = pd.read_parquet(shared_run / "results.parquet") \
        .sort_values("objective", ascending=False, kind="stable")
    searched = [r for r in main_rows if r[0].startswith("search #")]
    history = load_history(shared_run)
    assert [r[0] for r in searched] == [f"search #{i + 1}" for i in range(len(ranked))]
    assert searched[0][1] == f"trial {best.trial_id} ({best.graph_key})"
    for r, (_, t) in zip(searched, ranked.iterrows()):
        assert float(r[2]) == pytest.approx(max(t.is_best_g0, t.is_best_g1), abs=6e-5)
        # the trial's best mixture IS over its per-epoch history (both generators learn)
        mixes = history[history.trial_id == t.trial_id]["is_mix"]
        assert float(r[3]) == pytest.approx(float(mixes.max()), abs=6e-5)
    # the recipe: lr and epochs differ (0.0003 vs 2e-4, 1 vs max_epochs 2); batch does not
    diffs = {r[0]: r for r in _rows(sec) if len(r) == 4}
    assert diffs["learning rate (G)"][1:3] == ["0.0002", "0.0003"]
    assert diffs["learning rate (D)"][3] == f"{2 * SEEDS} of {2 * SEEDS}"
    assert diffs["epochs (search: max_epochs)"][1:3] == ["2", "1"]
    assert "batch size" not in diffs and "image size" not in diffs
    assert "The recipes differ on" in sec
    # the paper's ordering: +SN (dcgan-sn) <= searched, +SN's missing steps bridged
    means = {label: [_best_is(d) for d in sorted((cmp_dir / label).glob("seed*"))]
             for label in labels}
    link = [r for r in _rows(sec) if len(r) == 6 and r not in main_rows]
    assert [r[:3] for r in link] == [["+SN <= searched", "dcgan-sn", "searched"]]
    diff = statistics.fmean(means["searched"]) - statistics.fmean(means["dcgan-sn"])
    spread = math.hypot(statistics.stdev(means["searched"]), statistics.stdev(means["dcgan-sn"]))
    assert float(link[0][3]) == pytest.approx(diff, abs=0.006)
    if spread > 0.05:  # a pooled std near 0 makes the std multiple a rounding artefact
        assert float(link[0][4]) == pytest.approx(diff / spread, abs=0.06 + 0.01 * abs(diff / spread))
    z = diff / spread if spread else math.inf
    assert link[0][5] == ("holds" if z >= 1 else "reversed" if z <= -1 else "within noise")
    assert "Seeds: every search trial trained once, with seed 3" in sec


def test_without_baselines_the_report_has_no_such_section(shared_run, tmp_path):
    out = build_report(shared_run, out=tmp_path / "rep", strict=True, progress=False,
                       only=None, reeval=False)
    assert f"## {SECTION}" not in (out / "report.md").read_text()


@pytest.mark.parametrize("make", ["missing", "empty", "run"])
def test_a_folder_that_is_not_a_compare_folder_is_one_clear_error(
        make, shared_run, tmp_path, capsys):
    bad = {"missing": tmp_path / "nope", "empty": tmp_path / "empty",
           "run": shared_run}[make]
    if make == "empty":
        bad.mkdir()
    code, out, err = ktg(["report", shared_run, "--baselines", bad, "-o",
                          tmp_path / "rep"], capsys)
    refused(code, err, bad, "--baselines")
    assert not (tmp_path / "rep").exists()


def test_the_paper_ordering_is_checked_link_by_link():
    """Hand-made rows: each step against the next present one, in pooled std."""
    from ktg_search.report.tables import paper_ordering
    rows = [("dcgan", 4.0, 0.3), ("dcgan-sn", 4.5, 0.4), ("mad-gan-3", 4.4, 0.1),
            ("through-3", 5.0, 0.2), ("through-3-image", 4.0, 0.2), ("mine", 5.1, 0.0)]
    links = {(x["lower"], x["upper"]): x for x in paper_ordering(rows, searched={"mine"})}
    assert set(links) == {("dcgan", "dcgan-sn"), ("dcgan-sn", "mad-gan-3"),
                          ("mad-gan-3", "through-3"), ("mad-gan-3", "through-3-image"),
                          ("through-3", "mine"), ("through-3-image", "mine")}
    x = links[("dcgan", "dcgan-sn")]  # +0.5 over sqrt(0.09 + 0.16) = 0.5: exactly 1 std
    assert x["diff"] == pytest.approx(0.5) and x["std_units"] == pytest.approx(1.0)
    assert x["verdict"] == "holds" and x["link"] == "DCGAN <= +SN"
    x = links[("dcgan-sn", "mad-gan-3")]  # -0.1 / sqrt(0.17)
    assert x["std_units"] == pytest.approx(-0.1 / math.sqrt(0.17))
    assert x["verdict"] == "within noise"
    assert links[("mad-gan-3", "through-3-image")]["verdict"] == "reversed"  # -0.4/0.224
    assert links[("through-3", "mine")]["std_units"] == pytest.approx(0.1 / 0.2)
    # a missing step is bridged; one step alone gives nothing to check
    only = paper_ordering([("dcgan", 4.0, 0.1), ("through-2", 4.5, 0.1)])
    assert [(x["link"], x["verdict"]) for x in only] == [("DCGAN <= through", "holds")]
    assert paper_ordering([("dcgan", 4.0, 0.1)]) == []
