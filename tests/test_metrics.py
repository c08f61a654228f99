"""IS / FID: the numbers against formulas computed here, the caches, both extractors.

The digits classifier is trained once per session (conftest.py points KTG_CACHE at a
fresh temporary folder for the whole session); the Inception path uses a weights file
this test writes itself (random weights in torch-fidelity's format: nothing is
downloaded).
"""
from __future__ import annotations

import json
import os
import time
from urllib.error import URLError

import numpy as np
import pytest
import scipy.linalg
import torch

from ktg_search.data import extractors, metrics
from ktg_search.data.loading import load_dataset
from ktg_search.data.imagedata import cache_dir
from ktg_search.errors import KtgError
from ktg_search.data.metrics import Evaluator, get_extractor, to_uint8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # another process may be using the other core
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def ktg_cache(tmp_path_factory):
    """One cache folder for the session, so the digits classifier trains once."""
    mp = pytest.MonkeyPatch()
    if not os.environ.get("KTG_CACHE"):
        mp.setenv("KTG_CACHE", str(tmp_path_factory.mktemp("ktg-cache")))
    yield cache_dir()
    mp.undo()


@pytest.fixture(scope="module")
def digits(ktg_cache):
    return load_dataset("digits", 16)


@pytest.fixture(scope="module")
def full_evaluator(digits):
    """Real statistics over all 1,797 digits, so scoring the same images gives FID 0."""
    return Evaluator(digits, extractor="classifier", num_samples=len(digits))


def np_inception_score(logits: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))), one split, in float64 numpy."""
    z = logits.double().numpy()
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    py = p.mean(axis=0)
    kl = (p * (np.log(p + 1e-300) - np.log(py))).sum(axis=1)
    return float(np.exp(kl.mean()))


def np_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)) with scipy's sqrtm."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def ev_subset(n: int, k: int) -> torch.Tensor:
    """The real images an Evaluator's statistics use: all, or a seeded subset of k."""
    return torch.arange(n) if k >= n else \
        torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k]


def shifted(x: torch.Tensor, px: int = 2) -> torch.Tensor:
    """A 'mediocre generator': real digits moved by px pixels."""
    return torch.roll(x, shifts=(px, px), dims=(2, 3))


# ---- conversion and splits -------------------------------------------------------------

def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-1.0, 1.0, 0.0, -0.5, 2.0, -3.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 255, 128, 64, 255, 0, 0]
    assert to_uint8(x).dtype == torch.uint8


def test_is_splits():
    assert [metrics.is_splits(n) for n in (2, 49, 50, 120, 499, 500, 5000)] == \
        [1, 1, 1, 2, 9, 10, 10]


# ---- the classifier extractor ----------------------------------------------------------

def test_classifier_is_accurate_and_cached_on_disk(digits, ktg_cache):
    ext = get_extractor("classifier", digits)
    assert ext.held_out_accuracy > 0.9
    path = ktg_cache / "classifiers" / "digits-16px.pt"
    assert path.is_file()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["held_out_accuracy"] == pytest.approx(ext.held_out_accuracy)
    assert record["num_held_out"] == round(0.2 * len(digits))
    mtime = path.stat().st_mtime_ns
    metrics.clear_caches()                       # a new process: only the disk cache is left
    t = time.perf_counter()
    again = get_extractor("classifier", digits)
    assert time.perf_counter() - t < 3.0         # loaded, not trained (training: ~6 s CPU)
    assert path.stat().st_mtime_ns == mtime
    assert again is not ext and again.fingerprint == ext.fingerprint
    x = digits.images[:50]
    for k in ("logits", "pool"):
        assert torch.allclose(again.features(x)[k], ext.features(x)[k], atol=1e-5)
    # and in this process it is shared, not reloaded
    assert get_extractor("classifier", digits) is again


def test_classifier_features_shapes(digits):
    f = get_extractor("classifier", digits).features(digits.images[:7])
    assert f["logits"].shape == (7, 10) and f["pool"].shape == (7, 128)
    assert f["logits"].dtype == f["pool"].dtype == torch.float32


def test_classifier_needs_labels(tmp_path):
    from PIL import Image
    for i in range(3):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
    unlabelled = load_dataset(f"folder:{tmp_path}", 16)
    with pytest.raises(KtgError, match="inception-v3-compat"):
        Evaluator(unlabelled, extractor="classifier")


def test_stale_classifier_file_is_retrained(ktg_cache):
    data = load_dataset("synthetic:60", 16)
    path = extractors.classifier_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    metrics.clear_caches()
    ext = get_extractor("classifier", data)
    assert ext.held_out_accuracy > 0.5
    assert torch.load(path, weights_only=True)["record"]["num_images"] == 60


# ---- IS --------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["real", "noise"])
def test_is_matches_formula_single_split(which, digits, full_evaluator):
    n = 80  # < 100 images: one split
    if which == "real":
        x = digits.to_float(torch.arange(n))
    else:
        x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    u8 = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    logits = full_evaluator.extractor.features(u8)["logits"]
    s = full_evaluator.score(x)
    assert s["is"] == pytest.approx(np_inception_score(logits), rel=1e-9)
    assert s["is_std"] == 0.0


