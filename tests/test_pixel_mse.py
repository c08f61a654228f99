"""The KD paper's pixel MSE (Aguinaldo et al., eq. 3) as a transfer kind: the loss against
the equation computed in numpy, the trainer's split equal to the whole, and the gradient
reaching the student only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ktg_search.method.graph import Graph
from ktg_search.method.losses import pixel_mse_loss
from ktg_search.method.trainconfig import TrainConfig
from ktg_search.method.training import Trainer
from ktg_search.registry import TRANSFERS

torch.set_num_threads(2)


def np_eq3(teacher: np.ndarray, student: np.ndarray, w: float) -> np.ndarray:
    """w * ||g_teacher(z) - g_student(z)||^2 per sample, looping over every value."""
    out = np.zeros(teacher.shape[0])
    for i in range(teacher.shape[0]):
        for v_t, v_s in zip(teacher[i].ravel(), student[i].ravel()):
            out[i] += (float(v_t) - float(v_s)) ** 2
    return w * out


@pytest.mark.parametrize("w", [1.0, 9999.0])
def test_pixel_mse_matches_eq3(w):
    rng = np.random.default_rng(3)
    t, s = rng.uniform(-1, 1, (4, 1, 16, 16)), rng.uniform(-1, 1, (4, 1, 16, 16))
    kind = TRANSFERS.get("pixel_mse")
    whole = kind((torch.tensor(t, dtype=torch.float32), []),
                 (torch.tensor(s, dtype=torch.float32), []), w)
    np.testing.assert_allclose(whole.numpy(), np_eq3(t, s, w), rtol=1e-5)
    split = kind.compare(kind.prepare((torch.tensor(t, dtype=torch.float32), [])),
                         kind.prepare((torch.tensor(s, dtype=torch.float32), [])), w,
                         positions=[7])  # no normalisation: positions change nothing
    np.testing.assert_allclose(split.numpy(), np_eq3(t, s, w), rtol=1e-5)


def test_pixel_mse_hand_values_and_teeth():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.full((2, 3, 4, 4), 0.5)
    # 48 values, each differing by 0.5: 48 * 0.25 = 12, unnormalised (eq. 5 would give
    # 0: both unit images of constant tensors... and a mean, not a sum)
    assert pixel_mse_loss(x, y).tolist() == pytest.approx([12.0, 12.0])
    assert pixel_mse_loss(y, y, 5.0).tolist() == [0.0, 0.0]
    assert TRANSFERS.get("image")((y, []), (2 * y, []), 1.0).tolist() == \
        pytest.approx([0.0, 0.0], abs=1e-6)  # eq. 5 is blind to scale; eq. 3 is not
    assert pixel_mse_loss(y, 2 * y).tolist() == pytest.approx([12.0, 12.0])
    with pytest.raises(ValueError, match="equal shapes"):
        pixel_mse_loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 8, 8))


def test_pixel_mse_gradient_reaches_the_student_only(digits16, evaluator16):
    # node 0 learns nothing (no incoming edge) but teaches node 1 by pixel MSE alone
    g = Graph.build(["dcgan-small"] * 2, {(0, 1): "through"}, transfer="pixel_mse",
                    alpha=1.0)
    cfg = TrainConfig(dataset="digits", image_size=16, batch_size=32, epochs=1,
                      device="cpu", eval_samples=500, max_iters_per_epoch=4)
    t = Trainer(g, cfg, data=digits16, evaluator=evaluator16)
    before = [[p.detach().clone() for p in t.generators[i].parameters()] for i in (0, 1)]
    t.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(before[0], t.generators[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before[1], t.generators[1].parameters()))
