"""`make gpu-check` / `ktg gpu-check`: check a GPU machine end to end before spending
cluster hours on it, and write every figure to one JSON file.

Stages, each in its own Python process with its own time limit, so that one that hangs or
crashes (a CUDA error, a missing package) costs only its own figures; the JSON file is
rewritten after every stage:

  env         device, torch, CUDA and cuDNN versions; which optional packages exist
  gpu_tests   the unit tests marked `gpu` (GPU_TEST_FILES; they skip without a GPU)
  loss_match  one trial's first steps on the GPU against the CPU, same seed: the largest
              |loss difference| must stay under LOSS_TOLERANCE; also the host
              synchronisations of a step (torch.cuda.set_sync_debug_mode("warn"))
  bench       `ktg bench` on the GPU: the engine against the literal algorithm, fp32
              and bf16 (no evaluation: that needs torch-fidelity)
  search      a short search with fractional GPUs (1, 2, 4, 8 trials per GPU): trials
              per hour and the GPU's busy share of each; needs Ray and Optuna

A stage whose package is missing, or that needs a GPU where there is none, is recorded as
skipped with the reason. Without a GPU the CPU parts run (the CPU side of loss_match, a
small CPU bench) and the JSON says plainly that no GPU was found; the exit status is 0
unless a stage that ran failed.

Only torch (and pytest for gpu_tests) is needed: the GPU images we are lent have no Ray,
Optuna, torch-fidelity or filelock, so nothing on the path of env, loss_match and bench
imports them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The largest |GPU loss - CPU loss| allowed over LOSS_STEPS steps of one trial, same seed.
# fp32 on both sides, TF32 off: what differs is the order of the reductions (cuDNN's
# convolution algorithms against oneDNN's), ~1e-6 relative a step, grown by Adam's
# sign-like first steps (see bench.py's free-running figures); 1e-3 leaves room for that
# and still catches a wrong kernel, a lost seed or a different z (those differ by > 0.1).
LOSS_TOLERANCE = 1e-3
LOSS_STEPS = 5
OPTIONAL = ("ray", "optuna", "torch_fidelity", "filelock", "pytest", "pandas", "sklearn")
GPU_TEST_FILES = ("tests/test_gpu.py",)
TRIALS_PER_GPU = (1, 2, 4, 8)
# seconds per stage (full run); --quick divides them by 4 (at least 120 s each: a shared
# 2-core machine); the total is bounded by --budget as well
STAGE_LIMITS = {"env": 60, "gpu_tests": 90, "loss_match": 60, "bench": 120, "search": 130}
STAGES = tuple(STAGE_LIMITS)
ROOT = Path(__file__).resolve().parents[2]  # the folder that holds ktg_search/ and tests/


def have(package: str) -> bool:
    """Whether `package` can be imported here (without importing it)."""
    import importlib.util
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: hidden with sys.modules[name] = None
        return False


def _hide(packages: list[str]) -> None:
    """Act as if `packages` were not installed (--without: rehearse a bare machine)."""
    for name in packages:
        sys.modules[name] = None  # type: ignore[assignment]


def _gpu() -> bool:
    import torch
    return torch.cuda.is_available()


# ---- the stages (each runs in a child process: `--stage NAME`) ---------------------------
def stage_env(quick: bool) -> dict[str, Any]:
    import platform
    import torch
    out: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "packages": {p: have(p) for p in OPTIONAL}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(device=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                   memory_gib=round(props.total_memory / 2 ** 30, 1),
                   capability=f"{props.major}.{props.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported(),
                   cudnn=torch.backends.cudnn.version())
    else:
        out["device"] = "cpu (no GPU found)"
    return out


def stage_gpu_tests(quick: bool) -> dict[str, Any]:
    if not have("pytest"):
        return {"skipped": "pytest is not installed"}
    files = [f for f in GPU_TEST_FILES if (ROOT / f).is_file()]
    if not files:
        return {"skipped": f"none of {', '.join(GPU_TEST_FILES)} is here"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
           "-rs", *files]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_child_env())
    tail = (r.stdout + r.stderr).strip().splitlines()
    summary = tail[-1] if tail else ""
    counts = {w: int(n) for n, w in re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", summary)}
    return {"command": " ".join(cmd), "exit_status": r.returncode, "counts": counts,
            "seconds": round(time.perf_counter() - t0, 1), "output_tail": tail[-15:],
            # 5: no tests collected (all deselected) is not a failure
            "ok": r.returncode in (0, 5)}


def _trial_losses(device: str, steps: int, image_size: int,
                  batch_size: int) -> tuple[list[dict], Any]:
    """The losses of a through-3 trial's first `steps` steps on `device` (seed 0)."""
    import torch
    from ..data.loading import load_dataset
    from ..method.graph import resolve_graph
    from ..method.trainconfig import TrainConfig
    from ..method.training import Trainer
    data = load_dataset("digits", image_size)
    cfg = TrainConfig(dataset="digits", image_size=image_size, batch_size=batch_size,
                      epochs=1,
                      device=device, seed=0, max_iters_per_epoch=steps,
                      discriminator="sn-cnn", d_width=32)
    t = Trainer(resolve_graph("through-3"), cfg, data=data)
    from ..method.steps import Noise, read_losses
    # z drawn on the host, as the CPU draws it (training draws it on the GPU, another
    # stream): the same z on both sides, or the losses could not be compared
    t.noise = Noise(t.rng, t.device, cfg.seed, on_host=True)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for real in data.batches(batch_size, gen):
        batches.append(real.float().clone())
        if len(batches) == steps:
            break
    losses = [read_losses(t.train_step(b)) for b in batches]
    t.noise = Noise(t.rng, t.device, cfg.seed)  # training's own: drawn on the device
    return losses, t


