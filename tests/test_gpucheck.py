"""`make gpu-check` on a machine without a GPU, the way the lead's GPU machine runs it:
its own Python (NOVENV=1), and none of Ray, Optuna, torch-fidelity or filelock (hidden
with --without, as that machine lacks them). It must run the CPU parts, say plainly that
no GPU was found, write the JSON and exit 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE = "ray,optuna,torch_fidelity,filelock"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""  # no GPU, even on a machine that has one
    env.pop("PYTHONPATH", None)       # the Makefile puts the checkout there itself
    return env


@pytest.mark.slow
def test_make_gpu_check_without_a_gpu_runs_the_cpu_parts(tmp_path):
    out = tmp_path / "gpu-check.json"
    r = subprocess.run(["make", "-s", "gpu-check", "NOVENV=1", f"PY={sys.executable}",
                        f"GPU_CHECK_OUT={out}", f"GPU_CHECK_ARGS=--quick --without {BARE}"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "NO GPU FOUND" in r.stdout and str(out) in r.stdout
    res = json.loads(out.read_text())
    assert res["gpu"] is False and res["ok"] is True
    st = res["stages"]
    assert list(st) == ["env", "gpu_tests", "loss_match", "bench", "search"]
    assert st["env"]["cuda_available"] is False and st["env"]["torch"]
    assert not any(st["env"]["packages"][p] for p in BARE.split(","))  # really hidden
    # the gpu-marked tests were collected and skipped, not missing
    assert st["gpu_tests"]["ok"] and st["gpu_tests"]["counts"].get("skipped", 0) >= 1
    assert "failed" not in st["gpu_tests"]["counts"]
    # the CPU side of the loss check ran: finite losses for every step, nothing compared
    lm = st["loss_match"]
    assert "no GPU" in lm["skipped"] and len(lm["cpu_losses"]) == lm["steps"]
    assert all(0 < v < 100 for step in lm["cpu_losses"] for v in step.values())
    # the CPU bench: engine and literal algorithm agree
    fp32 = st["bench"]["runs"]["fp32"]
    assert st["bench"]["device"] == "cpu" and fp32["equivalent"]
    assert fp32["max_loss_diff"] < 1e-4
    # the search needs Ray, which is "missing": skipped, and the reason says so
    assert "ray" in st["search"]["skipped"]


def test_a_stage_that_fails_is_recorded_and_the_others_kept(tmp_path, monkeypatch):
    from ktg_search.studies import gpucheck
    out = tmp_path / "g.json"
    # a stage child that dies: its error is recorded, the stage after it still runs
    calls = []
    results = {"env": {"ok": True, "cuda_available": False},
               "gpu_tests": {"error": "exit status 1"}, "search": {"skipped": "test"}}

    def fake(name, quick, limit, without):
        calls.append(name)
        return dict(results[name])
    monkeypatch.setattr(gpucheck, "_run_stage", fake)
    res = gpucheck.run_gpu_check(out, quick=True, budget_s=100,
                                 stages=("env", "gpu_tests", "search"), say=lambda m: None)
    assert calls == ["env", "gpu_tests", "search"]
    saved = json.loads(out.read_text())
    assert saved["ok"] is False and res["ok"] is False
    assert saved["stages"]["gpu_tests"]["error"] == "exit status 1"
    assert saved["stages"]["search"] == {"skipped": "test"}


def test_a_hung_stage_is_stopped_at_its_limit():
    from ktg_search.studies import gpucheck
    t = time.perf_counter()
    res = gpucheck._run_stage("env", True, 0.5, [])  # a real child, far too little time
    assert res["error"].startswith("timed out after"), res
    assert time.perf_counter() - t < 30


def test_unknown_stage_is_refused_naming_the_valid_ones(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ktg_search.studies.gpucheck", "--stages",
                        "env,gpus", "-o", str(tmp_path / "x.json")], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "'gpus'" in r.stderr and "loss_match" in r.stderr
    assert not (tmp_path / "x.json").exists()
