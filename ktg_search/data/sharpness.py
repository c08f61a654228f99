"""Variance of Laplacian (VoL): the sharpness metric of the KD paper (Aguinaldo et al.,
sec. 4.3, after Pech-Pacheco et al. 2000), beside IS and FID.

An image's VoL is the variance, over its pixels, of its discrete Laplacian: the 3x3
kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] on the grey-level image in [0, 255] (the mean
of its channels), borders mirrored without repeating the edge pixel (OpenCV's default
BORDER_REFLECT_101, scipy.ndimage's mode "mirror"). That is `cv2.Laplacian(grey,
cv2.CV_64F).var()`, the usual reading of the metric. Higher is sharper; the paper
reports a student's VoL as a ratio to its teacher's, averaged over a fixed set of images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

VOL_IMAGES = 64  # images per generator: the first of the evaluation's fixed latent points

_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def variance_of_laplacian(images: Tensor) -> Tensor:
    """Per-image VoL of images in [-1, 1] (generator output), [B, C, H, W] -> [B] float64.
    Computed in float64 so that the variance of large, cancelling sums stays exact."""
    grey = ((images.detach().to(torch.float64) + 1.0) * 127.5).mean(dim=1, keepdim=True)
    padded = F.pad(grey, (1, 1, 1, 1), mode="reflect")
    lap = F.conv2d(padded, _KERNEL.to(torch.float64).view(1, 1, 3, 3))
    return lap.flatten(1).var(dim=1, unbiased=False)


def mean_vol(images: Tensor) -> float:
    """The VoL averaged over a batch of images in [-1, 1] (one generator's score)."""
    return float(variance_of_laplacian(images).mean())
