"""Readers for the standard distribution files of MNIST (IDX) and CIFAR-10 (python pickles).

No network access: both read from a directory the user names. Every format problem (missing file,
wrong magic number, truncated payload, inconsistent counts, bad labels) is a ``FileNotFoundError`` or
``ValueError`` that names the file and what was expected.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._validation import check_choice, check_float_dtype

__all__ = ["CIFAR10_CLASSES", "cifar10_mean_image", "load_cifar10", "load_mnist", "locate_dataset", "read_idx"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


def _check_root(root: str | Path, what: str) -> Path:
    if not isinstance(root, str | Path):
        raise TypeError(f"root must be a path to the {what} directory, got {type(root).__name__}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"root directory for {what} does not exist: {path}")
    return path


# ---------------------------------------------------------------------------------------- MNIST
def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a numpy ``uint8`` array.

    Header: big-endian int32 magic (``0x0000 08 nd``: 2049 for labels, 2051 for images), then ``nd``
    big-endian int32 dimensions. The payload must hold exactly ``prod(dims)`` bytes.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack(">i", raw[:4])
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: wrong IDX magic number {magic}, expected {expected_magic}")
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: IDX magic {magic} does not describe unsigned bytes (type 0x08)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header (need {header} bytes, have {len(raw)})")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(dims)) if dims else 0
    payload = len(raw) - header
    if payload != expected:
        state = "truncated" if payload < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX payload {state}: header dims {dims} need {expected} bytes, found {payload}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_mnist_file(root: Path, stem: str) -> Path:
    candidates = [d / f"{stem}{ext}" for d in (root, root / "mnist", root / "MNIST" / "raw") for ext in ("", ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(str(d) for d in dict.fromkeys(c.parent for c in candidates))
    raise FileNotFoundError(f"MNIST file {stem} (or {stem}.gz) not found; looked in: {looked}")


def load_mnist(
    root: str | Path, split: str = "train", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST from its IDX files in ``root`` (gzipped or not).

    Returns ``x (N, 1, 28, 28)`` scaled to ``[0, 1]`` and ``labels`` int64 ``(N,)``.
    Looks in ``root``, ``root/mnist`` and ``root/MNIST/raw``.
    """
    check_choice("split", split, ("train", "test"))
    check_float_dtype("dtype", dtype)
    base = _check_root(root, "MNIST")
    img_stem, lab_stem = _MNIST_FILES[split]
    img_path = _find_mnist_file(base, img_stem)
    lab_path = _find_mnist_file(base, lab_stem)
    images = read_idx(img_path, _IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, _IDX_LABELS_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{img_path}: expected 3 IDX dimensions (N, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected 1 IDX dimension (N,), got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"inconsistent MNIST counts: {img_path.name} has {images.shape[0]} images, "
            f"{lab_path.name} has {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lab_path}: labels must lie in 0..9, got maximum {int(labels.max())}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).to(dtype).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------------------- CIFAR-10
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only reconstructs numpy arrays and plain containers (the CIFAR batch format)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            # pickle protocol 5 (a batch re-saved by a newer Python/numpy) rebuilds arrays from raw bytes
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the CIFAR-10 batch format")


def _unpickle_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on bad input
        raise ValueError(f"{where}: not a readable CIFAR-10 python pickle ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = list(batch.keys()) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{where}: expected a dict with keys b'data' and b'labels', got {keys}")
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if labels.size and labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: b'labels' must be integer class indices, got dtype {labels.dtype}")
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ValueError(f"{where}: b'data' must be uint8 of shape (N, 3072), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: inconsistent counts: {images.shape[0]} images but {labels.shape} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels must lie in 0..9, got range [{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64)


def _batch_names(split: str) -> list[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


def _locate_cifar(root: Path) -> Path:
    """Return the tar.gz or the directory holding the batch files."""
    dirs = [root, root / "cifar-10-batches-py", root / "cifar10", root / "cifar10" / "cifar-10-batches-py"]
    for d in dirs:
        if (d / "test_batch").is_file() or (d / "data_batch_1").is_file():
            return d
    tars = [root / "cifar-10-python.tar.gz", root / "cifar10" / "cifar-10-python.tar.gz"]
    for t in tars:
        if t.is_file():
            return t
    looked = ", ".join(str(p) for p in dirs + tars)
    raise FileNotFoundError(
        "CIFAR-10 not found: expected cifar-10-python.tar.gz or a folder with data_batch_1..5 and test_batch; "
        f"looked in: {looked}"
    )


def _read_cifar_batches(source: Path, names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if source.is_dir():
        for name in names:
            path = source / name
            if not path.is_file():
                raise FileNotFoundError(f"CIFAR-10 batch file missing: {path} (expected {list(names)} in {source})")
            out[name] = _unpickle_batch(path.read_bytes(), str(path))
        return out
    wanted = set(names)
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in wanted and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[base] = _unpickle_batch(f.read(), f"{source}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{source}: not a readable cifar-10-python.tar.gz ({exc})") from exc
    missing = [n for n in names if n not in out]
    if missing:
        raise FileNotFoundError(f"{source}: archive lacks CIFAR-10 batch files {missing}")
    return out


def _select(images: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    if classes is None:
        return images, labels
    lut = np.full(10, -1, dtype=np.int64)
    lut[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes))
    keep = lut[labels] >= 0
    return images[keep], lut[labels[keep]]


def _check_classes(classes: Sequence[int] | None) -> list[int] | None:
    if classes is None:
        return None
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence | np.ndarray):
        raise TypeError(f"classes must be a sequence of CIFAR-10 class indices (ints in 0..9), got {classes!r}")
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, int | np.integer)]
    if bad:
        raise TypeError(f"classes must hold integers in 0..9, got {list(classes)} (not integers: {bad})")
    cl = [int(c) for c in classes]
    if not cl or len(set(cl)) != len(cl) or min(cl) < 0 or max(cl) > 9:
        raise ValueError(f"classes must be distinct CIFAR-10 class indices in 0..9, got {list(classes)}")
    return cl


def _to_float(images: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    work = np.float64 if dtype == torch.float64 else np.float32
    return torch.from_numpy(images.reshape(-1, 3, 32, 32).astype(work) / 255.0).to(dtype)


def cifar10_mean_image(root: str | Path, classes: Sequence[int] | None = None) -> torch.Tensor:
    """Mean training image ``(3, 32, 32)`` in ``[0, 1]`` units over the chosen classes (float64)."""
    cl = _check_classes(classes)
    source = _locate_cifar(_check_root(root, "CIFAR-10"))
    batches = _read_cifar_batches(source, _batch_names("train"))
    imgs, _ = _select(
        np.concatenate([b[0] for b in batches.values()]), np.concatenate([b[1] for b in batches.values()]), cl
    )
    return torch.from_numpy(imgs.astype(np.float64).mean(axis=0).reshape(3, 32, 32) / 255.0)


def load_cifar10(
    root: str | Path,
    split: str = "train",
    classes: Sequence[int] | None = None,
    subtract_mean: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 from ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py`` folder.

    Args:
        root: directory holding the archive or the batch files.
        split: ``"train"`` (50000 images) or ``"test"`` (10000).
        classes: keep only these classes, relabelled ``0..len(classes)-1`` in the given order
            (CIFAR-4 of the linear-CNN paper = ``classes=(0, 1, 2, 3)``).
        subtract_mean: subtract the **training** mean image of the selected classes (from both splits).
    Returns:
        ``x (N, 3, 32, 32)`` scaled to ``[0, 1]`` (minus the train mean if asked), ``labels`` int64.
    """
    check_choice("split", split, ("train", "test"))
    check_float_dtype("dtype", dtype)
    if not isinstance(subtract_mean, bool):
        raise TypeError(f"subtract_mean must be True or False, got {subtract_mean!r}")
    cl = _check_classes(classes)
    source = _locate_cifar(_check_root(root, "CIFAR-10"))
    names = _batch_names(split)
    if subtract_mean and split == "test":
        names = names + _batch_names("train")
    batches = _read_cifar_batches(source, names)
    own = _batch_names(split)
    imgs, labs = _select(np.concatenate([batches[n][0] for n in own]), np.concatenate([batches[n][1] for n in own]), cl)
    x = _to_float(imgs, torch.float64 if subtract_mean else dtype)
    if subtract_mean:
        if split == "train":
            mean = x.mean(dim=0)
        else:
            train = _select(
                np.concatenate([batches[n][0] for n in _batch_names("train")]),
                np.concatenate([batches[n][1] for n in _batch_names("train")]),
                cl,
            )[0]
            mean = torch.from_numpy(train.astype(np.float64).mean(axis=0).reshape(3, 32, 32) / 255.0)
        x = (x - mean).to(dtype)
    return x, torch.from_numpy(labs)


def dataset_files(name: str, root: str | Path) -> list[Path]:
    """The files a reader of dataset ``name`` reads from ``root`` (the four MNIST IDX files; the CIFAR-10 archive
    or its seven batch files), for fingerprinting what a run read (plumbing)."""
    check_choice("name", name, ("mnist", "cifar10"))
    base = _check_root(root, name)
    if name == "mnist":
        return [_find_mnist_file(base, stem) for pair in _MNIST_FILES.values() for stem in pair]
    source = _locate_cifar(base)
    if source.is_file():
        return [source]
    names = [*_batch_names("train"), *_batch_names("test"), "batches.meta"]
    return [source / n for n in names if (source / n).is_file()]


def locate_dataset(name: str, root: str | Path) -> Path:
    """Check that dataset ``name`` (``"mnist"`` or ``"cifar10"``) can be read from ``root`` without
    reading it; return the file or folder found. Raises ``FileNotFoundError`` naming what is missing."""
    check_choice("name", name, ("mnist", "cifar10"))
    base = _check_root(root, name)
    if name == "mnist":
        found = [_find_mnist_file(base, stem) for pair in _MNIST_FILES.values() for stem in pair]
        return found[0].parent
    return _locate_cifar(base)
