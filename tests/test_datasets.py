"""Synthetic datasets and the MNIST / CIFAR-10 readers (real files when present, fakes for formats)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from freqlens.datasets import (
    SHAPES,
    geometric_shapes,
    load_cifar10,
    load_mnist,
    locate_dataset,
    pure_cosines,
    read_idx,
    sums_of_cosines,
)


# ------------------------------------------------------------------------------ synthetic data
def test_pure_cosines_formula() -> None:
    x, y = pure_cosines(12, [(0, 0), (1, 3)], [2.0, 0.5])
    i, j = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    assert x.shape == (2, 1, 12, 12) and x.dtype == torch.float64 and y.dtype == torch.int64
    assert np.allclose(x[1, 0].numpy(), 0.5 * np.cos(2 * np.pi * (1 * i + 3 * j) / 12), atol=1e-15)
    assert np.allclose(x[0, 0].numpy(), 2.0)


def test_sums_of_cosines_formula_and_phases() -> None:
    x, _ = sums_of_cosines(8, [[(0, 1), (2, 1)], [(1, 0)]], [[1.0, 0.5], [0.3]], [[0.2, 0.0], [1.0]])
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    ref = np.cos(2 * np.pi * j / 8 + 0.2) + 0.5 * np.cos(2 * np.pi * (2 * i + j) / 8)
    assert np.allclose(x[0, 0].numpy(), ref, atol=1e-14)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pure_cosines(16, [(1, 2), (15, 14)], [1.0, 1.0]), "coincides \\(up to sign"),
        (lambda: pure_cosines(16, [(1, 2), (17, 2)], [1.0, 1.0]), "coincides"),
        (lambda: pure_cosines(16, [(1, 2)], [1.0, 2.0]), "same length"),
        (lambda: pure_cosines(16, [(1, 2)], [0.0]), "non-zero"),
        (lambda: sums_of_cosines(8, [[(0, 1)], [(0, 7)]], [[1.0], [1.0]]), "disjoint"),
        (lambda: sums_of_cosines(8, [[(0, 1), (0, 7)]], [[1.0, 1.0]]), "disjoint"),
        (lambda: sums_of_cosines(8, [[(0, 1)]], [[1.0, 2.0]]), "equal lengths"),
        (lambda: sums_of_cosines(8, [[(0, 4)]], [[1.0]], [[np.pi / 2]]), "vanishes"),
        (lambda: geometric_shapes(16, ["square", "blob"]), "unknown \\['blob'\\]"),
        (lambda: geometric_shapes(16, ["square", "square"]), "distinct"),
        (lambda: geometric_shapes(2), "n must be an integer >= 4"),
    ],
)
def test_synthetic_bad_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_geometric_shapes_values_and_distinct_singular_values() -> None:
    x, y = geometric_shapes(16, SHAPES)
    assert x.shape == (len(SHAPES), 1, 16, 16)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    from freqlens import DatasetStructure

    s = DatasetStructure.from_data(x, y).S
    assert np.all(np.diff(s) < -1e-3 * s[0])  # distinct: a unique SVD basis


# -------------------------------------------------------------------------------------- MNIST
def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">i", magic) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.astype(np.uint8).tobytes()


def _write_fake_mnist(root: Path, n: int = 5, gz: bool = True, split: str = "test") -> None:
    stems = {
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    }[split]
    imgs = (np.arange(n * 28 * 28) % 256).reshape(n, 28, 28)
    labs = np.arange(n) % 10
    for stem, payload in zip(stems, (_idx_bytes(imgs, 2051), _idx_bytes(labs, 2049))):
        data = gzip.compress(payload) if gz else payload
        (root / (stem + (".gz" if gz else ""))).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reader_fake_files(tmp_path: Path, gz: bool) -> None:
    _write_fake_mnist(tmp_path, gz=gz)
    x, y = load_mnist(tmp_path, "test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 3, 4]
    assert float(x[0, 0, 0, 1]) == pytest.approx(1 / 255)


def test_mnist_missing_files_names_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.*looked in"):
        load_mnist(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist(tmp_path, "validation")


def test_mnist_wrong_magic_truncated_inconsistent(tmp_path: Path) -> None:
    _write_fake_mnist(tmp_path, gz=False)
    img = tmp_path / "t10k-images-idx3-ubyte"
    lab = tmp_path / "t10k-labels-idx1-ubyte"
    good = img.read_bytes()
    img.write_bytes(struct.pack(">i", 2049) + good[4:])
    with pytest.raises(ValueError, match="wrong IDX magic number 2049, expected 2051"):
        load_mnist(tmp_path, "test")
    img.write_bytes(good[:-10])
    with pytest.raises(ValueError, match="IDX payload truncated"):
        load_mnist(tmp_path, "test")
    img.write_bytes(good)
    lab.write_bytes(_idx_bytes(np.arange(4), 2049))
    with pytest.raises(ValueError, match="inconsistent MNIST counts: .* 5 images, .* 4 labels"):
        load_mnist(tmp_path, "test")
    lab.write_bytes(_idx_bytes(np.array([0, 1, 2, 3, 11]), 2049))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        load_mnist(tmp_path, "test")
    (tmp_path / "x.gz").write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_mnist_real(mnist_root: Path) -> None:
    x, y = load_mnist(mnist_root, "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    xt, yt = load_mnist(mnist_root, "train")
    assert xt.shape == (60000, 1, 28, 28) and int(yt.max()) == 9 and int(yt.min()) == 0
    assert locate_dataset("mnist", mnist_root).is_dir()


# ----------------------------------------------------------------------------------- CIFAR-10
def _batch(n: int, seed: int, labels: list[int] | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labs = labels if labels is not None else list(rng.integers(0, 10, size=n))
    return pickle.dumps(
        {b"batch_label": b"x", b"labels": [int(v) for v in labs], b"data": data, b"filenames": [b"f"] * n}
    )


def _fake_cifar_dir(root: Path) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(_batch(20, i, [j % 10 for j in range(20)]))
    (d / "test_batch").write_bytes(_batch(10, 99, [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]))
    return d


def test_cifar_fake_folder_and_tar(tmp_path: Path) -> None:
    d = _fake_cifar_dir(tmp_path / "a")
    x, y = load_cifar10(tmp_path / "a", "test")
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    tar_path = tmp_path / "b" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(d, arcname="cifar-10-batches-py")
    xt, yt = load_cifar10(tmp_path / "b", "test")
    assert torch.equal(x, xt) and torch.equal(y, yt)
    # class subsetting relabels in the given order; mean subtraction uses the train mean for both splits
    xs, ys = load_cifar10(tmp_path / "b", "train", classes=[3, 1], subtract_mean=True, dtype=torch.float64)
    assert set(ys.tolist()) == {0, 1} and xs.shape[0] == 20
    assert float(xs.mean(0).abs().max()) < 1e-12
    xtest, _ = load_cifar10(tmp_path / "b", "test", classes=[3, 1], subtract_mean=True, dtype=torch.float64)
    xraw, _ = load_cifar10(tmp_path / "b", "test", classes=[3, 1], dtype=torch.float64)
    xtr_raw, _ = load_cifar10(tmp_path / "b", "train", classes=[3, 1], dtype=torch.float64)
    assert torch.allclose(xtest, xraw - xtr_raw.mean(0), atol=1e-12)


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz or a folder with data_batch_1..5"):
        load_cifar10(tmp_path, "test")
    d = _fake_cifar_dir(tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="batch file missing: .*data_batch_3"):
        load_cifar10(tmp_path, "train")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match="inconsistent counts"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(ValueError, match="must be uint8 of shape \\(N, 3072\\)"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(pickle.dumps(io.StringIO("evil")))  # not the CIFAR format
    with pytest.raises(ValueError, match="refusing to load"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 python pickle"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="classes must be distinct CIFAR-10 class indices"):
        load_cifar10(tmp_path, "test", classes=[1, 1])
    bad_tar = tmp_path / "t" / "cifar-10-python.tar.gz"
    bad_tar.parent.mkdir()
    bad_tar.write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(ValueError, match="not a readable cifar-10-python.tar.gz"):
        load_cifar10(tmp_path / "t", "test")


@pytest.fixture(scope="module")
def cifar_test(cifar_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_cifar10(cifar_root, "test")


def test_cifar_real(cifar_root: Path, cifar_test) -> None:
    x, y = cifar_test
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert np.bincount(y.numpy()).tolist() == [1000] * 10
    xtr, ytr = load_cifar10(cifar_root, "train", classes=(0, 1, 2, 3))
    assert xtr.shape == (20000, 3, 32, 32) and np.bincount(ytr.numpy()).tolist() == [5000] * 4


def test_cifar_real_channel_means(cifar_root: Path) -> None:
    from freqlens.datasets import cifar10_mean_image

    means = cifar10_mean_image(cifar_root).mean(dim=(1, 2)).numpy()
    assert np.allclose(means, [0.4914, 0.4822, 0.4465], atol=5e-5)
