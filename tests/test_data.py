"""Tests for signalprop.data: tiny data sets written in the real file formats, read back pixel-exactly.

Nothing here downloads.  The IDX and CIFAR-10 writers below follow the published
formats independently of the library's readers.
"""

import gzip
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from signalprop import data

# IDX element type codes (MNIST database page): numpy dtype -> code
_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    """An IDX file: 0, 0, type code, rank, big-endian uint32 sizes, big-endian payload."""
    code = _IDX_CODES[arr.dtype.kind + str(arr.dtype.itemsize)]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    payload = arr.astype(arr.dtype.newbyteorder(">")).tobytes(order="C")
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(header + payload)


def write_mnist_like(folder: Path, n_train: int, n_test: int, gz: bool, seed: int, sep: str = "-") -> dict:
    """The four MNIST files with random pixels and labels; returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz)
        out[split] = (images, labels)
    return out


def write_cifar(folder: Path, per_batch: int, seed: int) -> dict:
    """cifar-10-batches-py: five training batches and a test batch, pickled dicts with bytes keys."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": []}
    names = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    for fname, split in names:
        rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {b"batch_label": fname.encode(), b"labels": labels, b"data": rows, b"filenames": [b"x.png"] * per_batch}
        with open(batches / fname, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        out[split].append((rows, labels))
    return out


def _cifar_pixels(rows: np.ndarray) -> np.ndarray:
    """Row layout of the CIFAR-10 page: 1024 red, then 1024 green, then 1024 blue values, each row-major."""
    n = len(rows)
    img = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for c in range(3):
        for h in range(32):
            img[:, c, h, :] = rows[:, c * 1024 + h * 32 : c * 1024 + h * 32 + 32]
    return img


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)


# --- IDX reader ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("u1", (4, 3, 2)), ("i1", (7,)), ("i2", (2, 5)), ("i4", (3, 1, 2)), ("f4", (6,)), ("f8", (2, 2, 2, 2))],
)
def test_read_idx_every_element_type(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(0)
    if dtype[0] == "f":
        arr = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    path = tmp_path / "a.idx"
    write_idx(path, arr, gz)
    out = data.read_idx(path)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_a_bad_magic_number(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")


def test_read_idx_rejects_an_unknown_type_code(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="type code 0x07"):
        data.read_idx(tmp_path / "bad")


def test_read_idx_rejects_a_truncated_payload(tmp_path):
    write_idx(tmp_path / "a", np.zeros((3, 4), dtype=np.uint8), gz=False)
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="payload"):
        data.read_idx(tmp_path / "a")


# --- MNIST-format data sets ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize(("gz", "sep"), [(True, "-"), (False, "-"), (False, ".")])
def test_idx_dataset_loads_pixel_exact(tmp_path, name, gz, sep):
    written = write_mnist_like(tmp_path, 12, 5, gz, seed=1, sep=sep)
    for split in ("train", "test"):
        ds = data.load_dataset(name, split, root=tmp_path, normalize=False)
        images, labels = written[split]
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.x.shape == (len(images), 1, 28, 28) and ds.y.shape == (len(images),)
        assert ds.mean is None and ds.std is None
        assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0
        np.testing.assert_array_equal((ds.x[:, 0].numpy() * 255).round().astype(np.uint8), images)
        np.testing.assert_array_equal(ds.y.numpy(), labels.astype(np.int64))
        xi, yi = ds[3]  # a TensorDataset item
        assert torch.equal(xi, ds.x[3]) and int(yi) == int(labels[3])


def test_standardisation_uses_the_training_statistics(tmp_path):
    written = write_mnist_like(tmp_path, 20, 7, gz=True, seed=2)
    train_u8 = written["train"][0].astype(np.float64) / 255
    mean, std = train_u8.mean(), train_u8.std()  # population std over every training pixel
    for split in ("train", "test"):
        ds = data.load_dataset("mnist", split, root=tmp_path)
        assert ds.normalized
        assert ds.mean.item() == pytest.approx(mean, rel=1e-13)
        assert ds.std.item() == pytest.approx(std, rel=1e-13)
        expected = (written[split][0].astype(np.float64) / 255 - mean) / std
        np.testing.assert_allclose(ds.x[:, 0].numpy(), expected, rtol=0, atol=1e-5)
    train = data.load_dataset("mnist", "train", root=tmp_path)
    assert train.x.double().mean().item() == pytest.approx(0.0, abs=1e-6)
    assert train.x.double().std(unbiased=False).item() == pytest.approx(1.0, rel=1e-6)
    m, s = data.channel_stats("mnist", root=tmp_path)
    assert m.shape == s.shape == (1,) and m.dtype == torch.float64


def test_torchvision_and_name_subfolders_are_found(tmp_path):
    written = write_mnist_like(tmp_path / "MNIST" / "raw", 3, 2, gz=False, seed=3)
    ds = data.load_dataset("mnist", "test", root=tmp_path, normalize=False)
    np.testing.assert_array_equal(ds.y.numpy(), written["test"][1])
    written = write_mnist_like(tmp_path / "fashion-mnist", 3, 2, gz=True, seed=4)
    ds = data.load_dataset("Fashion-MNIST", "train", root=tmp_path, normalize=False)
    np.testing.assert_array_equal(ds.y.numpy(), written["train"][1])


def test_environment_variable_root(tmp_path, monkeypatch):
    written = write_mnist_like(tmp_path / "mnist", 4, 3, gz=True, seed=5)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.candidate_dirs("mnist")[0] == tmp_path / "mnist"
    assert data.find_dataset_dir("mnist", "test") == tmp_path / "mnist"
    ds = data.load_dataset("mnist", "test", normalize=False)
    np.testing.assert_array_equal(ds.y.numpy(), written["test"][1])


def test_search_order_without_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    dirs = data.candidate_dirs("cifar10")
    assert dirs == [
        Path("/usr/share/datasets/cifar10"),
        Path("/usr/share/datasets/cifar10/cifar-10-batches-py"),
        tmp_path / ".cache/ten-thousand-layers/cifar10",
        tmp_path / ".cache/ten-thousand-layers/cifar10/cifar-10-batches-py",
    ]


def test_wrong_image_size_in_idx_file_raises(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 32, 32), dtype=np.uint8), gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="28, 28"):
        data.load_dataset("mnist", "train", root=tmp_path)


