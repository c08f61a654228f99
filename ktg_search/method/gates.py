"""Gates: how much of an edge's per-sample loss reaches the destination generator.

Every gate has the signature `gate(loss, progress, source_real=None) -> Tensor[B]`:
`loss` is the per-sample loss of the edge, `progress` p = iteration / planned total
iterations in [0, 1], and `source_real` a bool mask used only by `correct`.

`correct` is our GAN analogue of KTG's correct gate (which passes the samples whose source
predicts right). On a transfer edge s -> t the source is G_s, and it is "right" on the
samples whose image D classifies as real: only there is G_s's image worth imitating. On
the D -> t edge the source is D itself, and D is right when it classifies G_t's image as
not real; the trainer passes that mask, so the adversarial loss is applied to the samples
that D still catches. Either way the trainer hands the gate a mask that means "the source
is right on this sample".

`cutoff` returns zeros so that the registry contract holds, but the trainer never computes
a cutoff edge's loss at all. The functions are registered in registry.py's GATES, each with
what it needs from the trainer (`Gate.needs_verdict`: True for `correct`); `Gate.weight` and
`Gate.is_active` tell the trainer which edges it can skip. This module looks nothing up.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["through", "cutoff", "linear_up", "linear_down", "correct"]


def _check_progress(progress: float) -> float:
    p = float(progress)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"The value of `progress` is {progress}, but must be in [0, 1]")
    return p


def through(loss: Tensor, progress: float, source_real: Tensor | None = None) -> Tensor:
    """a"""
    _check_progress(progress)
    return loss


def cutoff(loss: Tensor, progress: float, source_real: Tensor | None = None) -> Tensor:
    """0 (the trainer does not even compute the loss)."""
    _check_progress(progress)
    return torch.zeros_like(loss)


def linear_up(loss: Tensor, progress: float, source_real: Tensor | None = None) -> Tensor:
    """p * a: KTG's positive linear gate, off at the start, full at the end."""
    return _check_progress(progress) * loss


def linear_down(loss: Tensor, progress: float, source_real: Tensor | None = None) -> Tensor:
    """(1 - p) * a: KTG's negative linear gate, full at the start, off at the end."""
    return (1.0 - _check_progress(progress)) * loss


def correct(loss: Tensor, progress: float, source_real: Tensor | None = None) -> Tensor:
    """a where `source_real` is True (the source is right on that sample), else 0."""
    _check_progress(progress)
    if source_real is None:
        raise ValueError("the `correct` gate needs `source_real`, a bool mask of shape [B]")
    if source_real.shape != loss.shape[:1]:
        raise ValueError(f"`source_real` has shape {tuple(source_real.shape)}, "
                         f"but the loss has batch size {loss.shape[0]}")
    return loss * source_real.to(loss.dtype)