def _sync_count(trainer: Any, steps: int) -> int:
    """Host synchronisations in `steps` training steps on a GPU (torch's sync debug mode
    warns once per synchronising call)."""
    import warnings
    import torch
    real = next(iter(trainer.data.batches(32, torch.Generator().manual_seed(2)))).float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                trainer.train_step(real)
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def stage_loss_match(quick: bool) -> dict[str, Any]:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both sides: see LOSS_TOLERANCE
    torch.backends.cudnn.allow_tf32 = False
    size, steps, batch = (16, 3, 16) if quick else (32, LOSS_STEPS, 32)
    t0 = time.perf_counter()
    cpu, _ = _trial_losses("cpu", steps, size, batch)
    out: dict[str, Any] = {"graph": "through-3", "dataset": "digits", "image_size": size,
                           "steps": steps, "batch_size": batch, "tolerance": LOSS_TOLERANCE,
                           "cpu_losses": cpu, "cpu_seconds": round(time.perf_counter() - t0, 2)}
    if not _gpu():
        out["skipped"] = "no GPU found: the CPU side ran, nothing to compare it with"
        return out
    t0 = time.perf_counter()
    gpu, trainer = _trial_losses("cuda", steps, size, batch)
    out["gpu_seconds"] = round(time.perf_counter() - t0, 2)
    out["gpu_losses"] = gpu
    diffs = [abs(g[key] - c[key]) for g, c in zip(gpu, cpu, strict=True) for key in c]
    out["max_loss_diff"] = max(diffs)
    out["ok"] = all(math.isfinite(d) for d in diffs) and out["max_loss_diff"] < LOSS_TOLERANCE
    out["syncs_per_step"] = _sync_count(trainer, 3) / 3
    return out