def test_is_splits_like_torch_fidelity(digits, full_evaluator):
    n = 500  # 10 splits of 50 after torch-fidelity's seeded shuffle
    x = digits.to_float(torch.arange(n))
    logits = full_evaluator.extractor.features(to_uint8(x))["logits"]
    logits = logits[np.random.RandomState(2020).permutation(n)]
    per_split = [np_inception_score(logits[i * 50:(i + 1) * 50]) for i in range(10)]
    s = full_evaluator.score(x)
    assert s["is"] == pytest.approx(np.mean(per_split), rel=1e-9)
    assert s["is_std"] == pytest.approx(np.std(per_split), rel=1e-9)
    assert s["is"] > 7.0       # real digits: the classifier is sure and the classes even


# ---- FID -------------------------------------------------------------------------------

def test_fid_real_vs_itself_is_zero_and_noise_is_large(digits, full_evaluator):
    real = full_evaluator.score(digits.to_float(torch.arange(len(digits))))
    noise = full_evaluator.score(torch.rand(500, 1, 16, 16) * 2 - 1)
    assert abs(real["fid"]) < 1e-3
    assert noise["fid"] > 10.0
    assert noise["fid"] > 1000 * max(abs(real["fid"]), 1e-6)


def test_fid_matches_frechet_formula(digits, full_evaluator):
    fake = shifted(digits.to_float(torch.arange(600)))
    ext = full_evaluator.extractor
    real_pool = ext.features(digits.images)["pool"].numpy()
    fake_pool = ext.features(to_uint8(fake))["pool"].numpy()
    want = np_frechet(real_pool, fake_pool)
    got = full_evaluator.score(fake)["fid"]
    assert want > 1.0                       # a real difference, not two zeros
    assert got == pytest.approx(want, rel=1e-3)


def test_fid_off(digits):
    ev = Evaluator(digits, num_samples=100, fid=False)
    s = ev.score(digits.to_float(torch.arange(100)))
    assert s["fid"] is None and s["is"] > 1.0


def test_real_statistics_cached_in_memory_and_on_disk(digits, monkeypatch):
    ev = Evaluator(digits, num_samples=300)
    path = ev.stats_path()
    path.unlink(missing_ok=True)   # start cold, whatever ran before in this session
    metrics.clear_caches()
    ev = Evaluator(digits, num_samples=300)
    mu, sigma = ev.real_statistics()
    assert path.is_file() and mu.shape == (128,) and sigma.shape == (128, 128)
    assert ev.real_statistics()[0] is mu                     # in memory: the same arrays
    # independent check: mean/cov of the pool features of the seeded subset of 300 images
    idx = ev_subset(len(digits), 300)
    pool = ev.extractor.features(digits.images[idx])["pool"].double().numpy()
    np.testing.assert_allclose(mu, pool.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sigma, np.cov(pool, rowvar=False), rtol=1e-4, atol=1e-5)
    metrics.clear_caches()
    fresh = Evaluator(digits, num_samples=300)

    def no_features(*args):
        raise AssertionError("recomputed real features instead of reading the cache")
    monkeypatch.setattr(fresh, "_features", no_features)
    mu2, sigma2 = fresh.real_statistics()
    assert np.array_equal(mu2, mu) and np.array_equal(sigma2, sigma)
    # another sample count is another file
    assert Evaluator(digits, num_samples=200).stats_path() != path


# ---- score_generator and the cost per call ---------------------------------------------

def test_score_generator_batches_and_matches_score(digits):
    ev = Evaluator(digits, num_samples=300, batch_size=128)
    pool = shifted(digits.to_float(torch.arange(300)))
    calls = []

    def sample(n: int) -> torch.Tensor:
        start = sum(calls)
        calls.append(n)
        return pool[start:start + n]
    s = ev.score_generator(sample)
    assert calls == [128, 128, 44]
    assert s == pytest.approx(ev.score(pool))
    calls.clear()
    ev.score_generator(sample, num_samples=100)
    assert calls == [100]


