"""Atomic file writes and run directories.

A run directory ``OUT/NAME/`` holds ``config.json`` (everything needed to rerun), ``data.npz`` (every
plotted array, named), ``summary.json`` (headline numbers), the figures as PNG and PDF, and
``stages/`` (finished pieces of work, so an interrupted run resumes where it stopped). Every file is
written to a temporary file in the same directory and renamed into place, so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import socket
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RunDirectory",
    "RunLocked",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_temp_files",
    "config_hash",
    "file_identity",
    "flatten_tree",
    "read_json",
    "read_npz",
    "to_jsonable",
    "unflatten_tree",
    "write_json",
    "write_npz",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically, via :func:`atomic_write_bytes` (plumbing)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays, tuples and paths to plain JSON types.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no literal for them).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, complex):
        return {"real": to_jsonable(obj.real), "imag": to_jsonable(obj.imag)}
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` (through :func:`to_jsonable`) as indented JSON to ``path``, atomically (plumbing)."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse the JSON file ``path``; a malformed file raises ``ValueError`` naming it (plumbing)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def write_npz(path: str | Path, arrays: Mapping[str, Any], compressed: bool = True) -> Path:
    """Write named arrays to an ``.npz`` atomically. Values are converted with ``np.asarray``."""
    bad = [k for k in arrays if not k.isidentifier()]
    if bad:
        raise ValueError(f"array names must be identifiers, got {bad}")
    buf = io.BytesIO()
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in payload.items():
        if v.dtype == object:
            raise ValueError(f"array {k!r} has dtype object; store numeric or string arrays only")
    if compressed:
        np.savez_compressed(buf, **payload)  # type: ignore[arg-type]
    else:
        np.savez(buf, **payload)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


#: Separator of the levels of a nested result in its flat ``data.npz`` names: ``{"white": {"K1": a}}`` is stored as
#: ``white__K1``. A double underscore keeps every name an identifier and never occurs inside a level's own name.
TREE_SEPARATOR = "__"


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested result (mappings of mappings of arrays) into ``data.npz`` names (plumbing).

    Level names are joined with :data:`TREE_SEPARATOR`; a leaf is anything that is not a mapping. A level name that
    is empty, is not a string or contains the separator is refused, so that :func:`unflatten_tree` inverts this
    exactly. A flat mapping is returned unchanged.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key or TREE_SEPARATOR in key or key.startswith("_") or key.endswith("_"):
            raise ValueError(
                f"result level names must be non-empty strings without {TREE_SEPARATOR!r} and without a leading or "
                f"trailing underscore, got {key!r}"
            )
        name = f"{prefix}{TREE_SEPARATOR}{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, name))
        else:
            flat[name] = value
    return flat


def unflatten_tree(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested result of :func:`flatten_tree` back from its flat names (plumbing; flat names stay flat)."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *levels, leaf = name.split(TREE_SEPARATOR)
        node = tree
        for level in levels:
            node = node.setdefault(level, {})
            if not isinstance(node, dict):
                raise ValueError(f"data name {name!r} nests below a leaf array")
        if leaf in node:
            raise ValueError(f"data name {name!r} is both a leaf and a level")
        node[leaf] = value
    return tree


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path``, without pickles; a damaged file raises ``ValueError`` (plumbing)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        # a damaged or truncated archive raises any of these from numpy's zip reader
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from exc


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able configuration (used to validate resumable stages)."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(files: Sequence[str | Path], samples: int = 16, block: int = 1 << 16) -> dict[str, Any]:
    """Sizes and a fast sampled hash of the given files (plumbing for run fingerprints).

    The hash reads ``samples`` blocks of ``block`` bytes spread evenly over each file (always the first and the
    last), so a 170 MB archive costs a few milliseconds, while any change of name, size, header or trailer (and
    most in-place edits) changes the identity. The folder the files sit in is recorded but not hashed, so the
    same data moved elsewhere keeps its identity.
    """
    paths = [Path(f) for f in files]
    digest = hashlib.blake2b(digest_size=16)
    total = 0
    for f in paths:
        size = f.stat().st_size
        total += size
        digest.update(f"{f.name}:{size};".encode())
        with open(f, "rb") as fh:
            offsets = sorted({int(i * max(size - block, 0) / max(samples - 1, 1)) for i in range(samples)})
            for off in offsets:
                fh.seek(off)
                digest.update(fh.read(block))
    return {"files": len(paths), "bytes": total, "hash": digest.hexdigest()}


def clean_temp_files(folder: str | Path) -> list[Path]:
    """Remove the ``.NAME.*.tmp`` files an interrupted atomic write (kill -9) left below ``folder``."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for tmp in folder.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