def test_label_out_of_range_raises(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), dtype=np.uint8), gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 10], dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        data.load_dataset("mnist", "train", root=tmp_path, normalize=False)


# --- CIFAR-10 -----------------------------------------------------------------------------------


def test_cifar_batches_load_pixel_exact(tmp_path):
    written = write_cifar(tmp_path, per_batch=3, seed=6)
    for split, n in (("train", 15), ("test", 3)):
        ds = data.load_dataset("cifar10", split, root=tmp_path, normalize=False)
        assert ds.x.shape == (n, 3, 32, 32) and ds.y.dtype == torch.int64
        rows = np.concatenate([r for r, _ in written[split]])
        labels = np.concatenate([lab for _, lab in written[split]])
        np.testing.assert_array_equal((ds.x.numpy() * 255).round().astype(np.uint8), _cifar_pixels(rows))
        np.testing.assert_array_equal(ds.y.numpy(), labels)
    # per-channel standardisation with the training statistics of each colour plane
    train_px = _cifar_pixels(np.concatenate([r for r, _ in written["train"]])).astype(np.float64) / 255
    mean, std = train_px.mean(axis=(0, 2, 3)), train_px.std(axis=(0, 2, 3))
    test = data.load_dataset("cifar-10", "test", root=tmp_path)
    np.testing.assert_allclose(test.mean.numpy(), mean, rtol=1e-13)
    np.testing.assert_allclose(test.std.numpy(), std, rtol=1e-13)
    test_px = _cifar_pixels(written["test"][0][0]).astype(np.float64) / 255
    expected = (test_px - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(test.x.numpy(), expected, rtol=0, atol=1e-5)


def test_cifar_batch_with_wrong_row_length_raises(tmp_path):
    write_cifar(tmp_path, per_batch=2, seed=7)
    bad = {b"labels": [0], b"data": np.zeros((1, 100), dtype=np.uint8)}
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump(bad, fh, protocol=2)
    with pytest.raises(ValueError, match="3072"):
        data.load_dataset("cifar10", "test", root=tmp_path, normalize=False)


# --- Missing data, bad names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hints"),
    [
        ("fashion-mnist", ["apt-get install -y dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"]),
        ("mnist", ["download=True", "torchvision", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
        ("cifar10", ["download=True", "torchvision", "cifar-10-batches-py", "data_batch_1", "test_batch"]),
    ],
)
def test_missing_data_set_says_how_to_get_it(tmp_path, name, hints):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_dataset(name, "train", root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(tmp_path) in message
    for hint in hints:
        assert hint in message


def test_test_split_alone_is_not_enough_to_standardise(tmp_path):
    written = write_mnist_like(tmp_path, 2, 3, gz=False, seed=8)
    for f in tmp_path.glob("train-*"):
        f.unlink()
    ds = data.load_dataset("mnist", "test", root=tmp_path, normalize=False)
    np.testing.assert_array_equal(ds.y.numpy(), written["test"][1])
    with pytest.raises(data.DatasetNotFoundError, match="train split"):
        data.load_dataset("mnist", "test", root=tmp_path)


def test_unknown_data_set_raises():
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        data.load_dataset("svhn")


def test_bad_split_raises(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_dataset("mnist", "validation", root=tmp_path)


def _fake_torchvision(monkeypatch, cls_name, behaviour):
    """Replace torchvision.datasets by a module whose ``cls_name`` calls ``behaviour(root, train)``."""

    class Fake:
        def __init__(self, root, train, download):
            assert download is True
            behaviour(Path(root), train)

    tv = types.ModuleType("torchvision")
    tvd = types.ModuleType("torchvision.datasets")
    setattr(tvd, cls_name, Fake)
    tv.datasets = tvd
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tvd)


def test_download_puts_files_where_they_are_then_found(tmp_path, monkeypatch):
    written = {}

    def fetch(root, train):  # what torchvision's MNIST does: files under root/MNIST/raw
        if not written:
            written.update(write_mnist_like(root / "MNIST" / "raw", 4, 2, gz=False, seed=9))

    _fake_torchvision(monkeypatch, "MNIST", fetch)
    ds = data.load_dataset("mnist", "test", root=tmp_path, download=True, normalize=False)
    np.testing.assert_array_equal(ds.y.numpy(), written["test"][1])


def test_failed_download_raises_not_found_with_advice(tmp_path, monkeypatch):
    def fail(root, train):
        raise RuntimeError("no network")

    _fake_torchvision(monkeypatch, "CIFAR10", fail)
    with pytest.raises(data.DatasetNotFoundError, match="no network.*cifar-10-batches-py"):
        data.load_dataset("cifar10", "train", root=tmp_path, download=True)


# --- Subsets ------------------------------------------------------------------------------------


def _dataset(n: int = 200, seed: int = 10) -> data.ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=gen)
    y = torch.arange(n) % 10
    return data.ImageDataset(x, y, spec=data.dataset_spec("mnist"), split="train")


def test_subset_is_seeded_nested_and_keeps_rows():
    ds = _dataset()
    a, b = data.subset(ds, 50, seed=3), data.subset(ds, 50, seed=3)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.x, b.x)
    assert not torch.equal(a.indices, data.subset(ds, 50, seed=4).indices)
    big = data.subset(ds, 120, seed=3)
    assert set(a.indices.tolist()) <= set(big.indices.tolist())
    assert len(set(a.indices.tolist())) == 50 and torch.all(a.indices[1:] > a.indices[:-1])
    assert torch.equal(a.x, ds.x[a.indices]) and torch.equal(a.y, ds.y[a.indices])
    inner = data.subset(big, 30, seed=1)  # indices refer to the full split
    assert torch.equal(inner.x, ds.x[inner.indices])


def test_stratified_subset_has_equal_class_counts():
    ds = _dataset()
    s = data.subset(ds, 40, seed=0, stratified=True)
    assert torch.equal(torch.bincount(s.y, minlength=10), torch.full((10,), 4))
    assert set(s.indices.tolist()) <= set(data.subset(ds, 80, seed=0, stratified=True).indices.tolist())


def test_subset_larger_than_the_data_set_raises():
    with pytest.raises(ValueError, match="n must be an integer in 1..200"):
        data.subset(_dataset(), 201)


def test_stratified_subset_needs_a_multiple_of_the_classes():
    with pytest.raises(ValueError, match="divisible"):
        data.subset(_dataset(), 45, stratified=True)


def test_stratified_subset_with_too_few_examples_of_a_class_raises():
    labels = torch.tensor([0] * 25 + [1] * 5)
    with pytest.raises(ValueError, match="class 1 has 5 examples, fewer than the 10"):
        data.subset_indices(labels, 20, stratified=True)


# --- The real Fashion-MNIST (installed by `apt-get install dataset-fashion-mnist`) ----------------


def _real_fashion_dir():
    try:
        return data.find_dataset_dir("fashion-mnist", "test")
    except data.DatasetNotFoundError:
        return None


@pytest.mark.skipif(
    _real_fashion_dir() is None and not os.environ.get("TTL_REQUIRE_DATA"),
    reason="Fashion-MNIST is not installed (CI sets TTL_REQUIRE_DATA=1 and installs it: then this test runs)",
)
def test_real_fashion_mnist():
    train = data.load_dataset("fashion-mnist", "train")
    test = data.load_dataset("fashion-mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert torch.equal(torch.bincount(train.y, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.y, minlength=10), torch.full((10,), 1000))
    # the usual published statistics of Fashion-MNIST: mean 0.2860, std 0.3530
    assert train.mean.item() == pytest.approx(0.2860, abs=1e-4)
    assert train.std.item() == pytest.approx(0.3530, abs=1e-4)
    assert torch.equal(test.mean, train.mean)
    # standardised: the first image's pixels are (u8 / 255 - mean) / std, for the raw bytes read independently
    path = min(_real_fashion_dir().glob("train-images?idx3-ubyte*"))
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        first = np.frombuffer(fh.read(16 + 784), dtype=np.uint8, offset=16).reshape(28, 28)
    expected = (first / 255 - train.mean.item()) / train.std.item()
    np.testing.assert_allclose(train.x[0, 0].numpy(), expected, rtol=0, atol=1e-5)
