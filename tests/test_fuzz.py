"""Fuzz: hundreds of malformed inputs through `ktg_search.cli.main`, in one process.

Every input must end in exit status 2 with exactly one `error:` line on stderr and no
traceback, and must not start any work: no run directory, no output file, no Ray. The
inputs come from fuzz_inputs.py (made from the configs' own checks, a valid graph, valid
tables and run files). Search and resume inputs are first checked to be refused by the
library itself, so that a generator slip cannot start a real search here.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fuzz_inputs import (GRAPH, config_mutations, graph_mutations, junk_bytes,
                         table_mutations, truncations, with_setting)
from ktg_search.cli import main
from ktg_search.errors import KtgError
from ktg_search.results.book import HISTORY_COLUMNS, RESULTS_COLUMNS
from ktg_search.search.config import SearchConfig, load_config_file, load_preset
from shared_files import TINY

NO_RAY = "no-such-ray-host:1"


def run_cli(argv: list) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own usage errors (exit 2, one error line)
            code = e.code
    return code, err.getvalue()


def to_json(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def run_files(shared_run):
    """run.json, results.parquet and history.parquet of a small real run (checkpoints are
    left out: every fuzzed command must stop before it needs one)."""
    return {n: (shared_run / n).read_bytes() for n in ("run.json", "results.parquet",
                                                       "history.parquet")}


def make_cases(run_files) -> list[tuple[str, dict[str, bytes], list[str]]]:
    """(id, files to write relative to a fresh folder, argv). `{d}` in argv is that
    folder."""
    cases = []
    base_cfg = SearchConfig.from_dict(dict(TINY)).to_dict()
    info = json.loads(run_files["run.json"])
    # search configs: a config file, --set, a resumed run.json, a shared run.json (report)
    for cid, key, value in config_mutations(SearchConfig):
        cases.append((f"config-file-{cid}", {"c.json": to_json(with_setting(base_cfg, key,
                                                                           value))},
                      ["search", "--config", "{d}/c.json", "--storage-path", "{d}/runs",
                       "--address", NO_RAY]))
        raw = json.dumps(value)  # a string stays a string ("3" is not the number 3)
        cases.append((f"set-{cid}", {}, ["search", "--set", f"{key}={raw}",
                                         "--storage-path", "{d}/runs", "--address", NO_RAY]))
        bad_info = to_json({**info, "config": with_setting(info["config"], key, value)})
        cases.append((f"resume-{cid}", {"r/run.json": bad_info, "r/results.parquet":
                                        run_files["results.parquet"]},
                      ["search", "--resume", "{d}/r", "--address", NO_RAY]))
        cases.append((f"report-{cid}", {"r/run.json": bad_info},
                      ["report", "{d}/r", "--no-reeval", "--only", "ranking"]))
    cases.append(("config-cross", {"c.json": to_json(with_setting(
                      {**base_cfg, "grace_period": 5}, "train.epochs", 2))},
                  ["search", "--config", "{d}/c.json", "--address", NO_RAY]))
    for i, item in enumerate(["k", "=3", "nope=1", "k=", "gates=", "k=[1]", "seed=-1"]):
        cases.append((f"set-syntax-{i}", {}, ["search", "--set", item, "--address", NO_RAY]))
    good_cfg = to_json(base_cfg)
    for i, text in enumerate(truncations(good_cfg) + junk_bytes(1) +
                             [to_json([]), to_json({**base_cfg, "nope": 1})]):
        cases.append((f"config-text-{i}", {"c.json": text},
                      ["search", "--config", "{d}/c.json", "--address", NO_RAY]))
    cases.append(("config-missing", {}, ["search", "--config", "{d}/nope.json"]))
    cases.append(("config-dir", {"c.json/x": b"{}"}, ["search", "--config", "{d}/c.json"]))
    # run.json itself: its text, its top-level fields, a missing or odd file
    top_bad = {"name": [5, None, "", "\ud800"], "config": [None, [], "x", {"k": 3, "x": 1}],
               "storage": [5, ""], "study_name": [5, ""], "space_size": [0, -1, "9", True]}
    variants = [(f"top-{k}-{i}", to_json({**info, k: v}))
                for k, vs in top_bad.items() for i, v in enumerate(vs)]
    variants += [(f"text-{i}", t) for i, t in enumerate(truncations(run_files["run.json"]) +
                                                        junk_bytes(2))]
    for vid, text in variants:
        for cmd in (["report", "{d}/r", "--no-reeval"],
                    ["search", "--resume", "{d}/r", "--address", NO_RAY]):
            cases.append((f"runjson-{cmd[0]}-{vid}", {"r/run.json": text}, cmd))
    for cmd in (["report", "{d}/r"], ["query", "{d}/r"], ["search", "--resume", "{d}/r"]):
        cases.append((f"no-runjson-{cmd[0]}", {"r/x": b""}, cmd))
        cases.append((f"runjson-dir-{cmd[0]}", {"r/run.json/x": b""}, cmd))
    # graph files: parsed values and raw text
    for gid, spec in graph_mutations():
        cases.append((f"graph-{gid}", {"g.json": to_json(spec)}, ["validate", "{d}/g.json"]))
    for i, text in enumerate(truncations(to_json(GRAPH)) + junk_bytes(3)):
        cases.append((f"graph-text-{i}", {"g.json": text}, ["validate", "{d}/g.json"]))
    for gid, spec in graph_mutations()[::6]:  # the same refusals before any training
        cases.append((f"train-graph-{gid}", {"g.json": to_json(spec)},
                      ["train", "{d}/g.json", "--out", "{d}/out"]))
    # tables under query, export and report
    results = pd.read_parquet(io.BytesIO(run_files["results.parquet"]))
    history = pd.read_parquet(io.BytesIO(run_files["history.parquet"]))
    status = results.copy()
    status["status"] = "finished"
    for tid, data in table_mutations(run_files["results.parquet"], results,
                                     RESULTS_COLUMNS) + [("status", _pq(status))]:
        files = {"r/run.json": run_files["run.json"], "r/results.parquet": data}
        for cmd in (["query", "{d}/r"], ["export", "{d}/r", "--rank", "1", "-o",
                                         "{d}/best.json"],
                    ["report", "{d}/r", "--no-reeval", "--only", "ranking"]):
            cases.append((f"results-{cmd[0]}-{tid}", files, cmd))
    for tid, data in table_mutations(run_files["history.parquet"], history,
                                     HISTORY_COLUMNS):
        files = {"r/run.json": run_files["run.json"],
                 "r/results.parquet": run_files["results.parquet"],
                 "r/history.parquet": data}
        cases.append((f"history-report-{tid}", files,
                      ["report", "{d}/r", "--no-reeval", "--only", "asha"]))
    # flags and values of the other commands (all refused before any work)
    good = {"r/run.json": run_files["run.json"],
            "r/results.parquet": run_files["results.parquet"]}
    flags = [["train", "dcgan-sn", "--d-width", "0"], ["train", "dcgan-sn", "--betas", "1.5",
                                                       "0.9"],
             ["train", "dcgan-sn", "--lr", "0"], ["train", "dcgan-sn", "--lr", "nan"],
             ["train", "dcgan-sn", "--eval-samples", "5"], ["train", "dcgan-sn", "--epochs",
                                                            "0"],
             ["train", "dcgan-sn", "--batch-size", "0"], ["train", "dcgan-sn", "--seeds", "0"],
             ["train", "dcgan-sn", "--device", "tpu"], ["train", "dcgan-sn", "--image-size",
                                                        "48"],
             ["train", "dcgan-sn", "--dataset", "synthetic:5"], ["train", "dcgan-sn",
                                                                 "--dataset", "digits:3"],
             ["train", "dcgan-sn", "--seed0", "-1"], ["train", "no-such-graph"],
             ["train", "dcgan-sn", "--out", "{d}/r/run.json"],
             ["pretrain", "--model", "dcgan-small", "-o", "{d}/r"],
             ["pretrain", "--model", "dcgan-small", "--betas", "0.5", "1", "-o", "{d}/t.pt"],
             ["compare", "dcgan-sn", "--seeds", "0", "--no-ray", "--out", "{d}/c"],
             ["compare", "dcgan-sn", "--gpus-per-run", "-1", "--out", "{d}/c"],
             ["bench", "--steps", "0"], ["bench", "--steps", "-5"], ["bench", "--steps",
                                                                    "100001"],
             ["export", "{d}/r", "--rank", "1", "-o", "{d}/r"],
             ["export", "{d}/r", "--rank", "0", "-o", "{d}/x.json"],
             ["export", "{d}/r", "--trial", "../../x", "-o", "{d}/x.json"],
             ["query", "{d}/r", "--top", "0"], ["query", "{d}/r", "--sort", "nope"],
             ["query", "{d}/r", "--columns", "nope"], ["query", "{d}/r", "--where", ""],
             ["report", "{d}/r", "--top", "0"], ["report", "{d}/r", "--reeval-samples", "1"],
             ["report", "{d}/r", "--out", "{d}/r/run.json"],
             ["validate", "{d}/nope.json"]]
    for i, argv in enumerate(flags):
        cases.append((f"flag-{i}-{argv[0]}", good, argv))
    return cases


def _pq(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _library_refuses(argv: list[str], d: Path) -> bool:
    """For search inputs: the library refuses it (so the CLI cannot start Ray)."""
    from ktg_search.search.runinfo import read_run_info
    try:
        if "--config" in argv:
            load_config_file(argv[argv.index("--config") + 1])
        elif "--set" in argv:
            load_preset("quick").with_overrides([argv[argv.index("--set") + 1]])
        elif "--resume" in argv:
            read_run_info(argv[argv.index("--resume") + 1])
        else:
            return True
    except KtgError:
        return True
    return False


def test_fuzz_malformed_inputs_are_one_clean_message(run_files, tmp_path):
    cases = make_cases(run_files)
    assert len(cases) >= 250 and len({c[0] for c in cases}) == len(cases)
    failures = []
    for n, (cid, files, argv) in enumerate(cases):
        d = tmp_path / f"c{n}"
        d.mkdir()
        for rel, data in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        argv = [a.replace("{d}", str(d)) for a in argv]
        if argv[0] == "search" and not _library_refuses(argv, d):
            failures.append(f"{cid}: the generator made a valid search input")
            continue
        before = sorted(p.relative_to(d) for p in d.rglob("*"))
        code, err = run_cli(argv)
        lines = [ln for ln in err.splitlines() if "error:" in ln]
        after = sorted(p.relative_to(d) for p in d.rglob("*"))
        if code != 2 or len(lines) != 1 or "Traceback" in err or after != before:
            failures.append(f"{cid}: exit {code}, {len(lines)} error line(s), files "
                            f"{sorted(set(map(str, after)) - set(map(str, before)))}: "
                            f"{err[-300:]!r}")
        shutil.rmtree(d)
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:40])
