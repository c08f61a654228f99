"""What a training step needs from the device, without talking to the host.

A GPU runs ahead of the Python that queues its work; every read of a value on the device
(`.item()`, `float(t)`, `if t:`, `.cpu()`, `.tolist()`) stops the host until the device has
caught up. The step (training.py, multid.py) therefore never reads a value:

  * `Noise`: z comes from a generator on the training device when that is a GPU (seeded
    from the trial seed, saved and restored with the checkpoint), so nothing is drawn on
    the host and copied over. On the CPU it is the trainer's own `rng`, drawn exactly as
    before (the same stream for z and the data order: a one-D graph's losses are bit for
    bit what they were).
  * `to_device`: a real batch goes to a GPU once, from pinned memory, without blocking.
  * the losses a step returns are detached 0-d tensors on the device; `LossSums` adds
    them up on the device (in float64, the same sums Python's floats gave) and reads them
    back once per epoch (`read`: one synchronisation), which is also where a non-finite
    loss marks the run diverged. `read_losses` turns one step's losses into floats (one
    synchronisation) for callers that want them now (the benchmark, the GPU check).

The one step that still reads a value is MGGAN's learning-rate rule (multid.py), only at
the iterations whose loss the rule compares (`LrRule.needs_loss`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..registry import GATES


class Noise:
    """The latent vectors' source: `randn(*shape)` on the training device.

    `on_host=True` draws from `rng` on the host and copies z over even on a GPU: the CPU's
    z exactly, for comparing a GPU's losses with the CPU's (`make gpu-check`); that copy
    is a synchronisation per draw, so training never uses it."""

    def __init__(self, rng: torch.Generator, device: torch.device, seed: int,
                 on_host: bool = False) -> None:
        self.device = device
        self.on_device = device.type == "cuda" and not on_host
        # CPU: the trainer's rng itself, so the CPU stream is the one it always was
        self.gen = (torch.Generator(device=device).manual_seed(seed) if self.on_device
                    else rng)

    def randn(self, *shape: int) -> Tensor:
        if self.on_device:
            return torch.randn(*shape, generator=self.gen, device=self.device)
        return torch.randn(*shape, generator=self.gen).to(self.device)

    def state(self) -> Tensor | None:
        """The device generator's state for a checkpoint (None on the CPU, where z comes
        from the trainer's `rng`, which the checkpoint holds anyway)."""
        return self.gen.get_state() if self.on_device else None

    def set_state(self, state: Tensor | None) -> None:
        # a checkpoint made on the CPU carries none: the device generator keeps its seed
        if self.on_device and state is not None:
            self.gen.set_state(state)


def to_device(real: Tensor, device: torch.device) -> Tensor:
    """A real batch on the training device: on a GPU copied once from pinned memory
    without blocking the host; on the CPU the tensor itself."""
    if device.type != "cuda" or real.device == device:
        return real
    if real.device.type == "cpu" and not real.is_pinned():
        real = real.pin_memory()
    return real.to(device, non_blocking=True)


def read_losses(losses: dict[str, Any]) -> dict[str, float]:
    """One step's losses as floats: one synchronisation for all of them."""
    keys = list(losses)
    if not keys:
        return {}
    vals = torch.stack([losses[k].detach().double() if torch.is_tensor(losses[k])
                        else torch.tensor(float(losses[k]), dtype=torch.float64)
                        for k in keys]).tolist()
    return dict(zip(keys, vals, strict=True))


class LossSums:
    """The sum of every loss over an epoch's steps, kept on the device.

    float64, added one step at a time: the same sums Python's floats gave when every
    step's losses were read back (a loss missing from a step adds nothing, as before)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}

    def add(self, losses: dict[str, Tensor]) -> None:
        for key, v in losses.items():
            if key in self.sums:
                self.sums[key].add_(v)
            else:
                self.sums[key] = v.detach().to(torch.float64, copy=True)

    def read(self, n: int) -> tuple[dict[str, float], bool]:
        """(the means over n steps, whether every loss stayed finite): one
        synchronisation. A non-finite sum means some step's loss was not finite."""
        means = {key: v / max(1, n) for key, v in read_losses(self.sums).items()}
        return means, all(math.isfinite(v) for v in means.values())


class GeneratorStep:
    """The generators' half of a step, mixed into `Trainer`: the same with one
    discriminator (Trainer.train_step) and several (multid.py)."""

    def generate(self, z: Tensor) -> list[list[Tensor]]:
        """Every generator's outputs on z (the image, then its taps); only learning nodes
        build a graph for backward."""
        learning = set(self.learning)
        outs = []
        for i in range(self.graph.k):
            if i in learning:
                outs.append(self.generators[i](z))
            else:
                with torch.no_grad():
                    outs.append(self.generators[i](z))
        return outs

    def generator_update(self, outs: list[list[Tensor]], active: dict, p: float,
                         adversarial: Callable[[int], list[Tensor]],
                         verdict: Callable[[int], Tensor | None],
                         losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The generators' half of a step, the same with one discriminator (train_step)
        and several (multid.py): for each learning node t, its gated adversarial terms
        (`adversarial(t)`, per sample) and every active transfer s -> t, gated (the source
        detached, so the gradient flows into t only; `verdict(s)`: which of G_s's samples
        D called real, for `correct`), summed, averaged over the batch; one optimizer step
        on the sum over t. Adds `g_loss_t` (a device tensor) to `losses`; nothing here
        reads a value back: a non-finite loss is found at the epoch's end (train_epoch)."""
        # each generator's normalized output (unit image or attention maps) once a step,
        # shared by all its edges; a source uses it detached, so that the edge's gradient
        # reaches the destination only
        reps: dict[int, list[Tensor]] = {}

        def rep(i: int) -> list[Tensor]:
            if i not in reps:
                with self._autocast():
                    reps[i] = self.transfer.prepare(outs[i])
            return reps[i]
        total = None
        for t in self.learning:
            terms = adversarial(t)
            for s in range(self.graph.k):
                if (s, t) not in active:
                    continue
                src = [r.detach() for r in rep(s)]
                tl = self.transfer.compare(src, rep(t), self.graph.alpha,
                                           self.transfer_positions).float()
                terms.append(GATES.get(active[s, t])(tl, p, verdict(s)))
            if not terms:
                continue
            l_t = torch.stack(terms).sum(dim=0).mean()
            losses[f"g_loss_{t}"] = l_t.detach()
            total = l_t if total is None else total + l_t
        if total is not None and total.requires_grad:
            self.opt_g.zero_grad(set_to_none=True)
            total.backward()
            self.opt_g.step()
        self.iteration += 1
        if self.ema is not None:
            self.ema.update(self.iteration)
        return losses
