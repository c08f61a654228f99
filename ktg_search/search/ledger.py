"""The duplicate ledger of a search: which trial trains which canonical graph key.

Graphs equal under node renumbering share a canonical key (graph.py). One `GraphLedger`
actor per search, named after its study, records the key's owner and the owner's best
objective so far; a trial that samples a key already trained (or in training) reports the
owner's result instead of training it again (a `duplicate` row pointing at the original).

Trials name themselves by their logical id (the Tune trial id of the trial's first run,
kept when a resumed search re-runs it under a new Tune id), so ownership survives a
resume.
"""
from __future__ import annotations


def ledger_name(study: str) -> str:
    return f"ktg-ledger-{study}"


def _make_ledger_class():
    import ray

    @ray.remote(num_cpus=0)
    class GraphLedger:
        """Which trial trains which canonical graph key, and its best objective so far."""

        def __init__(self) -> None:
            self.owner: dict[str, str] = {}
            self.state: dict[str, dict] = {}

        def seed(self, rows: list[dict]) -> int:
            for r in rows:
                self.owner.setdefault(r["graph_key"], r["trial_id"])
                self.state.setdefault(r["trial_id"], {"objective": r.get("objective"),
                                                      "epoch": r.get("epochs", 0),
                                                      "done": True, "failed": False})
            return len(self.owner)

        def claim(self, key: str, trial_id: str, force: bool = False) -> str | None:
            """None: train it yourself. Otherwise the trial id that owns the key.

            `force`: the trial already trained part of this graph (it resumes from its
            own checkpoint), so it keeps training whoever else asked meanwhile."""
            owner = self.owner.get(key)
            if force or owner is None or owner == trial_id or \
                    self.state.get(owner, {}).get("failed"):
                self.owner[key] = trial_id
                self.state.setdefault(trial_id, {"objective": None, "epoch": 0,
                                                 "done": False, "failed": False})
                return None
            return owner

        def update(self, trial_id: str, objective: float, epoch: int, done: bool,
                   failed: bool = False) -> None:
            self.state[trial_id] = {"objective": objective, "epoch": epoch, "done": done,
                                    "failed": failed}

        def get(self, trial_id: str) -> dict | None:
            return self.state.get(trial_id)

    return GraphLedger


def start_ledger(study: str, seed_rows: list[dict]):
    """The study's ledger actor, pinned to the driver's node.

    With num_cpus=0 Ray may place it on any node, and a worker node that dies takes the
    ledger with it: every trial that asks it afterwards fails (seen on the simulated
    cluster). On the driver's node it lives exactly as long as the search does. Keep the
    returned handle until the search ends: Ray deletes an actor nobody holds.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    cls = _make_ledger_class()
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(),
                                          soft=False)
    ledger = cls.options(name=ledger_name(study), get_if_exists=True,
                         scheduling_strategy=here).remote()
    ray.get(ledger.seed.remote(seed_rows))
    return ledger
