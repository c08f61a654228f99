"""A trainer's checkpoint: what it holds, putting it back, and its files.

`TrainerCheckpoints` is mixed into `Trainer` (training.py): `trainer.save(path)` reads as
one object while the training loop's file stays about training (`Trainer.restore`, the
constructor from a saved file, is here too: `cls` is the Trainer). What it reads and sets
are the trainer's own attributes (graph, config, models, optimizers, counters, bests, EMA); a
checkpoint file is read back as data and checked key by key (safeload.py,
`check_trainer_state`) before anything is put in place.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..errors import KtgError
from ..files.fileio import atomic_write


class TrainerCheckpoints:
    """The saved state of a `Trainer`: `state_dict` / `load_state_dict`, the whole state
    as one file (`save`; `Trainer.restore` reads it back), and one generator as a teacher
    file (`export_generator`)."""

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "graph": self.graph.to_dict(),
                "generators": [g.state_dict() for g in self.generators],
                "D": self.D.state_dict(), "opt_d": self.opt_d.state_dict(),
                "opt_g": self.opt_g.state_dict() if self.opt_g else None,
                "iteration": self.iteration, "epoch": self.epoch, "status": self.status,
                "rng": self.rng.get_state(), "history": self.history,
                # z's generator on a GPU (steps.Noise); None on the CPU, where z comes
                # from `rng`
                "noise_rng": self.noise.state(),
                "best_is": self.best_is, "best_epoch": self.best_epoch,
                "best_objective": self.best_objective,
                "best_generators": self.best_generators,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "models": [n.model for n in self.graph.nodes],
                # D1..D(m-1), their optimizers, the pairing (absent before several Ds)
                "multi_d": self.multi.state_dict() if self.multi is not None else None}

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        """Put a `state_dict()` in place; KtgError (naming `where`) when it does not fit
        this trainer's graph and config."""
        from ..files.safeload import check_trainer_state
        check_trainer_state(state, where)
        if len(state["generators"]) != self.graph.k:
            raise KtgError(f"{where} holds {len(state['generators'])} generator(s), but "
                           f"the graph has {self.graph.k}")
        try:
            for g, sd in zip(self.generators, state["generators"], strict=True):
                g.load_state_dict(sd)
            self.D.load_state_dict(state["D"])
            self.opt_d.load_state_dict(state["opt_d"])
            if self.opt_g and state["opt_g"]:
                self.opt_g.load_state_dict(state["opt_g"])
            if self.multi is not None:
                if not isinstance(state.get("multi_d"), dict):
                    raise KtgError(f"{where} holds one discriminator, but the graph has "
                                   f"{self.graph.m}")
                self.multi.load_state_dict(state["multi_d"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            why = (str(e).strip() or type(e).__name__).splitlines()[0][:200]
            raise KtgError(f"{where} does not fit this graph and config: {why}") from None
        self.iteration, self.epoch = state["iteration"], state["epoch"]
        if self.multi is not None:  # the pairing of the iteration it resumes at
            self.multi.sync_roles()
            if list(state["multi_d"]["roles"]) != self.multi.roles:
                raise KtgError(f"{where}: its pairing {state['multi_d']['roles']} is not "
                               f"the one the graph's regroup settings give at iteration "
                               f"{self.iteration}: {self.multi.roles}")
        self.status = state["status"]
        self.rng.set_state(state["rng"])
        self.noise.set_state(state.get("noise_rng"))
        self.history = list(state["history"])
        self.best_is = list(state["best_is"])
        self.best_epoch, self.best_objective = state["best_epoch"], state["best_objective"]
        self.best_generators = state.get("best_generators")
        if self.ema is not None:
            if state.get("ema") is None:
                raise KtgError("this run averages generator weights (ema_decay > 0) but "
                               "the checkpoint holds no EMA state")
            self.ema.load_state_dict(state["ema"])

    @classmethod
    def restore(cls, path: str | Path, data=None, evaluator=None) -> "TrainerCheckpoints":
        """A trainer from a `save()` file, loaded as data (safeload.py); KtgError naming
        the file when it is truncated, refused or not a trainer checkpoint."""
        from ..files.safeload import check_trainer_state, load_checkpoint
        from .graph import Graph
        from .trainconfig import TrainConfig
        where = f"checkpoint {str(path)!r}"
        state = check_trainer_state(load_checkpoint(path), path)
        t = cls(Graph.from_dict(state["graph"], where=where),
                TrainConfig.from_dict(state["config"], where=where),
                data=data, evaluator=evaluator)
        t.load_state_dict(state, where)
        return t

    def save(self, path: str | Path) -> None:
        """Atomically write the whole training state (temp file + rename)."""
        state = self.state_dict()
        atomic_write(Path(path), lambda tmp: torch.save(state, tmp))

    def export_generator(self, node: int, path: str | Path) -> None:
        """A single generator checkpoint that a graph node can name as `pretrained`."""
        ckpt = {"model": self.graph.nodes[node].model,
                "generator": self.eval_generator(node).state_dict(),
                "config": asdict(self.config), "best_is": self.best_is[node],
                # what the teacher was trained on, checked by teachers.load_pretrained
                "dataset": self.config.dataset, "channels": self.data.channels,
                "image_size": self.config.image_size}
        atomic_write(Path(path), lambda tmp: torch.save(ckpt, tmp))
