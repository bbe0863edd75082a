"""Compact real Fourier coordinates used by the fast linear-network trainer.

The vec-2D spectrum ``ẑ = Q z`` of a real image ``z (n, n)`` is conjugate-symmetric, ``ẑ_m̄ = ẑ_m*``
(spec ``linear_cnn_dynamics.md`` §1.4), so it is fixed by one representative of each pair ``{m, m̄}``.
Take the representatives ``r ∈ R = {m : m ≤ m̄}`` (``(n² + s)/2`` of them, ``s`` = number of
self-conjugate frequencies), with weight ``ω_r = 2`` for a pair and ``1`` for a self-conjugate one, and
define the **packed** coordinates

    ``P(ẑ) = [Re(√ω ⊙ ẑ_R), Im(√ω ⊙ ẑ_R)] ∈ R^{2|R|}``.

``z ↦ P(Q z)`` is an isometry of ``R^{n²}`` (``P(Qa)·P(Qb) = a·b``, Parseval); only the imaginary
parts of the self-conjugate entries are identically zero. In these coordinates the circular
correlation by a full-size kernel is an elementwise complex product, so one single-sample SGD step of
the linear CNN costs ``O((C + p) n²)`` instead of the ``O(n⁴)`` of a dense convolution. Every DFT
here goes through :mod:`freqlens.fourier` (``vec2d_dft``, ``conjugate_index``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_positive_int, describe
from ..fourier import conjugate_index, vec2d_dft

__all__ = ["RealFourierBasis", "complex_product", "conj_product"]


@dataclass(frozen=True, eq=False)
class RealFourierBasis:
    """Representatives of the conjugate pairs of an ``n×n`` grid and the packing ``P`` (module doc).

    Attributes:
        n: image side.
        index: ``(R,)`` vec-2D indices ``m ≤ m̄`` (ascending).
        conj: ``(R,)`` their partners ``m̄``.
        weight: ``(R,)`` float64, 2 for pairs and 1 for self-conjugate frequencies.
    """

    n: int
    index: np.ndarray
    conj: np.ndarray
    weight: np.ndarray

    @classmethod
    def for_size(cls, n: int) -> RealFourierBasis:
        n = check_positive_int("n", n)
        mbar = conjugate_index(n)
        m = np.arange(n * n)
        keep = m <= mbar
        weight = np.where(m[keep] == mbar[keep], 1.0, 2.0)
        return cls(n=n, index=m[keep], conj=mbar[keep], weight=weight)

    @property
    def size(self) -> int:
        """``|R|`` (the packed vector has ``2|R|`` entries)."""
        return int(self.index.shape[0])

    def scale(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
        """``√ω (R,)`` as a real tensor."""
        return torch.as_tensor(np.sqrt(self.weight), dtype=dtype, device=device)

    # ---------------------------------------------------------------- complex <-> packed
    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled representatives ``ẑ_R = (Q vec z)_R`` of real images ``z (..., n, n)``: complex ``(..., R)``."""
        self._check_images("z", z)
        idx = torch.as_tensor(self.index, device=z.device)
        return vec2d_dft(z).index_select(-1, idx)

    def pack(self, zr: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        """Complex representatives ``(..., R)`` -> real ``(..., 2, R)`` = ``[Re, Im]`` (times ``√ω`` if ``scaled``)."""
        if not zr.is_complex() or zr.shape[-1] != self.size:
            raise ValueError(f"zr must be complex with last axis {self.size}, got {describe(zr)}")
        if scaled:
            zr = zr * self.scale(zr.real.dtype, zr.device)
        return torch.stack([zr.real, zr.imag], dim=-2)

    def unpack(self, packed: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        """Inverse of :meth:`pack`: real ``(..., 2, R)`` -> complex representatives ``(..., R)``."""
        if packed.is_complex() or packed.shape[-2:] != (2, self.size):
            raise ValueError(f"packed must be real with trailing shape (2, {self.size}), got {describe(packed)}")
        zr = torch.complex(packed[..., 0, :], packed[..., 1, :])
        if scaled:
            zr = zr / self.scale(packed.dtype, packed.device)
        return zr

    def full(self, zr: torch.Tensor) -> torch.Tensor:
        """Complex representatives ``(..., R)`` -> the whole conjugate-symmetric spectrum ``(..., n²)``."""
        out = torch.zeros(*zr.shape[:-1], self.n * self.n, dtype=zr.dtype, device=zr.device)
        out[..., torch.as_tensor(self.conj, device=zr.device)] = zr.conj()
        out[..., torch.as_tensor(self.index, device=zr.device)] = zr
        return out

    def image(self, zr: torch.Tensor) -> torch.Tensor:
        """Real images ``(..., n, n)`` whose vec-2D spectrum has representatives ``zr (..., R)`` (``Q^H``)."""
        full = self.full(zr).reshape(*zr.shape[:-1], self.n, self.n)
        return torch.fft.ifft2(full, norm="ortho").real

    def to_packed(self, z: torch.Tensor) -> torch.Tensor:
        """The isometry ``z ↦ P(Q z)``: real images ``(..., n, n)`` -> ``(..., 2, R)``."""
        return self.pack(self.spectrum(z), scaled=True)

    def from_packed(self, packed: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_packed` on its range: ``(..., 2, R)`` -> real images ``(..., n, n)``."""
        return self.image(self.unpack(packed, scaled=True))

    def _check_images(self, name: str, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or z.ndim < 2 or tuple(z.shape[-2:]) != (self.n, self.n):
            raise ValueError(f"{name} must be a tensor of shape (..., {self.n}, {self.n}), got {describe(z)}")


def conj_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``conj(a) ⊙ b`` for packed ``(..., 2, R)`` operands (broadcasting), returned packed."""
    re = a[..., 0, :] * b[..., 0, :] + a[..., 1, :] * b[..., 1, :]
    im = a[..., 0, :] * b[..., 1, :] - a[..., 1, :] * b[..., 0, :]
    return torch.stack([re, im], dim=-2)


def complex_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a ⊙ b`` for packed ``(..., 2, R)`` operands (broadcasting), returned packed."""
    re = a[..., 0, :] * b[..., 0, :] - a[..., 1, :] * b[..., 1, :]
    im = a[..., 0, :] * b[..., 1, :] + a[..., 1, :] * b[..., 0, :]
    return torch.stack([re, im], dim=-2)
