"""Gates against their definitions (DESIGN.md): through a, cutoff 0, linear_up p*a,
linear_down (1-p)*a, correct a where the source is right else 0; plus a contract test
over every registered gate."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from ktg_search.errors import KtgError
from ktg_search.registry import GATES


# callers look gates up in the registry; each entry carries its own weight rule
def get_gate(name):
    return GATES.get(name)


def gate_weight(name, p):
    return GATES.get(name).weight(p)


def is_active(name, p):
    return GATES.get(name).is_active(p)

torch.set_num_threads(1)

PROGRESS = [0.0, 0.5, 1.0]
B = 7

# The definitions, written independently of the code: (a, p, mask) -> numpy array.
DEFINITIONS = {
    "through": lambda a, p, m: a.copy(),
    "cutoff": lambda a, p, m: np.zeros_like(a),
    "linear_up": lambda a, p, m: p * a,
    "linear_down": lambda a, p, m: (1.0 - p) * a,
    "correct": lambda a, p, m: np.where(m, a, 0.0),
}


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 5.0, size=B)  # strictly positive, so a zero output is a real zero
    mask = np.array([True, False, True, True, False, False, True])
    return a, mask


def test_definitions_cover_the_builtin_gates():
    # the five gates of DESIGN.md are registered under these names
    assert set(DEFINITIONS) <= set(GATES.names())


@pytest.mark.parametrize("p", PROGRESS)
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_gate_matches_definition(name, p):
    a, mask = _inputs()
    out = get_gate(name)(torch.tensor(a, dtype=torch.float64), p, torch.tensor(mask))
    expected = DEFINITIONS[name](a, p, mask)
    assert out.shape == (B,)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=0)


def test_correct_passes_exactly_the_masked_samples():
    a, mask = _inputs(1)
    out = get_gate("correct")(torch.tensor(a), 0.3, torch.tensor(mask)).numpy()
    assert np.all(out[mask] == a[mask])
    assert np.all(out[~mask] == 0.0)


def test_gates_keep_the_gradient_to_the_loss():
    # linear_up at p = 0.25 scales the gradient by 0.25
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    get_gate("linear_up")(a, 0.25).sum().backward()
    assert a.grad.tolist() == pytest.approx([0.25, 0.25, 0.25])


def test_get_gate_unknown_name_lists_the_valid_ones():
    with pytest.raises(KtgError) as e:
        get_gate("linear_sideways")
    msg = str(e.value)
    assert "linear_sideways" in msg
    for name in GATES.names():
        assert name in msg


@pytest.mark.parametrize("p", [-0.01, 1.01, 2.0, -1.0, math.nan])
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_progress_outside_unit_interval_raises(name, p):
    a, mask = _inputs()
    with pytest.raises(ValueError, match="progress"):
        get_gate(name)(torch.tensor(a), p, torch.tensor(mask))


def test_correct_without_mask_raises():
    with pytest.raises(ValueError, match="source_real"):
        get_gate("correct")(torch.ones(B), 0.5)


def test_correct_with_wrong_mask_size_raises():
    with pytest.raises(ValueError, match="source_real"):
        get_gate("correct")(torch.ones(B), 0.5, torch.ones(B + 1, dtype=torch.bool))


@pytest.mark.parametrize("p", PROGRESS)
def test_gate_weight_values(p):
    assert gate_weight("through", p) == pytest.approx(1.0)
    assert gate_weight("cutoff", p) == 0.0
    assert gate_weight("linear_up", p) == pytest.approx(p)
    assert gate_weight("linear_down", p) == pytest.approx(1.0 - p)
    assert gate_weight("correct", p) is None  # per sample, no constant factor


def test_is_active():
    for p in PROGRESS:
        assert is_active("cutoff", p) is False
        assert is_active("through", p) is True
        assert is_active("correct", p) is True
    assert is_active("linear_up", 0.0) is False
    assert is_active("linear_up", 0.5) is True
    assert is_active("linear_up", 1.0) is True
    assert is_active("linear_down", 0.0) is True
    assert is_active("linear_down", 0.5) is True
    assert is_active("linear_down", 1.0) is False


def test_gate_weight_unknown_name_raises():
    with pytest.raises(KtgError, match="nonsense"):
        gate_weight("nonsense", 0.5)


def _weight_range_params():
    out = []
    for name in GATES.names():
        out.append(pytest.param(name, id=name))
    return out


@pytest.mark.parametrize("name", _weight_range_params())
def test_gate_weight_checks_progress_for_every_gate(name):
    with pytest.raises(ValueError, match="progress"):
        gate_weight(name, 1.5)


# ---- contract: every registered gate -----------------------------------------------------
@pytest.mark.parametrize("p", PROGRESS)
@pytest.mark.parametrize("name", GATES.names())
def test_gate_contract(name, p):
    g = torch.Generator().manual_seed(zlib.crc32(f"{name}:{p}".encode()))
    a = torch.rand(16, generator=g) * 10.0  # non-negative
    mask = torch.rand(16, generator=g) > 0.5
    out = get_gate(name)(a, p, mask)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (16,)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()
    assert (out <= a + 1e-6).all()
    # gate_weight is either None (per sample) or the constant factor the gate applies
    w = gate_weight(name, p)
    if w is not None:
        torch.testing.assert_close(out, w * a)
        assert is_active(name, p) == (w != 0.0)


@pytest.mark.parametrize("name", GATES.names())
def test_needs_verdict_is_true_exactly_when_the_gate_reads_the_mask(name):
    # the registry's metadata cannot lie: a gate whose output depends on D's verdict must
    # say so (the trainer runs D on the source's images only then), and the others not
    a = torch.rand(8) + 0.5
    yes, no = torch.ones(8, dtype=torch.bool), torch.zeros(8, dtype=torch.bool)
    reads = not torch.equal(get_gate(name)(a, 0.5, yes), get_gate(name)(a, 0.5, no))
    assert GATES.get(name).needs_verdict == reads
    assert (gate_weight(name, 0.5) is None) == reads
