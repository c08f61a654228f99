"""Ray outside the search's own Tuner: starting Ray, and a fan-out of independent tasks
(`ktg compare`'s runs). The per-process cache of a data set and its evaluator that those
tasks and the trainable use is `method/evaluation.py`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from ..errors import KtgError



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
