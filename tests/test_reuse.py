"""The reuse table (studies/reuse.py, docs/scripts/reuse_table.py) on hand-made compare
tables: ranks, Spearman's rho and the verdicts worked out by hand."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ktg_search.errors import KtgError
from ktg_search.studies.reuse import markdown, read_table, reuse_table

ROOT = Path(__file__).resolve().parents[1]


def _write(out: Path, rows: dict[str, tuple[float, float]]) -> Path:
    out.mkdir(parents=True)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["graph", "k", "seeds", "is_mean", "is_std", "fid_mean"])
        for g, (m, s) in rows.items():
            w.writerow([g, 1, 5, m, s, 1.0])
    return out


A = {"dcgan-sn": (6.6, 0.2), "mad-gan-3": (6.0, 0.2), "through-3": (5.4, 0.2),
     "a1": (7.0, 0.1), "b1": (6.7, 0.1)}
B = {"dcgan-sn": (5.0, 0.3), "mad-gan-3": (4.0, 0.3), "through-3": (4.5, 0.3),
     "a1": (4.9, 0.4), "b1": (5.8, 0.3)}


def test_reuse_table_against_hand_worked_figures(tmp_path):
    tables = {"digits": read_table(_write(tmp_path / "a", A)),
              "digits-m": read_table(_write(tmp_path / "b", B))}
    res = reuse_table(tables, {"a1": "digits", "b1": "digits-m"},
                      ["dcgan-sn", "mad-gan-3", "through-3"])
    rank = {r["graph"]: (r["digits_rank"], r["digits-m_rank"]) for r in res["rows"]}
    # digits: a1 7.0 > b1 6.7 > dcgan-sn 6.6 > mad-gan 6.0 > through 5.4
    # digits-m: b1 5.8 > dcgan-sn 5.0 > a1 4.9 > through 4.5 > mad-gan 4.0
    assert rank == {"a1": (1, 3), "b1": (2, 1), "dcgan-sn": (3, 2), "mad-gan-3": (4, 5),
                    "through-3": (5, 4)}
    # rho = 1 - 6 * sum d^2 / (n (n^2 - 1)); d = -2, 1, 1, -1, 1: sum 8 -> 1 - 48/120
    assert res["rho"] == pytest.approx(0.6, abs=1e-12)
    v = {(x["graph"], x["trained_on"]): x for x in res["verdicts"]}
    # a1 on digits: (7.0 - 6.6) / hypot(.2, .1) = 1.789 holds, not transferred
    assert v["a1", "digits"]["std_units"] == pytest.approx(0.4 / math.hypot(0.2, 0.1))
    assert (v["a1", "digits"]["verdict"], v["a1", "digits"]["transferred"]) == ("holds", False)
    # a1 on digits-m: (4.9 - 5.0) / 0.5 = -0.2, within noise, transferred
    assert v["a1", "digits-m"]["std_units"] == pytest.approx(-0.2)
    assert v["a1", "digits-m"]["verdict"] == "within noise"
    # b1 on digits: (6.7 - 6.6) / hypot(.2, .1) = 0.447; on digits-m (5.8 - 5.0) / .424 = 1.89
    assert v["b1", "digits"]["verdict"] == "within noise"
    assert v["b1", "digits-m"]["std_units"] == pytest.approx(0.8 / math.hypot(0.3, 0.3))
    text = markdown(res)
    assert "| a1 | digits | 7.00 ± 0.10 | 1 | 4.90 ± 0.40 | 3 |" in text
    assert "over the 5 graphs: +0.60" in text
    assert ("* a1 (searched on digits), retrained on digits-m: is within noise of the best "
            "baseline dcgan-sn (-0.10 IS, -0.2 pooled std).") in text


def test_a_graph_missing_from_one_table_is_named(tmp_path):
    tables = {"digits": A, "digits-m": {g: v for g, v in B.items() if g != "b1"}}
    with pytest.raises(KtgError, match=r"digits-m compare table lacks b1"):
        reuse_table(tables, {"b1": "digits-m"}, ["dcgan-sn"])
    with pytest.raises(KtgError, match=r"'cifar10'; valid: digits, digits-m"):
        reuse_table({"digits": A, "digits-m": B}, {"a1": "cifar10"}, ["dcgan-sn"])


def test_script_bad_input_exits_2_and_prints_the_table(tmp_path):
    a, b = _write(tmp_path / "a", A), _write(tmp_path / "b", B)
    script = ROOT / "docs" / "scripts" / "reuse_table.py"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([sys.executable, script, f"digits={a}", str(b), "--baselines",
                          "dcgan-sn"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "is not SET=OUT" in bad.stderr and not bad.stdout
    ok = subprocess.run([sys.executable, script, f"digits={a}", f"digits-m={b}",
                         "--baselines", "dcgan-sn,mad-gan-3,through-3",
                         "--searched", "a1:digits", "--searched", "b1:digits-m"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "| b1 | digits-m | 6.70 ± 0.10 | 2 | 5.80 ± 0.30 | 1 |" in ok.stdout
