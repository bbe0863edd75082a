"""Compact real Fourier coordinates used by the fast linear-network trainer.

The vec-2D spectrum ``ẑ = Q z`` of a real image ``z (n, n)`` is conjugate-symmetric, ``ẑ_m̄ = ẑ_m*``
(spec ``linear_cnn_dynamics.md`` §1.4), so it is fixed by one representative of each pair ``{m, m̄}``.
Take the representatives ``r ∈ R = {m : m ≤ m̄}`` (``(n² + s)/2`` of them, ``s`` = number of
self-conjugate frequencies), with weight ``ω_r = 2`` for a pair and ``1`` for a self-conjugate one, and
define the **Fourier coefficients**

    ``c(z) = √ω ⊙ (Q z)_R ∈ C^{|R|}``  and their real view  ``φ(z) = [Re c_0, Im c_0, Re c_1, ...] ∈ R^{2|R|}``.

``z ↦ φ(z)`` is an isometry of ``R^{n²}`` (``φ(a)·φ(b) = Re Σ_r conj(c_r(a)) c_r(b) = a·b``, Parseval);
only the imaginary parts of the self-conjugate entries are identically zero. In these coordinates the
circular correlation by a full-size kernel is an elementwise complex product, so one single-sample SGD
step of the linear CNN costs ``O((C + p) n²)`` instead of the ``O(n⁴)`` of a dense convolution. Every
DFT here goes through :mod:`freqlens.fourier` (``vec2d_dft``, ``conjugate_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .._validation import check_positive_int, describe
from ..fourier import conjugate_index, vec2d_dft

__all__ = ["RealFourierBasis"]


@dataclass(frozen=True, eq=False)
class RealFourierBasis:
    """Representatives of the conjugate pairs of an ``n×n`` grid and the coefficient map ``c`` (module doc).

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
        """The real Fourier basis of an ``n×n`` grid (linear_cnn_dynamics §3, real form of ``Q``)."""
        n = check_positive_int("n", n)
        mbar = conjugate_index(n)
        m = np.arange(n * n)
        keep = m <= mbar
        weight = np.where(m[keep] == mbar[keep], 1.0, 2.0)
        return cls(n=n, index=m[keep], conj=mbar[keep], weight=weight)

    @property
    def size(self) -> int:
        """``|R|`` (the real view has ``2|R|`` entries)."""
        return int(self.index.shape[0])

    def scale(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
        """``√ω (R,)`` as a real tensor."""
        return torch.as_tensor(np.sqrt(self.weight), dtype=dtype, device=device)

    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled representatives ``(Q vec z)_R`` of real images ``z (..., n, n)``: complex ``(..., R)``."""
        if not isinstance(z, torch.Tensor) or z.ndim < 2 or tuple(z.shape[-2:]) != (self.n, self.n):
            raise ValueError(f"z must be a tensor of shape (..., {self.n}, {self.n}), got {describe(z)}")
        idx = torch.as_tensor(self.index, device=z.device)
        return vec2d_dft(z).index_select(-1, idx)

    def coefficients(self, z: torch.Tensor) -> torch.Tensor:
        """The isometric coefficients ``c(z) = √ω ⊙ (Q z)_R``: real images ``(..., n, n)`` -> complex ``(..., R)``."""
        zr = self.spectrum(z)
        return zr * self.scale(zr.real.dtype, zr.device)

    def full(self, zr: torch.Tensor) -> torch.Tensor:
        """Unscaled representatives ``(..., R)`` -> the whole conjugate-symmetric spectrum ``(..., n²)``."""
        if zr.shape[-1] != self.size:
            raise ValueError(f"zr must have last axis {self.size}, got {describe(zr)}")
        out = torch.zeros(*zr.shape[:-1], self.n * self.n, dtype=zr.dtype, device=zr.device)
        out[..., torch.as_tensor(self.conj, device=zr.device)] = zr.conj()
        out[..., torch.as_tensor(self.index, device=zr.device)] = zr
        return out

    @cached_property
    def representative(self) -> np.ndarray:
        """``(n²,)``: for every frequency ``m`` the position in ``R`` of the representative of ``{m, m̄}``."""
        out = np.empty(self.n * self.n, dtype=np.int64)
        out[self.conj] = np.arange(self.size)
        out[self.index] = np.arange(self.size)
        return out

    def full_magnitude(self, values: torch.Tensor) -> torch.Tensor:
        """Real values per representative ``(..., R)`` (symmetric in ``m ↔ m̄``) spread to ``(..., n²)``.

        One gather through :attr:`representative` (a pure copy: the values are not changed).
        """
        if values.shape[-1] != self.size:
            raise ValueError(f"values must have last axis {self.size}, got {describe(values)}")
        return values.index_select(-1, torch.as_tensor(self.representative, device=values.device))

    def images(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`coefficients`: conjugate-consistent complex ``(..., R)`` -> real ``(..., n, n)``."""
        if not coeffs.is_complex():
            raise ValueError(f"coeffs must be complex, got {describe(coeffs)}")
        zr = coeffs / self.scale(coeffs.real.dtype, coeffs.device)
        full = self.full(zr).reshape(*zr.shape[:-1], self.n, self.n)
        return torch.fft.ifft2(full, norm="ortho").real