def test_mixture_is_the_generators_images_taken_in_turn(digits, full_evaluator):
    """Three 'specialised generators' (real digits 0-3, 4-6 and 7-9): each one's IS is
    capped by the classes it covers, their even mixture covers all ten. The mixture's IS
    is checked against the formula on images interleaved here by hand."""
    n = 90                                                   # < 100: one IS split
    parts = []
    for lo, hi in [(0, 3), (4, 6), (7, 9)]:
        idx = torch.nonzero((digits.labels >= lo) & (digits.labels <= hi)).flatten()[:n]
        parts.append(digits.to_float(idx))

    def drawer(x: torch.Tensor):
        cursor = [0]

        def draw(m: int) -> torch.Tensor:
            cursor[0] += m
            return x[cursor[0] - m:cursor[0]]
        return draw
    ev = Evaluator(digits, num_samples=n, batch_size=32)
    ext = full_evaluator.extractor
    for mixture in ([0, 1, 2], [0, 2]):
        per, mix = ev.score_generators([drawer(x) for x in parts], mixture=mixture)
        by_hand = torch.stack([parts[mixture[j % len(mixture)]][j] for j in range(n)])
        want = np_inception_score(ext.features(to_uint8(by_hand))["logits"])
        assert mix["is"] == pytest.approx(want, rel=1e-6)
        assert mix["fid"] == pytest.approx(ev.score(by_hand)["fid"], rel=1e-4)
        for i, x in enumerate(parts):
            assert per[i]["is"] == pytest.approx(
                np_inception_score(ext.features(to_uint8(x))["logits"]), rel=1e-6)
        assert mix["is"] > max(per[i]["is"] for i in mixture) + 0.5  # specialisation cap
    per, mix = ev.score_generators([drawer(x) for x in parts], mixture=[1])
    assert mix is None and len(per) == 3                     # one generator: no mixture


def test_score_is_cheap_every_epoch(digits):
    ev = Evaluator(digits, num_samples=1000)
    x = shifted(digits.to_float(torch.arange(1000)))
    ev.score(x)                                    # first call: real statistics
    t = time.process_time()
    ev.score(x)
    assert time.process_time() - t < 1.0


def test_evaluator_rejects_bad_input(digits):
    with pytest.raises(KtgError, match="num_samples"):
        Evaluator(digits, num_samples=1)
    with pytest.raises(KtgError, match="batch_size"):
        Evaluator(digits, batch_size=0)
    with pytest.raises(KtgError) as e:
        Evaluator(digits, extractor="vgg")
    assert "'vgg'" in str(e.value) and "classifier" in str(e.value) \
        and "inception-v3-compat" in str(e.value)
    ev = Evaluator(digits, num_samples=100)
    with pytest.raises(KtgError, match=r"\[N, 1, 16, 16\]"):
        ev.score(torch.zeros(10, 3, 16, 16))
    with pytest.raises(KtgError, match="device"):
        Evaluator(digits, device="tpu")


# ---- the Inception extractor -----------------------------------------------------------

@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A weights file in torch-fidelity's format: its InceptionV3 with random weights.

    torch-fidelity's constructor always loads weights, so it is built once with the
    download and the load stubbed out, and its state dict saved.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict",
               lambda self, state_dict, strict=True: None)
    try:
        torch.manual_seed(0)
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat",
                                               ["2048", "logits_unbiased"])
    finally:
        mp.undo()
    path = tmp_path_factory.mktemp("inception") / "weights-random.pth"
    torch.save(model.state_dict(), path)
    return path


def test_inception_features_from_weights_file(digits, inception_weights):
    ext = get_extractor("inception-v3-compat", digits, inception_weights=str(inception_weights))
    assert ext.held_out_accuracy is None
    f = ext.features(digits.images[:3])            # gray: repeated to 3 channels
    assert f["pool"].shape == (3, 2048) and f["logits"].shape == (3, 1008)
    assert torch.isfinite(f["pool"]).all() and torch.isfinite(f["logits"]).all()
    # the file's weights were loaded: the fc layer equals the saved one
    saved = torch.load(inception_weights, weights_only=True)
    assert torch.equal(ext.model.fc.weight, saved["fc.weight"])
    assert get_extractor("inception-v3-compat", digits,
                         inception_weights=str(inception_weights)) is ext
    # FID off here: torch-fidelity's FID takes the eigenvalues of a 2048 x 2048 product,
    # ~20 s of one core (see the slow test below)
    ev = Evaluator(digits, extractor="inception-v3-compat", num_samples=4, batch_size=4,
                   fid=False, inception_weights=str(inception_weights))
    s = ev.score(digits.to_float(torch.arange(4, 8)))
    assert ev.classifier_accuracy is None
    assert np.isfinite(s["is"]) and s["fid"] is None


@pytest.mark.slow
def test_inception_fid_from_weights_file(digits, inception_weights):
    ev = Evaluator(digits, extractor="inception-v3-compat", num_samples=4, batch_size=4,
                   inception_weights=str(inception_weights))
    mu, sigma = ev.real_statistics()
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    same = ev.score(digits.to_float(ev_subset(len(digits), 4)))
    assert abs(same["fid"]) < 1e-6 * max(1.0, float(np.trace(sigma)))


def test_inception_without_weights_offline_says_pass_a_file(digits, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")
    monkeypatch.setattr(fe, "load_state_dict_from_url", offline)
    with pytest.raises(KtgError, match="--inception-weights"):
        get_extractor("inception-v3-compat", digits)


def test_inception_bad_weights_files(digits, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(KtgError) as e:
        get_extractor("inception-v3-compat", digits, inception_weights=str(missing))
    assert str(missing) in str(e.value)
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(3)}, junk)
    with pytest.raises(KtgError) as e:
        get_extractor("inception-v3-compat", digits, inception_weights=str(junk))
    assert str(junk) in str(e.value)
