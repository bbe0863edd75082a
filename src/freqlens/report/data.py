"""The user's data as a re-iterable stream of float batches on one device (plumbing).

Accepts a tensor / NumPy array ``(N, C, ...)``, a map-style ``Dataset`` (items ``x`` or ``(x, y, ...)``), a
``DataLoader`` or any re-iterable of batches. Validates the first batch before any long work: integer,
complex or non-finite data is refused with a one-line error naming ``data``; float16/bfloat16 is upcast to
the model's dtype (with a note).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validation import describe

__all__ = ["BatchStream"]


def _first_tensor(item: Any) -> Any:
    return item[0] if isinstance(item, tuple | list) and item else item


class BatchStream:
    """Re-iterable float batches (plumbing): each ``iter()`` restarts the source and stops after
    ``max_images`` images; ``progress`` shows a bar named by :meth:`stage`."""

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int,
        max_images: int | None,
        device: torch.device,
        dtype: torch.dtype,
        progress: bool = True,
    ) -> None:
        self.batch_size = batch_size
        self.max_images = max_images
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.notes: list[str] = []
        self.desc = "data"
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(np.ascontiguousarray(data))
        if isinstance(data, torch.Tensor):
            self._source: Any = data
        elif isinstance(data, torch.utils.data.DataLoader | torch.utils.data.Dataset) and hasattr(data, "__len__"):
            self._source = data
        elif isinstance(data, Iterator):
            # a one-shot iterator: keep what we need so that every stage sees the same images
            kept, count = [], 0
            for item in data:
                kept.append(item)
                count += int(_first_tensor(item).shape[0]) if hasattr(_first_tensor(item), "shape") else 1
                if max_images is not None and count >= max_images:
                    break
            self._source = kept
        elif isinstance(data, Iterable):
            self._source = data
        else:
            raise TypeError(
                f"data must be a tensor, NumPy array, Dataset, DataLoader or iterable of batches, got {describe(data)}"
            )
        first = next(self._raw(), None)
        if first is None:
            raise ValueError("data holds no samples")
        self.example = self._convert(first, check=True)[:1]

    def stage(self, desc: str) -> BatchStream:
        """Name the progress bar of the next pass (plumbing)."""
        self.desc = desc
        return self

    def _raw(self) -> Iterator[torch.Tensor]:
        src = self._source
        if isinstance(src, torch.Tensor):
            for start in range(0, src.shape[0], self.batch_size):
                yield src[start : start + self.batch_size]
        elif isinstance(src, torch.utils.data.Dataset) and not isinstance(src, torch.utils.data.DataLoader):
            n = len(src)  # type: ignore[arg-type]
            for start in range(0, n, self.batch_size):
                items = [_first_tensor(src[i]) for i in range(start, min(n, start + self.batch_size))]
                yield torch.stack([torch.as_tensor(t) for t in items])
        else:
            for item in src:
                x = _first_tensor(item)
                if isinstance(x, np.ndarray):
                    x = torch.from_numpy(x)
                if not isinstance(x, torch.Tensor):
                    raise TypeError(f"data batches must be tensors or (x, y) tuples, got {describe(x)}")
                yield x

    def _convert(self, x: torch.Tensor, check: bool = False) -> torch.Tensor:
        if check:
            if x.is_complex() or x.dtype == torch.bool or not x.is_floating_point():
                hint = " (images in 0..255? divide by 255 first)" if x.dtype == torch.uint8 else ""
                raise ValueError(f"data must hold real floating-point images, got {describe(x)}{hint}")
            if x.ndim < 3:
                raise ValueError(f"data batches must have shape (N, C, ...), got {describe(x)}")
            if x.dtype in (torch.float16, torch.bfloat16) and x.dtype != self.dtype:
                self.notes.append(f"data of dtype {x.dtype} was upcast to {self.dtype} for the measurement")
            if not bool(torch.isfinite(x).all()):
                raise ValueError("data contains NaN or infinite values")
        return x.to(device=self.device, dtype=self.dtype)

    def __iter__(self) -> Iterator[torch.Tensor]:
        seen = 0
        total = self.max_images
        if total is None and isinstance(self._source, torch.Tensor | torch.utils.data.Dataset):
            total = len(self._source)  # type: ignore[arg-type]
        bar = tqdm(total=total, desc=self.desc, unit="img", disable=not self.progress, file=sys.stderr, leave=False)
        try:
            for raw in self._raw():
                x = self._convert(raw)
                if self.max_images is not None:
                    x = x[: self.max_images - seen]
                if x.shape[0] == 0:
                    break
                seen += int(x.shape[0])
                bar.update(int(x.shape[0]))
                yield x
                if self.max_images is not None and seen >= self.max_images:
                    break
        finally:
            bar.close()
