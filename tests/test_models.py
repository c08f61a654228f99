"""Generator and discriminator contracts, over every registry entry (mimicry-style: tiny
CPU batches, shape checks and one real optimisation step per model)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ktg_search.registry import DISCRIMINATORS, GENERATORS

torch.set_num_threads(1)

SIZES = [16, 32, 64]
CHANNELS = [1, 3]
TAP_SIZES = {16: [2, 4, 8, 16], 32: [4, 8, 16, 32], 64: [4, 8, 16, 32]}
NZ = 100


def _has_spectral_norm(m: nn.Module) -> bool:
    return hasattr(m, "weight_orig") or (parametrize.is_parametrized(m, "weight") and any(
        "spectral" in type(p).__name__.lower() for p in m.parametrizations.weight))


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]


# ---- generators --------------------------------------------------------------------------
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_contract(name, size, channels):
    torch.manual_seed(0)
    g = GENERATORS.get(name)(size, channels)
    z = torch.randn(3, NZ) * 3.0  # a wide z, so tanh's range is exercised
    with torch.no_grad():
        img, taps = g(z)
    assert img.shape == (3, channels, size, size)
    assert torch.isfinite(img).all()
    assert img.min() >= -1.0 and img.max() <= 1.0
    assert img.std() > 0  # not a constant image
    assert len(taps) == 4
    for tap, s in zip(taps, TAP_SIZES[size]):
        assert tap.dim() == 4 and tap.shape[0] == 3
        assert tuple(tap.shape[2:]) == (s, s)
    widths = [t.shape[1] for t in taps]
    assert all(a > b for a, b in zip(widths, widths[1:])), widths


@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_one_step_changes_parameters(name):
    torch.manual_seed(1)
    g = GENERATORS.get(name)(16, 3)
    before = [p.detach().clone() for p in g.parameters()]
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    img, taps = g(torch.randn(4, NZ))
    target = torch.zeros_like(img).uniform_(-1, 1)
    loss = (img - target).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, g.parameters())]
    assert len(changed) > 0
    assert all(changed), f"{changed.count(False)} of {len(changed)} parameters unchanged"


@pytest.mark.parametrize("bad", [8, 28, 48, 128])
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_bad_image_size(name, bad):
    with pytest.raises(ValueError) as e:
        GENERATORS.get(name)(bad, 3)
    msg = str(e.value)
    assert str(bad) in msg and "image_size" in msg
    for s in SIZES:
        assert str(s) in msg


# ---- discriminators ----------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_contract(name, size, channels, k):
    torch.manual_seed(0)
    d = DISCRIMINATORS.get(name)(size, channels, k + 1)
    x = torch.rand(2, channels, size, size) * 2 - 1
    with torch.no_grad():
        out = d(x)
    assert out.shape == (2, k + 1)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_one_step_changes_parameters(name):
    torch.manual_seed(2)
    d = DISCRIMINATORS.get(name)(16, 3, 3)
    before = [p.detach().clone() for p in d.parameters()]
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = nn.functional.cross_entropy(d(x), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, d.parameters())]
    assert len(changed) > 0
    assert all(changed), f"{changed.count(False)} of {len(changed)} parameters unchanged"


@pytest.mark.parametrize("bad", [8, 48])
@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_bad_image_size(name, bad):
    with pytest.raises(ValueError) as e:
        DISCRIMINATORS.get(name)(bad, 3, 3)
    assert str(bad) in str(e.value) and "image_size" in str(e.value)


SN_KINDS = [n for n in DISCRIMINATORS.names() if n.split("-")[0] == "sn"]
BN_KINDS = [n for n in DISCRIMINATORS.names() if n.split("-")[0] == "bn"]


def test_every_discriminator_kind_says_its_normalisation():
    # the recipe rule (trainconfig.effective_discriminator) reads it from the name
    assert set(SN_KINDS) | set(BN_KINDS) == set(DISCRIMINATORS.names())
    assert {"sn", "sn-cnn", "bn", "bn-cnn"} <= set(DISCRIMINATORS.names())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", SN_KINDS)
def test_sn_discriminator_has_spectral_norm_everywhere(name, size):
    d = DISCRIMINATORS.get(name)(size, 3, 4)
    layers = _weighted_layers(d)
    assert len(layers) >= 3  # at least two convs and the head
    assert any(isinstance(m, nn.Linear) for m in layers)
    for m in layers:
        assert _has_spectral_norm(m), m
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", BN_KINDS)
def test_bn_discriminator_has_batch_norm_and_no_spectral_norm(name, size):
    d = DISCRIMINATORS.get(name)(size, 3, 4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    layers = _weighted_layers(d)
    assert len(layers) >= 3
    for m in layers:
        assert not _has_spectral_norm(m), m


@pytest.mark.parametrize("size,convs", [(16, [(1, 32, 3, 1, 16), (32, 64, 4, 2, 8),
                                              (64, 64, 3, 1, 8), (64, 128, 4, 2, 4),
                                              (128, 128, 3, 1, 4)]),
                                        (32, [(1, 32, 3, 1, 32), (32, 64, 4, 2, 16),
                                              (64, 64, 3, 1, 16), (64, 128, 4, 2, 8),
                                              (128, 128, 3, 1, 8), (128, 256, 4, 2, 4),
                                              (256, 256, 3, 1, 4)])])
@pytest.mark.parametrize("name", ["sn-cnn", "bn-cnn"])
def test_standard_cnn_layout(name, size, convs):
    # SN-GAN's standard CNN as issue 10 measured it: conv3x3 s1, then a conv4x4 s2 that
    # doubles the width and a conv3x3 s1 per halving, LeakyReLU 0.1, linear on 4x4
    d = DISCRIMINATORS.get(name)(size, 1, 4, 32)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(
        (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], o.shape[-1])))
        for m in d.modules() if isinstance(m, nn.Conv2d)]
    d(torch.zeros(2, 1, size, size))
    for h in hooks:
        h.remove()
    assert seen == convs
    assert d.head.in_features == convs[-1][1] * 16
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.1}


def test_spectral_norm_detector_detects():
    # the helper the two tests above rely on tells the two cases apart
    from torch.nn.utils import spectral_norm
    from torch.nn.utils.parametrizations import spectral_norm as sn_param
    assert _has_spectral_norm(spectral_norm(nn.Linear(3, 3)))
    assert _has_spectral_norm(sn_param(nn.Linear(3, 3)))
    assert not _has_spectral_norm(nn.Linear(3, 3))
