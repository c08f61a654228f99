"""Losses of the method: D's (k+1)-class loss (eq. 1), each generator's adversarial loss
(eq. 2), and the transfer losses (eq. 5 for images, eqs. 3-4 for feature maps; the KD
paper's eq. 3 pixel MSE: `PixelMSETransfer`).

All return per-sample losses (Tensor[B]) so that gates can act per sample. The transfer
functions do not detach anything: the trainer detaches the source side, so that an edge's
gradient reaches its destination only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .graph import DEFAULT_ALPHA
from .models import TAP_SIDES

REFERENCE_SIZE = 64  # the paper's image size: the resolution-aware alpha's reference


def unit_image(img: Tensor) -> Tensor:
    """Eq. 5's normalized image: flattened to N values, L2-normalized per sample.
    [B, ...] -> [B, N]."""
    return F.normalize(img.flatten(1), dim=1)


def attention_map(feat: Tensor) -> Tensor:
    """Eq. 3's Q: mean over channels of F^2, flattened to N positions and L2-normalized
    per sample. [B, C, H, W] -> [B, H*W]."""
    return F.normalize(feat.pow(2).mean(dim=1).flatten(1), dim=1)


def normalized_distance(src: Sequence[Tensor], dst: Sequence[Tensor],
                        alpha: float = DEFAULT_ALPHA,
                        positions: Sequence[int] | None = None) -> Tensor:
    """The sum both transfer losses share, on already normalized [B, N_m] vectors:
    alpha / M * sum_m (1 / P_m) * sum_n (src_mn - dst_mn)^2 -> [B], where P_m = N_m
    (the paper's eqs. 4-5: each vector's own position count) unless `positions` gives
    other divisors (the resolution-aware scale: `reference_positions`)."""
    total = None
    for m, (a, b) in enumerate(zip(src, dst, strict=True)):
        sq = (a - b).pow(2)
        term = sq.mean(dim=1) if positions is None else sq.sum(dim=1) / positions[m]
        total = term if total is None else total + term
    return total * (alpha / len(src))


def image_transfer_loss(src: Tensor, dst: Tensor, alpha: float = DEFAULT_ALPHA) -> Tensor:
    """Eq. 5, per sample: flatten each image to N values, L2-normalize, and return
    alpha / N * sum_n (src_n - dst_n)^2. Shapes [B, ...] -> [B]."""
    if src.shape != dst.shape:
        raise ValueError(f"image transfer needs equal shapes, got {tuple(src.shape)} "
                         f"and {tuple(dst.shape)}")
    return normalized_distance([unit_image(src)], [unit_image(dst)], alpha)


def _check_feature_pairs(src_feats: Sequence[Tensor], dst_feats: Sequence[Tensor]) -> None:
    if len(src_feats) != len(dst_feats) or not src_feats:
        raise ValueError(f"feature transfer needs the same non-zero number of layers, got "
                         f"{len(src_feats)} and {len(dst_feats)}")
    for fs, fd in zip(src_feats, dst_feats, strict=True):
        if fs.shape[0] != fd.shape[0] or fs.shape[2:] != fd.shape[2:]:
            raise ValueError(f"feature maps differ in batch or spatial size: "
                             f"{tuple(fs.shape)} vs {tuple(fd.shape)}")


def feature_transfer_loss(src_feats: Sequence[Tensor], dst_feats: Sequence[Tensor],
                          alpha: float = DEFAULT_ALPHA) -> Tensor:
    """Eqs. 3-4, per sample: for each tapped layer m, Q = mean over channels of F^2,
    L2-normalized over its N_m positions; the loss is
    alpha / M * sum_m (1 / N_m) * sum_n (Q_src - Q_dst)^2.

    `src_feats` and `dst_feats` are lists of [B, C, H, W] tensors, one per tapped layer
    (M layers). The channel counts of source and destination may differ (generators of
    different widths), the spatial sizes must match. When layers differ in size, N is each
    layer's own position count, so the paper's alpha / (M * N) becomes
    alpha / (M * N_m) per layer; for equal sizes the two readings are the same.
    """
    _check_feature_pairs(src_feats, dst_feats)
    return normalized_distance([attention_map(f) for f in src_feats],
                               [attention_map(f) for f in dst_feats], alpha)


def discriminator_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 1, per sample: cross-entropy over the k+1 classes (class k = real, 0-based)."""
    return F.cross_entropy(logits, labels, reduction="none")


def fake_class(i: int, d_classes: str = "generators") -> int:
    """D's target class for G_i's images in eq. 1 (0-based; class k is real): i, one class
    per generator (`d_classes` "generators", the paper), or 0 for every generator ("fake":
    D keeps its k+1 outputs, classes 1..k-1 are never a target, and D learns real vs fake
    only). The generators' loss (eq. 2) is the same either way: the real class."""
    return i if d_classes == "generators" else 0


def generator_adversarial_loss(logits: Tensor) -> Tensor:
    """Eq. 2, per sample: cross-entropy of D's output on G_t(z) against the real class
    (the last of the k+1 outputs)."""
    real = torch.full((logits.shape[0],), logits.shape[1] - 1, dtype=torch.long,
                      device=logits.device)
    return F.cross_entropy(logits, real, reduction="none")


