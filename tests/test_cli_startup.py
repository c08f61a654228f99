"""A CLI that answers at once: the commands that do not train import neither torch nor Ray
(issue 24). Each command runs in a fresh interpreter, and its `sys.modules` is read after.

A graph file without a `pretrained` teacher is validated without torch; reading a teacher
checkpoint (`ktg validate` of a kd graph without `--no-files`) needs torch.load, and is
allowed to import it.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ktg_search.cli import build_parser

HEAVY = ("torch", "ray")
PROBE = """
import contextlib, io, json, sys
from ktg_search.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'})
print(json.dumps({"code": code, "heavy": heavy, "out": out.getvalue()[-20000:],
                  "err": err.getvalue()[-2000:]}))
"""


def _probe(argv: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_command_is_probed():
    # a new command gets its `--help` probed below without new test code
    assert {"graphs", "presets", "status", "query", "validate", "search", "train",
            "report", "compare", "pretrain", "export", "bench"} <= set(_commands())


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in _commands()],
                         ids=lambda a: " ".join(a))
def test_help_imports_neither_torch_nor_ray(argv):
    res = _probe(argv)
    assert res["code"] == 0 and "usage: ktg" in res["out"], res
    assert res["heavy"] == [], f"ktg {' '.join(argv)} imported {res['heavy']}"


def test_listings_and_validate_import_neither(tmp_path):
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"nodes": [{"model": "dcgan-small"}] * 2,
                                 "edges": [{"src": "D", "dst": 0, "gate": "through"},
                                           {"src": 0, "dst": 1, "gate": "linear_up"}]}))
    for argv in (["graphs"], ["presets"], ["graphs", "--format", "json"],
                 ["validate", str(graph)], ["validate", "through-3"]):
        res = _probe(argv)
        assert res["code"] == 0, res
        assert res["heavy"] == [], f"ktg {' '.join(argv)} imported {res['heavy']}"
    assert "dcgan-sn" in _probe(["graphs"])["out"]


def test_status_and_query_of_a_run_import_neither(shared_run):
    for argv in (["status", str(shared_run)], ["query", str(shared_run), "--top", "3"],
                 ["query", str(shared_run), "--where", "objective > 0", "--format", "csv"]):
        res = _probe(argv)
        assert res["code"] == 0, res
        assert res["heavy"] == [], f"ktg {' '.join(argv)} imported {res['heavy']}"


def test_a_command_that_trains_does_import_torch(tmp_path):
    # teeth: the probe sees torch when a command does load it (a checkpoint is read)
    from ktg_search.method.graph import Graph
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"not a checkpoint")
    g = Graph.build(["dcgan-small", "dcgan-small"], {(0, 1): "through"}, transfer="image")
    spec = g.to_dict()
    spec["nodes"][0]["pretrained"] = str(teacher)
    (tmp_path / "kd.json").write_text(json.dumps(spec))
    res = _probe(["validate", str(tmp_path / "kd.json")])
    assert res["code"] == 2 and "torch" in res["heavy"], res