def stage_bench(quick: bool) -> dict[str, Any]:
    from .bench import run_bench
    gpu = _gpu()
    runs: dict[str, Any] = {}
    if gpu:
        cases, steps = (["digits-16"], 5) if quick else (["digits-32", "digits-32-recipe"], 20)
        for amp in ("off", "bf16"):
            runs["fp32" if amp == "off" else amp] = run_bench(
                steps=steps, batch_size=64, cases=cases, probes=False, device="cuda",
                amp=amp, evaluate=False)
    else:
        runs["fp32"] = run_bench(steps=2, batch_size=16, cases=["digits-16"], probes=False,
                                 device="cpu", evaluate=False)
    out: dict[str, Any] = {"device": "cuda" if gpu else "cpu", "runs": {}}
    for name, r in runs.items():
        out["runs"][name] = {
            "max_loss_diff": r["max_loss_diff"], "equivalent": r["equivalent"],
            "cases": {c["case"]: {k: c[k] for k in ("engine_steps_per_s",
                                                   "reference_steps_per_s", "speedup",
                                                   "max_loss_diff", "max_loss_diff_free",
                                                   "engine_gflops", "matmul_gflops")}
                      for c in r["cases"]}}
    # bf16 against the float32 reference is bf16's own error: reported, not judged
    out["ok"] = runs["fp32"]["equivalent"]
    if not gpu:
        out["note"] = "no GPU found: a small CPU bench ran instead"
    return out


def _busy_sampler() -> Any:
    """A thread that samples the GPU's utilisation (%) every 0.5 s; returns (an Event
    that stops it, the samples list it fills)."""
    import threading
    import torch
    samples: list[float] = []
    done = threading.Event()

    def loop() -> None:
        while not done.wait(0.5):
            try:
                samples.append(float(torch.cuda.utilization(0)))
            except Exception:  # no NVML: nvidia-smi's query instead
                r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                    "--format=csv,noheader,nounits", "-i", "0"],
                                   capture_output=True, text=True)
                if r.returncode == 0 and r.stdout.strip():
                    samples.append(float(r.stdout.split()[0]))
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return done, samples


def stage_search(quick: bool) -> dict[str, Any]:
    missing = [p for p in ("ray", "optuna", "torch_fidelity", "filelock") if not have(p)]
    if missing:
        return {"skipped": f"needs {', '.join(missing)} (not installed here)"}
    if not _gpu():
        return {"skipped": "no GPU found"}
    from ..search.config import load_preset
    from ..search.driver import run_search
    root = Path(tempfile.mkdtemp(prefix="ktg-gpucheck-search-"))
    levels: dict[str, Any] = {}
    for n in TRIALS_PER_GPU:
        cfg = load_preset("quick").with_overrides([
            f"num_trials={n}", f"gpus_per_trial={1 / n}", "cpus_per_trial=0.5",
            "train.device=cuda", "train.epochs=2", "grace_period=2",
            "train.eval_samples=200", "train.max_iters_per_epoch=20"])
        done, samples = _busy_sampler()
        t0 = time.perf_counter()
        try:
            run_search(cfg, name=f"gpus-{n}", storage_path=str(root))
            err = None
        except Exception as e:  # one level failing keeps the others' figures
            err = f"{type(e).__name__}: {e}"
        sec = time.perf_counter() - t0
        done.set()
        levels[str(n)] = {"trials": n, "gpus_per_trial": 1 / n, "seconds": round(sec, 1),
                          "trials_per_hour": round(n / sec * 3600, 1),
                          "gpu_busy_share": (round(sum(samples) / len(samples) / 100, 3)
                                             if samples else None), "error": err}
    return {"levels": levels, "note": "each level: quick preset, 2 epochs of 20 steps, "
            "one Ray start included in its time", "ok": all(v["error"] is None
                                                            for v in levels.values())}


STAGE_FUNCS = {"env": stage_env, "gpu_tests": stage_gpu_tests,
               "loss_match": stage_loss_match, "bench": stage_bench, "search": stage_search}


