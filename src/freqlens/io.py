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
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RunDirectory",
    "atomic_write_bytes",
    "atomic_write_text",
    "config_hash",
    "read_json",
    "read_npz",
    "to_jsonable",
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


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path``, loaded without pickles (``allow_pickle=False``) (plumbing)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able configuration (used to validate resumable stages)."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunDirectory:
    """The files of one experiment run: ``root/name/{config.json, data.npz, summary.json, *.png, *.pdf}``."""

    CONFIG = "config.json"
    DATA = "data.npz"
    SUMMARY = "summary.json"

    def __init__(self, root: str | Path, name: str) -> None:
        self.path = Path(root).expanduser() / name
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def stages_dir(self) -> Path:
        """``path/stages``: where finished stages are kept for resuming (plumbing)."""
        return self.path / "stages"

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

    def stage_path(self, key: str) -> Path:
        """``stages/<key>.npz``; ``key`` must be a simple name (letters, digits, _, -, .) (plumbing)."""
        if not key.replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(f"stage key must be a simple name (letters, digits, _, -, .), got {key!r}")
        return self.stages_dir / f"{key}.npz"

    def save_stage(self, key: str, arrays: Mapping[str, Any], fingerprint: str) -> Path:
        """Store a finished stage's arrays with the config ``fingerprint`` that made them (plumbing)."""
        payload = dict(arrays)
        payload["_fingerprint"] = np.array(fingerprint)
        return write_npz(self.stage_path(key), payload)

    def load_stage(self, key: str, fingerprint: str) -> dict[str, np.ndarray] | None:
        """Return a finished stage written under the same configuration fingerprint, else ``None``."""
        path = self.stage_path(key)
        if not path.is_file():
            return None
        try:
            arrays = read_npz(path)
        except ValueError:
            return None  # a damaged stage is recomputed, never trusted
        if str(arrays.pop("_fingerprint", "")) != fingerprint:
            return None
        return arrays