class RunLocked(RuntimeError):
    """Another live process holds the lock of a run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunDirectory:
    """The files of one experiment run.

    ``path/{config.json, data.npz, summary.json, *.png, *.pdf}`` are the published results; they are written
    only together, at the end of a run, with ``config.json`` last (so a ``config.json`` always describes the
    files beside it). ``path/stages/<fingerprint>/`` holds finished pieces of work (stages, training
    checkpoints) of the run whose fingerprint names the folder: a different configuration, seed, device, data or
    code version never reads them. ``path/.lock`` holds the PID of the process writing the folder.
    """

    CONFIG = "config.json"
    DATA = "data.npz"
    SUMMARY = "summary.json"
    LOCK = ".lock"

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path).expanduser() if name is None else Path(path).expanduser() / name
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"run directory {self.path} exists and is not a directory")

    def create(self) -> RunDirectory:
        """Make the folder (and its parents); a clear error where that is impossible."""
        for parent in [self.path, *self.path.parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"cannot create run directory {self.path}: {parent} is not a directory")
                break
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create run directory {self.path}: {exc.strerror or exc}") from exc
        if not os.access(self.path, os.W_OK):
            raise ValueError(f"run directory {self.path} is not writable")
        return self

    @property
    def stages_root(self) -> Path:
        """``path/stages``: the parent of every fingerprint's stage folder (plumbing)."""
        return self.path / "stages"

    def stages_dir(self, fingerprint: str) -> Path:
        """``stages/<fingerprint>``: the reusable files of one configuration (plumbing)."""
        if not fingerprint or not fingerprint.isalnum():
            raise ValueError(f"fingerprint must be a non-empty alphanumeric string, got {fingerprint!r}")
        return self.stages_root / fingerprint

    # -- published results ------------------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write ``config.json`` atomically (plumbing)."""
        return write_json(self.path / self.CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        """Read ``config.json`` (plumbing)."""
        return dict(read_json(self.path / self.CONFIG))

    def write_data(self, arrays: Mapping[str, Any]) -> Path:
        """Write ``data.npz`` (every plotted array, named) atomically (plumbing)."""
        return write_npz(self.path / self.DATA, arrays)

    def read_data(self) -> dict[str, np.ndarray]:
        """Read ``data.npz`` (plumbing)."""
        return read_npz(self.path / self.DATA)

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``summary.json`` (headline numbers, claims against measurements) atomically (plumbing)."""
        return write_json(self.path / self.SUMMARY, summary)

    def read_summary(self) -> dict[str, Any]:
        """Read ``summary.json`` (plumbing)."""
        return dict(read_json(self.path / self.SUMMARY))

    def publish(self, staged: Path, record: Mapping[str, Any]) -> None:
        """Move the finished results prepared in ``staged`` into the run directory, ``config.json`` last.

        The previous ``config.json`` is removed first: if the process dies half-way, the folder has no
        ``config.json`` (no run claims the files) and the next identical run publishes again from ``staged``.
        Figures of the previous run that this run does not write are removed too.
        """
        previous: list[str] = []
        cfg = self.path / self.CONFIG
        if cfg.is_file():
            try:
                previous = [str(f) for f in self.read_config().get("files", [])]
            except ValueError:
                previous = []
            cfg.unlink()
        new = sorted(p.name for p in staged.iterdir() if p.is_file() and not p.name.startswith("."))
        for name in previous:
            if name not in new and Path(name).name == name:
                (self.path / name).unlink(missing_ok=True)
        for name in new:
            os.replace(staged / name, self.path / name)
        self.write_config({**record, "files": new})

    # -- resumable work -----------------------------------------------------------------------------------
    def stage_path(self, key: str, fingerprint: str, suffix: str = ".npz") -> Path:
        """``stages/<fingerprint>/<key><suffix>``; ``key`` must be a simple name (plumbing)."""
        if not key or not key.replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(f"stage key must be a simple name (letters, digits, _, -, .), got {key!r}")
        return self.stages_dir(fingerprint) / f"{key}{suffix}"

    def save_stage(self, key: str, arrays: Mapping[str, Any], fingerprint: str) -> Path:
        """Store a finished stage's arrays with the ``fingerprint`` of the config that made them (plumbing)."""
        payload = dict(arrays)
        payload["_fingerprint"] = np.array(fingerprint)
        return write_npz(self.stage_path(key, fingerprint), payload)

    def load_stage(self, key: str, fingerprint: str) -> dict[str, np.ndarray] | None:
        """Return a finished stage written under the same fingerprint, else ``None`` (also when damaged)."""
        path = self.stage_path(key, fingerprint)
        if not path.is_file():
            return None
        try:
            arrays = read_npz(path)
        except ValueError:
            return None  # a damaged stage is recomputed, never trusted
        if str(arrays.pop("_fingerprint", "")) != fingerprint:
            return None
        return arrays

    # -- one writer at a time -----------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``path/.lock`` (PID and host of the owner) while the body runs.

        A second process gets :class:`RunLocked` naming the owner; a lock whose owner is gone (same host, PID not
        running) is stale and taken over.
        """
        self.create()
        lock = self.path / self.LOCK
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid_text, _, host = lock.read_text().strip().partition(" ")
                    pid = int(pid_text)
                except (OSError, ValueError):
                    pid, host = -1, ""
                if pid > 0 and (host != socket.gethostname() or _pid_alive(pid)):
                    raise RunLocked(
                        f"{self.path} is being written by another freqlens process (PID {pid} on {host or '?'}); "
                        f"wait for it to finish, or delete {lock} if that process is gone"
                    ) from None
                lock.unlink(missing_ok=True)  # stale: its owner died (kill -9)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            break
        else:
            raise RunLocked(f"could not take the lock {lock}")
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
