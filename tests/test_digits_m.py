"""digits-m (data/mnistm.py): deterministic, labelled by the source digits, RGB uint8,
and its class not readable from the mean colour."""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ktg_search.data import mnistm


def test_two_builds_are_byte_equal_and_labelled():
    a, la = mnistm.build(16)
    b, lb = mnistm.build(16)
    assert mnistm.digest(a) == mnistm.digest(b)
    assert torch.equal(la, lb)
    target = torch.from_numpy(load_digits().target).long()
    assert torch.equal(la, target.repeat(mnistm.COPIES))   # each image's source digit
    counts = torch.bincount(la, minlength=10)
    assert len(la) >= 10_000 and counts.min() >= 0.9 * len(la) / 10


def test_rgb_uint8_at_each_size(tmp_path, monkeypatch):
    monkeypatch.setenv("KTG_CACHE", str(tmp_path))
    from ktg_search.data.loading import load_dataset
    for s in (16, 32, 64):
        d = load_dataset("digits-m", s)
        assert d.images.dtype == torch.uint8 and tuple(d.images.shape[1:]) == (3, s, s)
        assert d.num_classes == 10
        assert mnistm.cache_path(s).is_file()
        again = load_dataset("digits-m", s)                 # from the cache: same bytes
        assert mnistm.digest(again.images) == mnistm.digest(d.images)
        assert not torch.equal(d.images[:, 0], d.images[:, 1])  # colour, not gray


def test_class_not_readable_from_mean_colour():
    x, y = mnistm.build(16)
    mean_colour = x.float().mean((2, 3)).numpy()
    acc = cross_val_score(LogisticRegression(max_iter=2000), mean_colour, y.numpy(),
                          cv=3).mean()
    assert acc < 0.2      # chance is 0.1; measured 0.13 at 32 px
    # teeth: the same probe on the pixels does far better
    flat = x[:4000].float().flatten(1).numpy() / 255
    acc_px = cross_val_score(LogisticRegression(max_iter=300), flat, y[:4000].numpy(),
                             cv=3).mean()
    assert acc_px > acc + 0.2
