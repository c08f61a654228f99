"""Faults on a simulated cluster (`ray.cluster_utils.Cluster`: a head and two worker nodes
on this machine), and `--address` to a running local cluster.

The scenarios run in their own processes (tests/cluster_scenarios.py): a simulated
cluster needs a Ray of its own, and the rest of the suite shares one local Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def scenario(name: str, root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "RAY_AUTH_MODE": "disabled"}
    p = subprocess.run([sys.executable, str(HERE / "cluster_scenarios.py"), name, str(root)],
                       env=env, capture_output=True, text=True, timeout=1500)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, f"scenario {name} printed no result:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_lost_worker_node_costs_only_the_epochs_since_the_checkpoint(tmp_path):
    r = scenario("lost-node", tmp_path)
    assert r["error"] is None
    assert r["victim_trial"], "no trial was seen running on the worker that was removed"
    assert r["n_rows"] == 4 and r["unique_ids"]  # every trial in the table, once
    # the duplicate ledger is pinned to the driver's node: once it sat on the removed
    # worker and died with it, and every trial that asked it afterwards failed
    assert r["ledger_on_head"], r["ledger_node"]
    assert r["victim_status"] and r["victim_status"][0] in ("completed", "stopped"), \
        r["victim_error"]

    epochs, restored = r["victim_epochs"], r["victim_restored_from"]
    assert epochs == list(range(1, len(epochs) + 1))  # one row per epoch, none repeated
    assert max(epochs) > r["removed_at_epoch"] - 1  # it went on after the loss ...
    # ... from its checkpoint: the epochs after the loss say where they resumed from
    resumed = [f for f in restored if f > 0]
    assert resumed and min(resumed) >= 1
    assert len(set(r["victim_nodes"])) == 2  # and it moved to another node


@pytest.mark.slow
def test_killed_trial_is_retried_then_recorded_as_error(tmp_path):
    r = scenario("killed-trial", tmp_path)
    assert r["error"] is None
    killed = r["killed"]
    assert len(killed) == 4  # the first run and the 3 retries FailureConfig allows
    assert r["n_rows"] == 1 and r["status"] == ["error"]
    assert r["reason"][0]  # the reason is recorded
    # each process said two epochs or more before it was killed, in the order killed
    by_pid: dict[int, list] = {}
    for pid, epoch, restored in r["said"]:
        by_pid.setdefault(pid, []).append((epoch, restored))
    assert list(by_pid) == killed, (killed, r["said"])
    assert all(len(by_pid[pid]) >= 2 for pid in killed), r["said"]
    # every retry resumed from a checkpoint, never from scratch, and redid at most the
    # epoch whose checkpoint Tune had not yet saved when the worker was killed
    for before, after in zip(killed, killed[1:]):
        last = by_pid[before][-1][0]
        first, restored = by_pid[after][0]
        assert restored >= 1 and first == restored + 1, (before, after, r["said"])
        assert first in (last, last + 1), (before, after, r["said"])
    assert r["epochs"][0] >= 5


@pytest.mark.slow
def test_address_joins_a_running_cluster_with_a_uri_storage_path(tmp_path):
    r = scenario("address", tmp_path)
    assert r["rc"] == 0, r["stderr"]
    assert r["local_rows"] == 3
    assert r["mirrored"] == ["history.parquet", "results.parquet"]
    assert r["tune_state"]  # Tune's experiment state went to the URI
