"""Ray outside the search's own Tuner: starting Ray, and a fan-out of independent tasks
(`ktg compare`'s runs). The per-process cache of a data set and its evaluator that those
tasks and the trainable use is `method/evaluation.py`.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import KtgError


SCRATCH_PREFIX = "ktg-ckpt-"  # + study + "-" + pid: a worker process's checkpoint scratch


def _scratch_name(study: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", study)


def checkpoint_scratch(study: str) -> Path:
    """An empty folder where this process writes a trial's epoch checkpoint before Tune
    copies it into the run (`tune.report` persists it before it returns or blocks): one
    folder per worker process and study, emptied for every epoch. A temporary folder per
    epoch was left behind whenever Tune ended a trial inside `report` (8 MB each, dozens
    an hour); now at most one per process stays, and the driver removes those of its
    node when the search ends (`remove_scratch`)."""
    d = Path(tempfile.gettempdir()) / \
        f"{SCRATCH_PREFIX}{_scratch_name(study)}-{os.getpid()}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def remove_scratch(study: str) -> int:
    """Remove this node's checkpoint scratch folders of `study`; how many there were."""
    head = f"{SCRATCH_PREFIX}{_scratch_name(study)}-"
    # exactly study-pid: "a-b-123" is study a-b's, not study a's
    found = [d for d in Path(tempfile.gettempdir()).glob(f"{head}*")
             if d.name[len(head):].isdigit()]
    for d in found:
        shutil.rmtree(d, ignore_errors=True)
    return len(found)


CONNECT_TIMEOUT_S = 10.0   # a head node that does not answer a TCP connect in this long
RESOURCE_STEP = 1e-4       # Ray places resource amounts in steps of 0.0001


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """KtgError, within `timeout_s`, when `address` (HOST:PORT or ray://HOST[:PORT]) names
    a head node nothing answers at: Ray itself retries such an address for minutes,
    printing connection lines. Called before a run directory is made. `auto` and no
    address are Ray's to find."""
    import socket
    if not address or address in ("auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host:
        host, port = rest.rstrip("/"), "10001" if address.startswith("ray://") else "6379"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise KtgError(f"--address {address!r}: {port!r} is not a port; valid: auto, "
                       f"ray://HOST:10001, HOST:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise KtgError(f"cannot reach a Ray head node at --address {address!r} "
                       f"({e.strerror or type(e).__name__}, waited at most {timeout_s:g} "
                       f"s); is the cluster running?") from None


def check_trial_resources(cpus: float, gpus: float) -> None:
    """KtgError naming the numbers when no node of the running cluster can place one
    trial (`cpus` CPUs and `gpus` GPUs on one node), or when Ray cannot express them
    (amounts below its step of 0.0001): otherwise Tune waits forever for a trial that
    never starts, or fails inside Ray. Uses the nodes' totals (`ray.nodes()`), so that a
    busy cluster is not taken for a small one."""
    import ray
    for what, amount in (("cpus_per_trial", cpus), ("gpus_per_trial", gpus)):
        if amount and (amount < RESOURCE_STEP or
                       abs(round(amount / RESOURCE_STEP) * RESOURCE_STEP - amount) > 1e-9):
            raise KtgError(f"{what} = {amount!r} cannot be placed by Ray: it counts "
                           f"resources in steps of {RESOURCE_STEP} (e.g. 0.5, 0.25, 1)")
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    total = ray.cluster_resources()
    most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
    raise KtgError(f"no node of the Ray cluster can run a trial of {cpus:g} CPU(s) and "
                   f"{gpus:g} GPU(s): the largest node has {most_cpu:g} CPU(s) and "
                   f"{most_gpu:g} GPU(s) (the cluster: {total.get('CPU', 0):g} CPUs, "
                   f"{total.get('GPU', 0):g} GPUs); lower cpus_per_trial / "
                   f"--gpus-per-trial")


def init_ray(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (then the caller shuts
    it down when done)."""
    import ray
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        else:
            # "local": a new Ray of our own, never one another process left running here
            ray.init(address="local", include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise KtgError(f"cannot connect to Ray at {address!r}: {e}; valid: auto, "
                       f"ray://HOST:10001, HOST:6379, or no --address for a local Ray") \
            from None
    return True


def fan_out(task: Callable, calls: list[tuple], labels: list[str] | None = None,
            address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
            max_retries: int = 1, shared: Any = None) -> Iterator[tuple[int, Any]]:
    """Run `task(*args)` for every args tuple of `calls` as Ray tasks; yield
    (index into calls, result) as each finishes. `shared`, when given, is put in Ray's
    object store once and passed to every task as its last argument. A KtgError raised in a task is raised
    here as one message prefixed with the call's label (bad input); on any error the
    tasks still queued or running are cancelled. Ray is started here (and stopped after)
    unless it runs already."""
    import ray
    from ray.exceptions import RayTaskError
    started = init_ray(address)
    refs: dict = {}
    try:
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus,
                            max_retries=max_retries)(task)
        if shared is not None:
            shared_ref = ray.put(shared)
            calls = [(*args, shared_ref) for args in calls]
        refs = {remote.remote(*args): i for i, args in enumerate(calls)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, KtgError):
                        raise KtgError(f"{labels[i]}: {cause}" if labels else str(cause)) \
                            from None
                    raise
                yield i, result
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()
