"""An exponential moving average (EMA) of generator weights, used for evaluation.

Why: a GAN generator's weights oscillate around a good point as G and D chase each other;
the average of recent weights is a better generator than the last one, at no training cost
(Yazici et al. 2019, "The unusual effectiveness of averaging in GAN training"; BigGAN and
StyleGAN evaluate EMA generators). Training never reads the EMA copy: it only changes what
is evaluated, sampled and kept as a run's best weights.

The schedule, with `n` = the number of G updates done so far, decay `d` and start `s`:

    n <= s:  ema_n = w_n                              (a plain copy while G is still random)
    n >  s:  ema_n = d * ema_{n-1} + (1 - d) * w_n

so that for n > s, ema_n = d^(n-s) w_s + (1 - d) * sum_{j=s+1..n} d^(n-j) w_j
(the closed form the tests check).

Batch-norm buffers: the running mean and variance are averaged with the same schedule,
not copied. They are the statistics of the activations the recent weights produced, and
the EMA weights are an average of those same recent weights; a copy would pair averaged
weights with the statistics of the last weights only. `num_batches_tracked` (an integer
count, unused with a momentum) is copied.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn


class GeneratorEMA:
    """EMA copies of some generators: `update(n)` after every G update, `module(i)` to
    evaluate generator i's average."""

    def __init__(self, generators: nn.ModuleList, nodes: Iterable[int], decay: float,
                 start: int = 0, buffers: str = "average") -> None:
        if buffers not in ("average", "copy"):
            raise ValueError(f"The value of `buffers` is {buffers!r}, but must be one of "
                             f"average, copy")
        self.buffers = buffers
        if not 0.0 < decay < 1.0:
            raise ValueError(f"The value of `decay` is {decay!r}, but must be 0 < decay < 1")
        if start < 0:
            raise ValueError(f"The value of `start` is {start!r}, but must be `start >= 0`")
        self.decay, self.start = float(decay), int(start)
        self.sources = generators
        self.copies: dict[int, nn.Module] = {}
        for i in nodes:
            c = copy.deepcopy(generators[i])
            c.requires_grad_(False)
            c.eval()  # an EMA copy is only ever evaluated
            self.copies[i] = c

    def module(self, i: int) -> nn.Module | None:
        """Generator i's EMA copy, or None when i has none (a frozen or dead node)."""
        return self.copies.get(i)

    @torch.no_grad()
    def update(self, n: int) -> None:
        """Fold in the live weights after the n-th G update (n counts from 1)."""
        w = 0.0 if n <= self.start else self.decay  # weight of the old average
        avg, new, copy_to, copy_from = [], [], [], []
        for i, c in self.copies.items():
            src = self.sources[i]
            avg += list(c.parameters())
            new += [p.detach() for p in src.parameters()]
            for b_ema, b in zip(c.buffers(), src.buffers(), strict=True):
                if b.is_floating_point() and self.buffers == "average":
                    avg.append(b_ema)
                    new.append(b)
                else:  # integer counters; or every buffer with buffers="copy"
                    copy_to.append(b_ema)
                    copy_from.append(b)
        if w == 0.0:
            copy_to += avg
            copy_from += new
        elif avg:
            # ema + (1 - w) * (new - ema) = w * ema + (1 - w) * new, one fused call
            torch._foreach_lerp_(avg, new, 1.0 - w)
        for a, b in zip(copy_to, copy_from, strict=True):
            a.copy_(b)

    def to(self, device: Any) -> "GeneratorEMA":
        for c in self.copies.values():
            c.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "start": self.start,
                "copies": {i: c.state_dict() for i, c in self.copies.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["copies"]) != set(self.copies):
            raise ValueError(f"EMA state holds nodes {sorted(state['copies'])}, this run "
                             f"averages {sorted(self.copies)}")
        for i, sd in state["copies"].items():
            self.copies[i].load_state_dict(sd)
