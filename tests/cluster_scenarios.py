"""Fault scenarios on a simulated Ray cluster (a head and two worker nodes on this
machine). Run as a script by tests/test_cluster_faults.py, in its own process, because a
`ray.cluster_utils.Cluster` needs a Ray of its own.

    python tests/cluster_scenarios.py lost-node RUN_ROOT
    python tests/cluster_scenarios.py killed-trial RUN_ROOT

Each prints one JSON line `RESULT {...}` with what the test checks.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from ktg_search.results.book import load_history, load_results, read_journal  # noqa: E402
from ktg_search.search.ledger import ledger_name  # noqa: E402
from ktg_search.search.config import SearchConfig  # noqa: E402
from ktg_search.search.driver import run_search  # noqa: E402

TINY = dict(preset="quick", dataset="digits", image_size=16, batch_size=32, k=2,
            gates=["through", "linear_up"], eval_samples=100, max_iters_per_epoch=6,
            fid=False, d_width=16, grace_period=8, reduction_factor=2,
            baselines=False)  # the scenarios count and kill trials; no baselines beside


def start_cluster() -> tuple[Cluster, list]:
    # the head runs the driver only (0 CPUs): every trial lands on a worker node
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    return cluster, workers


def search_in_thread(cfg: SearchConfig, root: Path, name: str) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def go():
        try:
            box["run"] = run_search(cfg, name=name, storage_path=str(root), verbose=0)
        except BaseException as e:  # reported, not swallowed
            box["error"] = repr(e)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, box


def history(run: Path):
    try:
        return load_history(run)
    except Exception:  # being replaced right now: try again next poll
        return None


def lost_node(root: Path) -> dict:
    cluster, workers = start_cluster()
    head_node = cluster.head_node.node_id
    # 30 short epochs: the node goes when the victim reports epoch >= 2 (the journal is
    # read live), long before it could finish; with 8 epochs it sometimes finished first
    cfg = SearchConfig.from_dict({**TINY, "num_trials": 4, "max_epochs": 30, "seed": 5,
                                  "grace_period": 30})
    run = root / "lost"
    thread, box = search_in_thread(cfg, root, "lost")
    victim_node = workers[0].node_id
    victim_trial, removed_at_epoch, ledger_node = None, None, None
    deadline = time.time() + 600
    while time.time() < deadline and victim_trial is None and thread.is_alive():
        if ledger_node is None:
            # where the duplicate ledger lives: it must not die with a worker node
            try:
                ledger = ray.get_actor(ledger_name("lost"))
                ledger_node = ray.get(ledger.__ray_call__.remote(
                    lambda self: ray.get_runtime_context().get_node_id()))
            except ValueError:  # not created yet
                pass
        h = history(run)
        if h is not None and not h.empty and "node_id" in h:
            on_victim = h[(h.node_id == victim_node) & (h.epoch >= 2)]
            if not on_victim.empty:
                victim_trial = on_victim.iloc[-1].trial_id
                removed_at_epoch = int(h[h.trial_id == victim_trial].epoch.max())
                cluster.remove_node(workers[0])  # from the main thread
                # as an autoscaler would: a fresh node takes the lost one's place
                cluster.add_node(num_cpus=1)
                break
        time.sleep(0.3)
    thread.join(timeout=900)
    df = load_results(run)
    h = load_history(run)
    vh = h[h.trial_id == victim_trial].sort_values("epoch") if victim_trial else h.iloc[:0]
    out = {"error": box.get("error"), "victim_trial": victim_trial,
           "ledger_on_head": ledger_node == head_node, "ledger_node": ledger_node,
           "removed_at_epoch": removed_at_epoch, "n_rows": len(df),
           "unique_ids": bool(df.trial_id.is_unique), "statuses": df.status.tolist(),
           "victim_status": df[df.trial_id == victim_trial].status.tolist(),
           "victim_error": df[df.trial_id == victim_trial].error.tolist(),
           "victim_epochs": vh.epoch.tolist(), "victim_restored_from": vh.restored_from.tolist(),
           "victim_nodes": vh.node_id.tolist()}
    ray.shutdown()
    cluster.shutdown()
    return out


def killed_trial(root: Path) -> dict:
    cluster, workers = start_cluster()
    cfg = SearchConfig.from_dict({**TINY, "num_trials": 1, "max_epochs": 40, "seed": 6,
                                  "grace_period": 40})
    run = root / "killed"
    thread, box = search_in_thread(cfg, root, "killed")
    killed: list[int] = []
    deadline = time.time() + 600
    # A process is killed once it has said two epochs. Tune registers a function
    # trainable's checkpoint by a save call to the worker after the result callbacks
    # (ray/tune/execution/tune_controller.py, _process_trial_result), so a worker killed
    # right after saying its first epoch may have no registered checkpoint and its retry
    # starts over; after its second result, Tune has saved the first epoch's checkpoint
    # (a trial does not train on while a save is pending)
    while time.time() < deadline and thread.is_alive():
        said: dict[int, int] = {}
        if (run / "journal.jsonl").exists():
            for e in read_journal(run):
                if e.get("event") == "result" and "pid" in e["result"]:
                    pid = int(e["result"]["pid"])
                    said[pid] = said.get(pid, 0) + 1
        for pid, n in said.items():
            if n >= 2 and pid not in killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.3)
    thread.join(timeout=300)
    df = load_results(run)
    # every epoch result in the order the driver got it: (pid, epoch, restored_from). The
    # history table keeps one row per epoch, so an epoch said again by a retry would
    # hide the first saying; the journal keeps both
    said = [(int(e["result"]["pid"]), int(e["result"]["epoch"]),
             int(e["result"].get("restored_from", 0)))
            for e in read_journal(run) if e.get("event") == "result"
            and "pid" in e["result"] and e["result"].get("status") == "running"]
    out = {"error": box.get("error"), "killed": killed, "n_rows": len(df),
           "status": df.status.tolist(), "reason": df.error.tolist(),
           "epochs": df.epochs.tolist(), "said": said}
    ray.shutdown()
    cluster.shutdown()
    return out


def address(root: Path) -> dict:
    """`ktg search --address` joins a running cluster; the storage path is a URI
    (file://, standing in for s3://), so Tune's experiment and the mirrored results go
    there while the run's own files stay local."""
    import subprocess
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.wait_for_nodes()
    conf = root / "conf.json"
    conf.write_text(json.dumps({**TINY, "num_trials": 3, "max_epochs": 2, "seed": 8,
                                "grace_period": 1}))
    shared = root / "shared"
    cmd = [sys.executable, "-m", "ktg_search.cli", "search", "--config", str(conf),
           "--address", cluster.address, "--name", "addr",
           "--storage-path", f"file://{shared}"]
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    local = root / "runs" / "addr"
    out = {"rc": p.returncode, "stderr": p.stderr[-2000:],
           "local_rows": len(load_results(local)) if (local / "run.json").exists() else -1,
           "mirrored": sorted(x.name for x in (shared / "addr").glob("*.parquet"))
           if (shared / "addr").exists() else [],
           "tune_state": bool(list((shared / "addr").glob("experiment_state*.json")))
           if (shared / "addr").exists() else False}
    cluster.shutdown()
    return out


if __name__ == "__main__":
    scenario, root = sys.argv[1], Path(sys.argv[2])
    result = {"lost-node": lost_node, "killed-trial": killed_trial,
              "address": address}[scenario](root)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    os._exit(0)  # do not wait for Ray's background threads