# ---- the driver ---------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    """This environment with ROOT first on PYTHONPATH: the children import this checkout
    whether or not the package is installed (`make gpu-check NOVENV=1`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_stage(name: str, quick: bool, limit: float, without: list[str]) -> dict[str, Any]:
    """Run one stage in a child process with a time limit; its dict, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="ktg-gpucheck-") as tmp:
        part = Path(tmp) / "stage.json"
        cmd = [sys.executable, "-m", "ktg_search.studies.gpucheck", "--stage", name,
               "--stage-out", str(part)] + (["--quick"] if quick else [])
        if without:
            cmd += ["--without", ",".join(without)]
        t0 = time.perf_counter()
        # a session of its own, so that a timeout ends its children too (pytest, Ray)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=ROOT, env=_child_env(),
                                start_new_session=True)
        try:
            text, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
            return {"error": f"timed out after {limit:.0f} s", "seconds": round(limit, 1),
                    "output_tail": text.strip().splitlines()[-20:]}
        sec = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0 or not part.is_file():
            return {"error": f"exit status {proc.returncode}", "seconds": sec,
                    "output_tail": text.strip().splitlines()[-20:]}
        out = json.loads(part.read_text())
        out["seconds"] = sec
        return out


def _write(path: Path, result: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run_gpu_check(out: Path, quick: bool = False, budget_s: float = 470.0,
                  stages: tuple[str, ...] = STAGES, without: tuple[str, ...] = (),
                  say: Any = print) -> dict[str, Any]:
    """Every stage in order within `budget_s` seconds in all; the JSON at `out` is
    rewritten after each. Returns the result (its "ok": no stage that ran failed)."""
    started = time.perf_counter()
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "quick": quick, "budget_s": budget_s, "stages": {}}
    for name in stages:
        left = budget_s - (time.perf_counter() - started)
        limit = min(STAGE_LIMITS[name] / (4 if quick else 1), left)
        limit = max(limit, 120.0) if quick else limit
        if limit < 10:
            res: dict[str, Any] = {"skipped": "the time budget is spent"}
        else:
            say(f"gpu-check: {name} (at most {limit:.0f} s)")
            res = _run_stage(name, quick, limit, list(without))
        result["stages"][name] = res
        if name == "env":
            result["gpu"] = bool(res.get("cuda_available"))
            result["device"] = res.get("device")
            if not result["gpu"]:
                say("gpu-check: NO GPU FOUND: running the CPU parts only")
        state = ("skipped: " + res["skipped"] if "skipped" in res and "ok" not in res
                 else "FAILED: " + res["error"] if "error" in res
                 else "ok" if res.get("ok", True) else "FAILED")
        say(f"gpu-check: {name}: {state}")
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["ok"] = all("error" not in r and r.get("ok", True)
                           for r in result["stages"].values())
        _write(out, result)
    say(f"gpu-check: {'all stages that ran passed' if result['ok'] else 'SOME STAGES FAILED'}"
        f"; figures in {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ktg_search.studies.gpucheck",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", default="gpu-check.json", help="the JSON file to write")
    p.add_argument("--quick", action="store_true", help="small sizes (the test's)")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for all stages")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    p.add_argument("--without", default="",
                   help="act as if these packages were missing (rehearse a bare machine)")
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--stage-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    without = [w for w in args.without.split(",") if w]
    if args.stage:  # a child: one stage, its dict to --stage-out
        _hide(without)
        if args.quick:  # small tensors: one thread is faster than two fighting for a core
            import torch
            torch.set_num_threads(1)
        res = STAGE_FUNCS[args.stage](args.quick)
        Path(args.stage_out).write_text(json.dumps(res, default=str))
        return 0
    stages = tuple(s for s in args.stages.split(",") if s)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        print(f"gpu-check: error: unknown stage {bad[0]!r}; valid: {', '.join(STAGES)}",
              file=sys.stderr)
        return 2
    if not 10 <= args.budget <= 3600:
        print(f"gpu-check: error: --budget {args.budget:g} must be within 10..3600 s",
              file=sys.stderr)
        return 2
    res = run_gpu_check(Path(args.out).resolve(), args.quick, args.budget, stages,
                        tuple(without))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
