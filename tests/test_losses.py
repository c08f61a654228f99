"""Losses against the paper's equations, recomputed here with numpy (float64 loops):
eq. 1/2 (k+1-way cross-entropy, real = last class), eq. 5 (image transfer) and eqs. 3-4
(feature-map transfer)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ktg_search.method.losses import (discriminator_loss, feature_transfer_loss,
                                      generator_adversarial_loss, image_transfer_loss)
from ktg_search.registry import GENERATORS, TRANSFERS

torch.set_num_threads(1)


# ---- independent reference implementations ------------------------------------------------
def np_image_loss(src: np.ndarray, dst: np.ndarray, alpha: float) -> np.ndarray:
    out = []
    for s, d in zip(src, dst):
        s, d = s.reshape(-1).astype(np.float64), d.reshape(-1).astype(np.float64)
        s = s / np.sqrt(np.sum(s * s))
        d = d / np.sqrt(np.sum(d * d))
        n = s.size
        out.append(alpha / n * sum((s[i] - d[i]) ** 2 for i in range(n)))
    return np.array(out)


def np_attention(f: np.ndarray) -> np.ndarray:
    """One sample [C, H, W] -> Q [H*W]: mean over channels of F^2, L2-normalized."""
    c, h, w = f.shape
    q = np.zeros(h * w)
    for y in range(h):
        for x in range(w):
            q[y * w + x] = sum(float(f[ch, y, x]) ** 2 for ch in range(c)) / c
    return q / np.sqrt(np.sum(q * q))


def np_feature_loss(src_layers, dst_layers, alpha: float) -> np.ndarray:
    m = len(src_layers)
    b = src_layers[0].shape[0]
    out = np.zeros(b)
    for i in range(b):
        total = 0.0
        for fs, fd in zip(src_layers, dst_layers):
            qs, qd = np_attention(fs[i]), np_attention(fd[i])
            n = qs.size  # this layer's own number of positions
            total += np.sum((qs - qd) ** 2) / n
        out[i] = alpha / m * total
    return out


def np_neg_log_softmax(logits: np.ndarray, labels) -> np.ndarray:
    out = []
    for row, y in zip(logits.astype(np.float64), labels):
        mx = row.max()
        lse = mx + np.log(np.sum(np.exp(row - mx)))
        out.append(lse - row[y])
    return np.array(out)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ---- eq. 5 -------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 7.5, 1000.0])
def test_image_transfer_matches_eq5(alpha):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    dst = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    out = image_transfer_loss(_t(src), _t(dst), alpha)
    assert out.shape == (4,)
    np.testing.assert_allclose(out.numpy(), np_image_loss(src, dst, alpha), rtol=1e-5)


def test_image_transfer_default_alpha_is_1000():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(3, 1, 4, 4)).astype(np.float32)
    dst = rng.normal(size=(3, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(image_transfer_loss(_t(src), _t(dst)).numpy(),
                               np_image_loss(src, dst, 1000.0), rtol=1e-5)


def test_image_transfer_hand_values():
    # normalization makes the loss scale-free: x vs 3x is 0; x vs -x is 4 * alpha / N
    rng = np.random.default_rng(2)
    x = _t(rng.normal(size=(2, 3, 4, 4)))
    n = 3 * 4 * 4
    assert image_transfer_loss(x, 3 * x, 10.0).tolist() == pytest.approx([0, 0], abs=1e-5)
    assert image_transfer_loss(x, -x, 10.0).tolist() == pytest.approx([40 / n] * 2, rel=1e-5)


def test_image_transfer_shape_mismatch_raises():
    with pytest.raises(ValueError, match="equal shapes"):
        image_transfer_loss(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 8, 8))


# ---- eqs. 3-4 ----------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 1000.0])
def test_feature_transfer_matches_eqs_3_4_with_different_sizes_and_widths(alpha):
    rng = np.random.default_rng(3)
    # two layers of different spatial size; source and destination of different widths
    src = [rng.normal(size=(3, 8, 4, 4)), rng.normal(size=(3, 6, 8, 8))]
    dst = [rng.normal(size=(3, 4, 4, 4)), rng.normal(size=(3, 2, 8, 8))]
    out = feature_transfer_loss([_t(f) for f in src], [_t(f) for f in dst], alpha)
    assert out.shape == (3,)
    np.testing.assert_allclose(out.numpy(), np_feature_loss(src, dst, alpha), rtol=1e-5)


def test_feature_transfer_equal_sizes_is_alpha_over_MN():
    rng = np.random.default_rng(4)
    src = [rng.normal(size=(2, 5, 3, 3)) for _ in range(3)]
    dst = [rng.normal(size=(2, 7, 3, 3)) for _ in range(3)]
    out = feature_transfer_loss([_t(f) for f in src], [_t(f) for f in dst], 50.0)
    # the paper's form: alpha / (M * N) * sum over layers and positions, N = 9, M = 3
    expected = []
    for i in range(2):
        s = sum(np.sum((np_attention(a[i]) - np_attention(b[i])) ** 2)
                for a, b in zip(src, dst))
        expected.append(50.0 / (3 * 9) * s)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)


def test_feature_transfer_rejects_mismatched_layers():
    with pytest.raises(ValueError):
        feature_transfer_loss([torch.ones(2, 3, 4, 4)], [torch.ones(2, 3, 8, 8)])
    with pytest.raises(ValueError):
        feature_transfer_loss([torch.ones(2, 3, 4, 4)], [])
    with pytest.raises(ValueError):
        feature_transfer_loss([], [])


# ---- gradients: the functions do not detach; the trainer detaches the source -------------
def _image_pair():
    g = torch.Generator().manual_seed(5)
    return (torch.randn(3, 2, 4, 4, generator=g, requires_grad=True),
            torch.randn(3, 2, 4, 4, generator=g, requires_grad=True))


def _feature_pair():
    g = torch.Generator().manual_seed(6)
    src = [torch.randn(3, 4, 4, 4, generator=g, requires_grad=True),
           torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)]
    dst = [torch.randn(3, 2, 4, 4, generator=g, requires_grad=True),
           torch.randn(3, 2, 8, 8, generator=g, requires_grad=True)]
    return src, dst


def test_image_transfer_gradient_reaches_both_sides():
    src, dst = _image_pair()
    image_transfer_loss(src, dst).sum().backward()
    assert src.grad is not None and src.grad.abs().sum() > 0
    assert dst.grad is not None and dst.grad.abs().sum() > 0


def test_image_transfer_detached_source_gets_no_gradient():
    src, dst = _image_pair()
    image_transfer_loss(src.detach(), dst).sum().backward()
    assert src.grad is None
    assert dst.grad is not None and dst.grad.abs().sum() > 0


def test_feature_transfer_gradient_reaches_both_sides():
    src, dst = _feature_pair()
    feature_transfer_loss(src, dst).sum().backward()
    for t in src + dst:
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_feature_transfer_detached_source_gets_no_gradient():
    src, dst = _feature_pair()
    feature_transfer_loss([f.detach() for f in src], dst).sum().backward()
    for t in src:
        assert t.grad is None
    for t in dst:
        assert t.grad is not None and t.grad.abs().sum() > 0


# ---- eqs. 1-2 ----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4])
def test_discriminator_loss_is_cross_entropy(k):
    rng = np.random.default_rng(7 + k)
    logits = rng.normal(scale=3.0, size=(6, k + 1)).astype(np.float32)
    labels = rng.integers(0, k + 1, size=6)
    labels[0] = k  # at least one real sample
    out = discriminator_loss(_t(logits), torch.tensor(labels))
    assert out.shape == (6,)
    np.testing.assert_allclose(out.numpy(), np_neg_log_softmax(logits, labels), rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_generator_adversarial_loss_targets_the_last_class(k):
    rng = np.random.default_rng(11 + k)
    logits = rng.normal(scale=3.0, size=(5, k + 1)).astype(np.float32)
    out = generator_adversarial_loss(_t(logits))
    assert out.shape == (5,)
    np.testing.assert_allclose(out.numpy(), np_neg_log_softmax(logits, [k] * 5), rtol=1e-5)


def test_generator_loss_small_when_d_says_real():
    logits = torch.tensor([[0.0, 0.0, 20.0], [20.0, 0.0, 0.0]])
    out = generator_adversarial_loss(logits)
    assert out[0].item() < 1e-6
    assert out[1].item() == pytest.approx(20.0 + np.log(1 + 2 * np.exp(-20.0)), rel=1e-5)


# ---- transfer kinds ----------------------------------------------------------------------
def test_transfer_registry_layers():
    assert TRANSFERS.get("image").layers is None
    assert tuple(TRANSFERS.get("feature_in").layers) == (1, 2)
    assert tuple(TRANSFERS.get("feature_out").layers) == (2, 3)


def _fake_generator_output(rng, b, widths, sizes, img=(3, 16, 16)):
    image = rng.normal(size=(b, *img))
    taps = [rng.normal(size=(b, c, s, s)) for c, s in zip(widths, sizes)]
    return image, taps


@pytest.mark.parametrize("kind,layers", [("image", None), ("feature_in", (1, 2)),
                                         ("feature_out", (2, 3))])
def test_transfer_kind_reads_the_right_taps(kind, layers):
    rng = np.random.default_rng(13)
    sizes = [2, 4, 8, 16]
    s_img, s_taps = _fake_generator_output(rng, 3, [16, 8, 4, 2], sizes)
    d_img, d_taps = _fake_generator_output(rng, 3, [32, 16, 8, 4], sizes)
    out = TRANSFERS.get(kind)((_t(s_img), [_t(f) for f in s_taps]),
                              (_t(d_img), [_t(f) for f in d_taps]), 20.0)
    if layers is None:
        expected = np_image_loss(s_img, d_img, 20.0)
    else:
        expected = np_feature_loss([s_taps[i] for i in layers], [d_taps[i] for i in layers],
                                   20.0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)
    # the trainer's split: normalize each side once, then compare
    t = TRANSFERS.get(kind)
    split = t.compare(t.prepare((_t(s_img), [_t(f) for f in s_taps])),
                      t.prepare((_t(d_img), [_t(f) for f in d_taps])), 20.0)
    np.testing.assert_allclose(split.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("kind", TRANSFERS.names())
def test_every_registered_transfer_kind_implements_the_protocol(kind):
    """A new transfer kind implements registry.TransferKind; checked attribute by attribute
    (runtime_checkable only sees names) and by computing its loss both ways."""
    from ktg_search.registry import TransferKind
    t = TRANSFERS.get(kind)
    assert isinstance(t, TransferKind)
    assert isinstance(t.name, str) and t.name == kind
    assert t.layers is None or all(isinstance(i, int) for i in t.layers)
    for method in ("prepare", "compare", "reference_positions", "__call__"):
        assert callable(getattr(t, method)), method
    torch.manual_seed(1)
    with torch.no_grad():
        z = torch.randn(2, 100)
        src, dst = (GENERATORS.get("dcgan-small")(16, 1)(z),
                    GENERATORS.get("dcgan-medium")(16, 1)(z))
    whole = t(src, dst, 10.0)
    split = t.compare(t.prepare(src), t.prepare(dst), 10.0)
    assert whole.shape == (2,) and (whole > 0).all()
    torch.testing.assert_close(whole, split)
    refs = t.reference_positions(1)
    assert len(refs) > 0, "no compared vector"
    assert all(isinstance(n, int) and n > 0 for n in refs)


def test_the_transfer_protocol_rejects_an_incomplete_kind():
    from ktg_search.registry import TransferKind

    class OnlyCall:
        name, layers = "x", None

        def __call__(self, src, dst, alpha):
            return src[0]
    assert not isinstance(OnlyCall(), TransferKind)


@pytest.mark.parametrize("kind", TRANSFERS.names())
def test_transfer_contract_on_real_generators(kind):
    """Every transfer kind works between every pair of registered generator widths."""
    torch.manual_seed(0)
    names = GENERATORS.names()
    outs = {}
    with torch.no_grad():
        z = torch.randn(3, 100)
        for n in names:
            outs[n] = GENERATORS.get(n)(16, 1)(z)
    t = TRANSFERS.get(kind)
    for a in names:
        for b in names:
            loss = t(outs[a], outs[b], 1000.0)
            assert loss.shape == (3,)
            assert torch.isfinite(loss).all()
            assert (loss >= 0).all()
            if a == b:
                assert loss.abs().max().item() < 1e-3
            else:
                assert loss.max().item() > 0


# ---- the resolution-aware scale (reference: the paper's 64 px) ---------------------------
# Positions each compared vector has at 64 px, written out by hand from the DCGAN layout
# (tap sides 4/8/16/32 at 64 px; the image has C * 64 * 64 values).
N_REF_BY_HAND = {"image": lambda c: [c * 64 * 64], "feature_in": lambda c: [8 * 8, 16 * 16],
                 "feature_out": lambda c: [16 * 16, 32 * 32]}
# loss(resolution) / loss(plain) = N / N_ref, the same for every tapped layer of a kind
RATIO_BY_HAND = {("image", 16): 1 / 16, ("image", 32): 1 / 4, ("image", 64): 1.0,
                 ("feature_in", 16): 1 / 4, ("feature_in", 32): 1.0, ("feature_in", 64): 1.0,
                 ("feature_out", 16): 1 / 4, ("feature_out", 32): 1.0,
                 ("feature_out", 64): 1.0}


def np_resolution_loss(src, dst, alpha: float, n_ref: list[int], image: bool) -> np.ndarray:
    """Eqs. 3-5 with 1 / N_ref_m in place of 1 / N_m: alpha / M * sum_m (1 / N_ref_m) *
    sum_n (a_mn - b_mn)^2, on L2-normalised unit images or attention maps."""
    b = src[0].shape[0]
    out = np.zeros(b)
    for i in range(b):
        total = 0.0
        for m, (fs, fd) in enumerate(zip(src, dst)):
            if image:
                a = fs[i].reshape(-1) / np.sqrt(np.sum(fs[i] ** 2))
                c = fd[i].reshape(-1) / np.sqrt(np.sum(fd[i] ** 2))
            else:
                a, c = np_attention(fs[i]), np_attention(fd[i])
            total += np.sum((a - c) ** 2) / n_ref[m]
        out[i] = alpha / len(src) * total
    return out


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("kind", ["image", "feature_in", "feature_out"])
def test_resolution_aware_alpha_against_the_equation(kind, size):
    torch.manual_seed(size)
    channels = 1
    gs = [GENERATORS.get("dcgan-small")(size, channels), GENERATORS.get("dcgan-medium")(
        size, channels)]
    with torch.no_grad():
        z = torch.randn(3, 100)
        (s_img, s_taps), (d_img, d_taps) = gs[0](z), gs[1](z)
    t = TRANSFERS.get(kind)
    assert t.reference_positions(channels) == N_REF_BY_HAND[kind](channels)
    alpha = 1000.0
    res = t.compare(t.prepare((s_img, s_taps)), t.prepare((d_img, d_taps)), alpha,
                    t.reference_positions(channels))
    plain = t.compare(t.prepare((s_img, s_taps)), t.prepare((d_img, d_taps)), alpha)
    if t.layers is None:
        src, dst, image = [s_img.double().numpy()], [d_img.double().numpy()], True
        np_plain = np_image_loss(src[0], dst[0], alpha)
    else:
        src = [s_taps[m].double().numpy() for m in t.layers]
        dst = [d_taps[m].double().numpy() for m in t.layers]
        image = False
        np_plain = np_feature_loss(src, dst, alpha)
    by_hand = np_resolution_loss(src, dst, alpha, N_REF_BY_HAND[kind](channels), image)
    np.testing.assert_allclose(res.numpy(), by_hand, rtol=1e-4)
    np.testing.assert_allclose(plain.numpy(), np_plain, rtol=1e-4)
    # equal to the paper's loss at 64 px; scaled by N / N_ref below it
    np.testing.assert_allclose(res.numpy(), RATIO_BY_HAND[kind, size] * np_plain, rtol=1e-4)
    if size < 64 and not (size == 32 and kind != "image"):
        assert np.all(np.abs(res.numpy() - np_plain) > 1e-3 * np_plain)  # it does scale


def test_same_content_at_4x_the_positions_gives_the_same_resolution_aware_loss():
    # the derivation's premise: a map upsampled 2x per side (each value over a 2x2 block)
    # has the same sum of squared differences after L2 normalisation, so only 1/N moved
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 4, 8, 8)), rng.normal(size=(2, 4, 8, 8))
    up = lambda x: np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)  # noqa: E731
    small = np_resolution_loss([a], [b], 10.0, [256], image=False)
    large = np_resolution_loss([up(a)], [up(b)], 10.0, [256], image=False)
    np.testing.assert_allclose(small, large, rtol=1e-10)
    # while the plain loss at 4x the positions is 4x smaller
    np.testing.assert_allclose(np_feature_loss([up(a)], [up(b)], 10.0),
                               np_feature_loss([a], [b], 10.0) / 4, rtol=1e-10)
