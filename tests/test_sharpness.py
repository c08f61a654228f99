"""Variance of Laplacian (the KD paper's sharpness, data/sharpness.py) against scipy's
Laplacian, by hand on known images, and as a column of a real run; students of any width
(dcgan-w{d}) with their parameter count against the layer-by-layer formula."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy import ndimage

from ktg_search.data.sharpness import mean_vol, variance_of_laplacian
from ktg_search.method.graph import Graph
from ktg_search.method.models import count_parameters
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.registry import GENERATORS, WIDTHS

torch.set_num_threads(2)


def np_vol(img: np.ndarray) -> float:
    """Independent VoL: grey level in [0, 255] from [-1, 1], scipy's 5-point Laplacian
    with mirrored borders (OpenCV's BORDER_REFLECT_101), population variance."""
    grey = ((img.astype(np.float64) + 1.0) * 127.5).mean(axis=0)
    return float(ndimage.laplace(grey, mode="mirror").var())


def test_vol_matches_scipy_on_random_and_rgb_images():
    rng = np.random.default_rng(5)
    imgs = rng.uniform(-1, 1, (3, 3, 16, 16))
    out = variance_of_laplacian(torch.tensor(imgs, dtype=torch.float32))
    expected = [np_vol(im.astype(np.float32)) for im in imgs]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)
    assert mean_vol(torch.tensor(imgs, dtype=torch.float32)) == \
        pytest.approx(np.mean(expected), rel=1e-6)


def test_vol_by_hand():
    flat = torch.zeros(1, 1, 5, 5)
    assert variance_of_laplacian(flat).item() == 0.0  # no edge, no variance
    # one white pixel (255) in the middle of a black (0) 5x5 image: the Laplacian is
    # -1020 there and +255 at its 4 neighbours, 0 elsewhere; mean 0, so the variance is
    # (1020^2 + 4 * 255^2) / 25
    dot = -torch.ones(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    assert variance_of_laplacian(dot).item() == pytest.approx(
        (1020 ** 2 + 4 * 255 ** 2) / 25)
    # teeth: a blurred image is less sharp than the original
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (1, 16, 16))
    blurred = ndimage.uniform_filter(img, size=(1, 3, 3), mode="mirror")
    assert np_vol(blurred) < np_vol(img) / 4
    assert variance_of_laplacian(torch.tensor(blurred[None])).item() == \
        pytest.approx(np_vol(blurred), rel=1e-9)


def dcgan_params_16px(d: int, channels: int, nz: int = 100) -> int:
    """Parameters of the 16 px DCGAN generator with base width d, layer by layer:
    ConvT nz->8d (2x2), then ConvT 8d->4d->2d->d (4x4), each with BN (2 per channel), and
    a 3x3 conv d->C, no biases."""
    w = [8 * d, 4 * d, 2 * d, d]
    n = nz * w[0] * 4 + 2 * w[0]
    for a, b in zip(w, w[1:]):
        n += a * b * 16 + 2 * b
    return n + d * channels * 9


@pytest.mark.parametrize("d", WIDTHS)
def test_every_width_has_the_formula_parameter_count(d):
    g = GENERATORS.get(f"dcgan-w{d}")(16, 1)
    assert count_parameters(g) == dcgan_params_16px(d, 1)
    assert g(torch.randn(2, 100))[0].shape == (2, 1, 16, 16)


def test_parameters_grow_about_as_d_squared_and_named_sizes_are_widths():
    big = [count_parameters(GENERATORS.get(f"dcgan-w{d}")(16, 1)) for d in (32, 64, 128)]
    assert big[1] / big[0] == pytest.approx(4, rel=0.1)
    assert big[2] / big[1] == pytest.approx(4, rel=0.05)
    for name, d in (("small", 16), ("medium", 32), ("large", 64)):
        assert count_parameters(GENERATORS.get(f"dcgan-{name}")(16, 1)) == \
            dcgan_params_16px(d, 1)


def test_a_run_records_vol_and_params_per_generator(digits16, evaluator16, tmp_path):
    from ktg_search.results.runs import train_one
    g = Graph.build(["dcgan-w4", "dcgan-w8"], {("D", 0): "through", ("D", 1): "through"},
                    transfer="pixel_mse", alpha=1.0)
    cfg = TrainConfig(dataset="digits", image_size=16, batch_size=32, epochs=1,
                      device="cpu", eval_samples=500, max_iters_per_epoch=3)
    summary = train_one(g, cfg, tmp_path / "run", data=digits16, evaluator=evaluator16)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    for i, d in enumerate((4, 8)):
        assert int(float(row[f"params_g{i}"])) == dcgan_params_16px(d, 1)
        assert summary.params[i] == dcgan_params_16px(d, 1)
        assert float(row[f"vol_g{i}"]) > 0 and summary.vol_at_best[i] == \
            pytest.approx(float(row[f"vol_g{i}"]))