@dataclass(frozen=True)
class NormalizedTransfer:
    """The built-in transfer kinds (registry.TransferKind): which generator output they
    read, and the loss.

    `layers` are 0-based indices into the generator's tap list (the outputs of its hidden
    up-sampling blocks, counted from the input side); None means the generated image.
    The loss is split in two so that the trainer normalizes each generator's output once
    a step (`prepare`) and compares the results for every edge (`compare`); calling the
    kind does both and equals `image_transfer_loss` / `feature_transfer_loss`.
    """
    name: str
    layers: tuple[int, ...] | None

    def prepare(self, out: tuple[Tensor, list[Tensor]]) -> list[Tensor]:
        """(image, taps) of one generator -> the normalized [B, N_m] vectors the loss
        compares: the unit image, or the attention map of every tapped layer."""
        if self.layers is None:
            return [unit_image(out[0])]
        return [attention_map(out[1][i]) for i in self.layers]

    def compare(self, src: list[Tensor], dst: list[Tensor], alpha: float,
                positions: Sequence[int] | None = None) -> Tensor:
        """Per-sample loss between two `prepare` results; `positions` as in
        `normalized_distance` (None: the paper's own N)."""
        return normalized_distance(src, dst, alpha, positions)

    def reference_positions(self, channels: int) -> list[int]:
        """N_ref of each compared vector: its number of values at the paper's 64 px.

        The resolution-aware scale. Both losses are alpha / N * sum_n (a_n - b_n)^2 over
        L2-normalised N-vectors a, b (eqs. 4-5). Normalised, each value is ~1/sqrt(N), so
        the sum over n is O(1) whatever N is: for the same picture at 4x the positions
        (each value repeated over a 2x2 block) the sum is exactly the same. The 1/N in
        front is then all that changes with resolution: at N positions the loss is
        N_ref / N times the loss of the same content at 64 px. Dividing by N_ref instead
        of N,

            L = alpha / M * sum_m (1 / N_ref_m) * sum_n (a_mn - b_mn)^2
              = plain loss with alpha_m = alpha * N_m / N_ref_m,

        gives the paper's loss at 64 px, and at smaller sizes the loss the same content
        would have at 64 px: alpha means the same strength per unit of image area.
        DCGAN tap sides (models.TAP_SIDES): 16 px 2/4/8/16, 32 and 64 px 4/8/16/32; so
        N / N_ref = 1/4 for every feature layer at 16 px and 1 at 32 px; for the image
        (C * S^2 values) (S / 64)^2: 1/16 at 16 px, 1/4 at 32 px.
        """
        if self.layers is None:
            return [channels * REFERENCE_SIZE ** 2]
        return [TAP_SIDES[REFERENCE_SIZE][m] ** 2 for m in self.layers]

    def __call__(self, src: tuple[Tensor, list[Tensor]], dst: tuple[Tensor, list[Tensor]],
                 alpha: float) -> Tensor:
        """Per-sample loss between (image, taps) of source and destination."""
        if self.layers is None:
            return image_transfer_loss(src[0], dst[0], alpha)
        return feature_transfer_loss([src[1][i] for i in self.layers],
                                     [dst[1][i] for i in self.layers], alpha)


IMAGE_TRANSFER = NormalizedTransfer("image", None)
# The paper's "2nd and 3rd layers" / "3rd and 4th layers" of the DCGAN generator.
FEATURE_IN_TRANSFER = NormalizedTransfer("feature_in", (1, 2))
FEATURE_OUT_TRANSFER = NormalizedTransfer("feature_out", (2, 3))


def pixel_mse_loss(src: Tensor, dst: Tensor, weight: float = 1.0) -> Tensor:
    """The KD paper's eq. 3, per sample: weight * sum over all pixels and channels of
    (teacher - student)^2, with no normalisation. Shapes [B, ...] -> [B]."""
    if src.shape != dst.shape:
        raise ValueError(f"pixel MSE needs equal shapes, got {tuple(src.shape)} "
                         f"and {tuple(dst.shape)}")
    return (src.flatten(1) - dst.flatten(1)).pow(2).sum(dim=1) * weight


@dataclass(frozen=True)
class PixelMSETransfer:
    """`pixel_mse` (registry.TransferKind): the KD paper's mimicry loss (Aguinaldo et al.,
    eq. 3) between the raw generated images, ||G_teacher(z) - G_student(z)||^2 per sample.

    Weight convention: the edge's loss is w * sum_pixels (src - dst)^2 with w = the
    graph's `alpha`, and the D -> student adversarial term has weight 1. The paper's
    joint loss (eq. 4) a * L_adv + (1 - a) * L_MSE is (1 / a) times
    L_adv + (1 - a) / a * L_MSE, so a graph with both edges and alpha w = (1 - a) / a
    is eq. 4 up to a constant factor (which Adam's step all but ignores): the paper's
    best CelebA a = 0.0001 is w = 9999. With no D edge (MSE only, eq. 3), w only scales
    the loss. There is no normalisation, so the resolution-aware transfer scale does not
    apply: `positions` is accepted for the protocol and ignored.
    """
    name: str = "pixel_mse"
    layers: tuple[int, ...] | None = None

    def prepare(self, out: tuple[Tensor, list[Tensor]]) -> list[Tensor]:
        """(image, taps) -> [the image flattened to [B, N]], not normalised."""
        return [out[0].flatten(1)]

    def compare(self, src: list[Tensor], dst: list[Tensor], alpha: float,
                positions: Sequence[int] | None = None) -> Tensor:
        """alpha * sum_n (src_n - dst_n)^2 per sample; `positions` is ignored (eq. 3 is
        an unnormalised sum)."""
        return pixel_mse_loss(src[0].float(), dst[0].float(), alpha)

    def reference_positions(self, channels: int) -> list[int]:
        """The image's value count at 64 px (unused by `compare`: see the class doc)."""
        return [channels * REFERENCE_SIZE ** 2]

    def __call__(self, src: tuple[Tensor, list[Tensor]], dst: tuple[Tensor, list[Tensor]],
                 alpha: float) -> Tensor:
        """Per-sample eq. 3 between the images of (image, taps) pairs."""
        return pixel_mse_loss(src[0], dst[0], alpha)


PIXEL_MSE_TRANSFER = PixelMSETransfer()
