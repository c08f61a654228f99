"""Data sets: a contract test over every registry entry, then each loader's specifics.

torchvision data sets are tested through torchvision's own loaders reading tiny files
this test writes in their on-disk formats (MNIST idx files; CIFAR-10 pickled batches),
since nothing can be downloaded here.
"""
from __future__ import annotations

import hashlib
import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from ktg_search.data.loading import dataset_names, load_dataset
from ktg_search.data.imagedata import ImageData, cache_dir, data_root
from ktg_search.errors import KtgError
from ktg_search.registry import DATASETS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # another process may be using the other core
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---- writers of torchvision's on-disk formats --------------------------------------------

def write_idx(path, arr: np.ndarray) -> None:
    """An MNIST idx file: magic 0x0000_08_<ndim> (unsigned byte), big-endian dims, data."""
    assert arr.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d)
                                                                for d in arr.shape)
    path.write_bytes(header + arr.tobytes())


def make_mnist_like(root, folder: str, n: int = 40, seed: int = 0):
    """Fake train + t10k idx files under root/<folder>/raw; returns (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[0, :, :14] = 255          # image 0: left half white, to check orientation
    labels = (np.arange(n) % 10).astype(np.uint8)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return images, labels


def make_cifar10(root, monkeypatch, n_per_batch: int = 8, seed: int = 0):
    """Fake cifar-10-batches-py under root; torchvision's expected md5s are swapped for
    those of the fake files (its md5 check itself still runs). Returns (data HWC, labels)."""
    from torchvision.datasets import CIFAR10
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def md5(path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()
    train_list, all_data, all_labels = [], [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (n_per_batch, 3, 32, 32), dtype=np.uint8)
        if i == 1:  # image 0: red top half only, to check the channel/row order
            data[0] = 0
            data[0, 0, :16, :] = 255
        labels = [int(x) for x in rng.integers(0, 10, n_per_batch)]
        path = folder / f"data_batch_{i}"
        path.write_bytes(pickle.dumps({"data": data.reshape(n_per_batch, -1),
                                       "labels": labels}))
        train_list.append([path.name, md5(path)])
        all_data.append(data)
        all_labels += labels
    test = folder / "test_batch"
    test.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(test)]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": md5(meta)})
    return np.concatenate(all_data), np.array(all_labels)


def write_png(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder(root, labelled: bool = True, gray: bool = False):
    """Two classes ('a' red-ish, 'b' blue-ish), three non-square images each."""
    for cls, colour in (("b", (0, 0, 200)), ("a", (200, 0, 0))):
        for i in range(3):
            arr = np.zeros((20 + i, 30, 3), np.uint8)
            arr[:] = colour
            if gray:
                arr = arr.max(axis=2)
            write_png(root / (cls if labelled else "") / f"{cls}{i}.png", arr)
    return root


# ---- the contract test over every registry entry ---------------------------------------

def _case(name: str, tmp_path, monkeypatch):
    """(data set string, root, expected channels, expected N) for a registry entry."""
    if name == "digits":
        return "digits", None, 1, 1797
    if name == "synthetic":
        return "synthetic", None, 3, 512
    if name == "folder":
        return f"folder:{make_folder(tmp_path / 'imgs')}", None, 3, 6
    if name == "mnist":
        make_mnist_like(tmp_path, "MNIST")
        return "mnist", tmp_path, 1, 40
    if name == "fashion-mnist":
        make_mnist_like(tmp_path, "FashionMNIST")
        return "fashion-mnist", tmp_path, 1, 40
    if name == "cifar10":
        make_cifar10(tmp_path, monkeypatch)
        return "cifar10", tmp_path, 3, 40
    if name == "digits-m":
        monkeypatch.setenv("KTG_CACHE", str(tmp_path))   # built here, not in the user's cache
        return "digits-m", None, 3, 6 * 1797
    pytest.fail(f"data set {name!r} is registered but this contract test cannot make it: "
                f"add a case to _case()")


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_contract(name, size, tmp_path, monkeypatch):
    spec, root, channels, n = _case(name, tmp_path, monkeypatch)
    d = load_dataset(spec, size, root=None if root is None else str(root), download=False)
    assert isinstance(d, ImageData)
    assert d.images.dtype == torch.uint8
    assert tuple(d.images.shape) == (n, channels, size, size)
    assert (d.channels, d.image_size, len(d)) == (channels, size, n)
    assert int(d.images.max()) > int(d.images.min())          # not a constant image set
    if d.labels is not None:
        assert d.labels.dtype == torch.int64 and d.labels.shape == (n,)
        assert 0 <= int(d.labels.min()) and int(d.labels.max()) < d.num_classes
    x = d.to_float(torch.arange(min(n, 8)))
    assert x.dtype == torch.float32 and x.shape == (min(n, 8), channels, size, size)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    b = next(d.batches(4, torch.Generator().manual_seed(0)))
    assert b.shape == (4, channels, size, size) and b.dtype == torch.float32


def test_dataset_names_show_folder_argument():
    names = dataset_names()
    assert "folder:PATH" in names and "folder" not in names
    assert {"digits", "cifar10", "mnist", "fashion-mnist", "synthetic"} <= set(names)


# ---- errors ----------------------------------------------------------------------------

def test_unknown_name_lists_valid_names():
    with pytest.raises(KtgError) as e:
        load_dataset("imagenet", 32)
    msg = str(e.value)
    assert "'imagenet'" in msg
    for valid in DATASETS.names():
        assert valid in msg


@pytest.mark.parametrize("size", [8, 28, 128, "32"])
def test_bad_image_size(size):
    with pytest.raises(KtgError, match=r"image_size.*16, 32, 64"):
        load_dataset("digits", size)


@pytest.mark.parametrize("spec, match", [("digits:3", "takes no argument"),
                                         ("synthetic:abc", "synthetic:N"),
                                         ("synthetic:5", "synthetic:N"),
                                         ("folder", "folder:PATH")])
def test_bad_arguments(spec, match):
    with pytest.raises(KtgError, match=match):
        load_dataset(spec, 16)


@pytest.mark.parametrize("name, where, expected", [
    ("cifar10", "", "cifar-10-batches-py"),
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("fashion-mnist", "FashionMNIST/raw", "train-labels-idx1-ubyte"),
])
def test_missing_files_say_where_to_put_them(name, where, expected, tmp_path):
    with pytest.raises(KtgError) as e:
        load_dataset(name, 32, root=str(tmp_path), download=False)
    msg = str(e.value)
    assert str(tmp_path / where) in msg and expected in msg and "KTG_DATA" in msg


def test_failed_download_is_one_message_and_locked(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tv_mnist
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise URLError("Name or service not known")
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(KtgError) as e:
        load_dataset("mnist", 16, root=str(tmp_path / "data"), download=True)
    assert calls, "the download was not attempted"
    msg = str(e.value)
    assert "downloading failed" in msg and str(tmp_path / "data" / "MNIST" / "raw") in msg
    assert (tmp_path / "data" / ".mnist.lock").exists()


def test_cache_and_data_root_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KTG_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("KTG_DATA", raising=False)
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert data_root() == tmp_path / "c" / "data"
    monkeypatch.setenv("KTG_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"


# ---- each loader's content -------------------------------------------------------------

def test_digits_resize_keeps_brightness():
    from sklearn.datasets import load_digits
    raw = load_digits()
    for size in (16, 32, 64):
        d = load_dataset("digits", size)
        assert torch.equal(d.labels, torch.from_numpy(raw.target).long())
        # bilinear resizing keeps each image's mean brightness (0..16 scaled to 0..255)
        got = d.images.float().mean(dim=(1, 2, 3)).numpy() / 255.0
        want = raw.images.reshape(len(raw.images), -1).mean(1) / 16.0
        np.testing.assert_allclose(got, want, atol=0.03)


def test_mnist_reads_torchvision_files(tmp_path):
    images, labels = make_mnist_like(tmp_path, "MNIST")
    d = load_dataset("mnist", 32, root=str(tmp_path), download=False)
    assert d.num_classes == 10 and d.name == "mnist"
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    first = d.images[0, 0].float()
    assert float(first[:, :14].mean()) > 240 and float(first[:, 18:].mean()) < 15  # not transposed
    np.testing.assert_allclose(d.images.float().mean(dim=(1, 2, 3)).numpy(),
                               images.reshape(len(images), -1).mean(1), atol=2.0)


def test_cifar10_reads_torchvision_files(tmp_path, monkeypatch):
    data, labels = make_cifar10(tmp_path, monkeypatch)
    d = load_dataset("cifar10", 32, root=str(tmp_path), download=False)
    assert d.num_classes == 10 and d.channels == 3
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    assert torch.equal(d.images, torch.from_numpy(data))  # 32 px: no resize, CHW restored
    d16 = load_dataset("cifar10", 16, root=str(tmp_path), download=False)
    red = d16.images[0].float()
    assert float(red[0, :7].mean()) > 240 and float(red[0, 9:].mean()) < 15
    assert float(red[1:].max()) == 0


def test_folder_with_class_subfolders(tmp_path):
    make_folder(tmp_path / "imgs")
    d = load_dataset(f"folder:{tmp_path / 'imgs'}", 16)
    assert d.name == f"folder:{(tmp_path / 'imgs').resolve()}"
    assert d.num_classes == 2 and d.channels == 3
    assert d.labels.tolist() == [0, 0, 0, 1, 1, 1]          # sorted: 'a' = 0, 'b' = 1
    a, b = d.images[d.labels == 0].float(), d.images[d.labels == 1].float()
    assert float(a[:, 0].mean()) == pytest.approx(200, abs=2) and float(a[:, 2].max()) == 0
    assert float(b[:, 2].mean()) == pytest.approx(200, abs=2) and float(b[:, 0].max()) == 0


def test_folder_without_subfolders_is_unlabelled_and_gray(tmp_path):
    make_folder(tmp_path / "imgs", labelled=False, gray=True)
    d = load_dataset(f"folder:{tmp_path / 'imgs'}", 32)
    assert d.labels is None and d.num_classes == 0
    assert d.images.shape == (6, 1, 32, 32)


def test_folder_centre_crops(tmp_path):
    arr = np.zeros((20, 60), np.uint8)
    arr[:, 20:40] = 255            # the centre square is white, the sides black
    write_png(tmp_path / "one" / "x.png", arr)
    d = load_dataset(f"folder:{tmp_path / 'one'}", 16)
    assert d.images.shape == (1, 1, 16, 16)
    assert int(d.images.min()) >= 250


@pytest.mark.parametrize("layout", ["missing", "empty", "mixed"])
def test_folder_errors_name_the_path(tmp_path, layout):
    path = tmp_path / "imgs"
    if layout == "empty":
        path.mkdir()
        (path / "notes.txt").write_text("no images here")
    elif layout == "mixed":
        make_folder(path)
        write_png(path / "stray.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(KtgError) as e:
        load_dataset(f"folder:{path}", 16)
    assert str(path) in str(e.value)


def test_synthetic_is_deterministic_and_sized():
    a, b = load_dataset("synthetic", 32), load_dataset("synthetic", 32)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = load_dataset("synthetic:100", 16)
    assert c.images.shape == (100, 3, 16, 16)
    assert c.labels.bincount(minlength=10).tolist() == [10] * 10
    # the classes differ in content: class mean images are far apart
    means = torch.stack([a.images[a.labels == k].float().mean(0) for k in range(10)])
    dist = torch.cdist(means.flatten(1), means.flatten(1))
    assert float(dist[~torch.eye(10, dtype=torch.bool)].min()) > 500


# ---- batches and split -----------------------------------------------------------------

def test_batches_deterministic_shuffled_drop_last():
    d = load_dataset("synthetic:100", 16)
    run = lambda seed: list(d.batches(32, torch.Generator().manual_seed(seed)))  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    assert len(first) == 3                                 # 100 // 32, the last 4 dropped
    assert all(b.shape == (32, 3, 16, 16) for b in first)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other[0])
    order = torch.randperm(100, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.cat(first), d.to_float(order[:96]))
    assert torch.equal(first[0], d.images[order[:32]].float() / 127.5 - 1)
    # the generator moves on: a second epoch is another order
    g = torch.Generator().manual_seed(7)
    e1, e2 = list(d.batches(32, g)), list(d.batches(32, g))
    assert not torch.equal(e1[0], e2[0])


def test_batches_reject_bad_sizes():
    d = load_dataset("synthetic:100", 16)
    with pytest.raises(KtgError, match="batch_size"):
        next(d.batches(0, torch.Generator()))
    with pytest.raises(KtgError, match="100 images"):
        next(d.batches(101, torch.Generator()))


def test_split_is_disjoint_and_seeded():
    d = load_dataset("synthetic:100", 16)
    rest, held = d.split(0.2, seed=3)
    assert (len(rest), len(held)) == (80, 20)
    assert held.num_classes == rest.num_classes == 10
    both = torch.cat([rest.images, held.images]).flatten(1)
    # every image exactly once: the sorted rows equal the original's sorted rows
    key = lambda x: sorted(map(bytes, x.numpy()))  # noqa: E731
    assert key(both) == key(d.images.flatten(1))
    rest2, held2 = d.split(0.2, seed=3)
    assert torch.equal(held.images, held2.images) and torch.equal(held.labels, held2.labels)
    assert not torch.equal(held.images, d.split(0.2, seed=4)[1].images)
    with pytest.raises(KtgError, match="fraction"):
        d.split(1.0, seed=0)
