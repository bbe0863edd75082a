"""Representation costs of deep CNNs (conv_bottleneck §2, §3): float64 NumPy, no torch.

Everything is in the operator-normalised norm ``‖θ‖²_op = Σ_ℓ ‖MW_ℓ‖_F²`` (spec §1.4), in which a layer's
per-frequency blocks are the unitary-basis blocks of its operator.

* :func:`jacobian_lower_bound` — ``‖θ‖²_op ≥ L Σ_i s_i(Jf_θ(x))^{2/L}`` (§2.6, C9).
* :func:`linear_min_cost`, :func:`linear_cost_expansion`, :func:`balanced_linear_factorisation` — the
  minimal cost ``L Σ_{ω,i} s_i(Â(ω))^{2/L}`` of a linear equivariant map over depth-``L`` linear CNNs, its
  ``1/L`` expansion ``L R⁽⁰⁾ + R⁽¹⁾ + R⁽²⁾/L`` and the balanced optimum attaining it (§2.6, L1).
* :func:`identity_cost`, :func:`channel_passing_kernel` — the minimal cost of passing one channel at a
  frequency ω is 1 if ``2ω ≡ 0`` and 2 otherwise (§2.4, C11).
* :func:`cbn_cost` — ``Σ_ω (1 or 2)·k_ω`` for a set of kept frequencies (§2.4).
* :func:`fit_depth_slope` — ``‖θ‖² ≈ a L + b`` (§5c): ``a`` estimates ``R⁽⁰⁾`` and ``b`` estimates ``R⁽¹⁾``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..fourier import is_self_conjugate, svd_phase_fix

__all__ = [
    "DepthFit",
    "LinearCostExpansion",
    "balanced_linear_factorisation",
    "cbn_cost",
    "channel_passing_kernel",
    "fit_depth_slope",
    "identity_cost",
    "jacobian_lower_bound",
    "linear_cost_expansion",
    "linear_min_cost",
]


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return int(depth)


def jacobian_lower_bound(jacobian_singular_values: np.ndarray, depth: int) -> float:
    """``L Σ_i s_i^{2/L}`` for the singular values of ``Jf_θ(x)`` (spec §2.6, C9).

    For any depth-``L`` ReLU CNN (masks, sub-sampling and GAP have operator norm ≤ 1) and any input ``x``,
    ``‖θ‖²_op ≥`` this value (Schatten–Hölder then AM–GM). For an equivariant Jacobian pass the union of the
    per-frequency singular values. Non-finite or negative values raise ``ValueError``.
    """
    depth = _check_depth(depth)
    s = np.asarray(jacobian_singular_values, dtype=np.float64).reshape(-1)
    if not np.isfinite(s).all() or (s < 0).any():
        raise ValueError("jacobian_singular_values must be finite and non-negative")
    return float(depth * np.sum(s ** (2.0 / depth)))


def _block_singular_values(blocks: np.ndarray) -> np.ndarray:
    a = np.asarray(blocks)
    if a.ndim < 2:
        raise ValueError(f"blocks must have shape (..., m, n), got {a.shape}")
    return np.linalg.svd(a, compute_uv=False)


def linear_min_cost(blocks: np.ndarray, depth: int) -> float:
    """Minimal ``‖θ‖²_op`` of a depth-``L`` linear CNN realising the equivariant map with per-frequency blocks
    ``Â(ω)`` (``blocks (..., m, n)``, one block per frequency, unitary normalisation): ``L Σ_{ω,i} s_i^{2/L}``
    (spec §2.6, L1). It equals :func:`jacobian_lower_bound` on the union of the blocks' singular values."""
    return jacobian_lower_bound(_block_singular_values(blocks), depth)


@dataclass(frozen=True)
class LinearCostExpansion:
    """``R(A; L) = L R⁽⁰⁾ + R⁽¹⁾ + R⁽²⁾/L + O(L⁻²)`` for a linear map (spec §2.6).

    ``r0 = Σ_ω rank Â(ω)``, ``r1 = 2 Σ log s_i`` (non-zero ``s_i``: ``2 log|Â|₊``), ``r2 = 2 Σ log² s_i``.
    """

    r0: int
    r1: float
    r2: float

    def cost(self, depth: int) -> float:
        """The truncated expansion at depth ``L``."""
        depth = _check_depth(depth)
        return depth * self.r0 + self.r1 + self.r2 / depth


def linear_cost_expansion(blocks: np.ndarray, rank_tol: float = 1e-10) -> LinearCostExpansion:
    """Large-depth expansion of :func:`linear_min_cost` (spec §2.6): ``s^{2/L} = 1 + (2/L) log s + …``.

    Singular values below ``rank_tol × max`` count as zero.
    """
    s = _block_singular_values(blocks).reshape(-1)
    top = float(s.max()) if s.size else 0.0
    live = s[s > rank_tol * top] if top > 0 else s[:0]
    logs = np.log(live)
    return LinearCostExpansion(r0=int(live.size), r1=float(2.0 * logs.sum()), r2=float(2.0 * (logs**2).sum()))


def balanced_linear_factorisation(blocks: np.ndarray, depth: int) -> list[np.ndarray]:
    """Per-frequency layer blocks ``[Ŵ_1(ω), …, Ŵ_L(ω)]`` with ``Ŵ_L ⋯ Ŵ_1 = Â`` and cost equal to
    :func:`linear_min_cost` (spec §2.6: at the balanced optimum every layer has singular values ``s^{1/L}``).

    With ``Â = U S Vᴴ`` (thin SVD, rank ``k`` = min(m, n), phases by :func:`freqlens.fourier.svd_phase_fix`):
    ``Ŵ_1 = S^{1/L} Vᴴ``, ``Ŵ_ℓ = S^{1/L}`` for the
    middle layers (``k×k``) and ``Ŵ_L = U S^{1/L}``. ``blocks (..., m, n)``; for ``L = 1`` returns ``[Â]``.
    """
    depth = _check_depth(depth)
    a = np.asarray(blocks)
    if a.ndim < 2:
        raise ValueError(f"blocks must have shape (..., m, n), got {a.shape}")
    if depth == 1:
        return [a.copy()]
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    u, v = svd_phase_fix(u, np.conj(np.swapaxes(vh, -1, -2)))  # freqlens's one SVD phase convention
    vh = np.conj(np.swapaxes(v, -1, -2))
    root = s ** (1.0 / depth)
    diag = root[..., :, None] * np.eye(root.shape[-1])
    first = root[..., :, None] * vh
    last = u * root[..., None, :]
    return [first] + [diag.astype(a.dtype if np.iscomplexobj(a) else np.float64) for _ in range(depth - 2)] + [last]


def identity_cost(frequency: Sequence[int], grid: Sequence[int]) -> int:
    """Minimal ``‖MW‖_F²`` of a layer that passes one real channel at frequency ``ω`` unchanged (spec §2.4, C11):
    1 if ``2ω ≡ 0`` (DC, Nyquist), else 2 (the ``±ω`` pair). Plain-norm cost: divide by ``|P|``."""
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1:
        raise ValueError(f"grid must be positive, got {grid!r}")
    return 1 if is_self_conjugate(frequency, (h, w)) else 2


def channel_passing_kernel(frequency: Sequence[int], grid: Sequence[int]) -> np.ndarray:
    """The minimal-norm real full-size kernel ``W (H, W)`` whose circular correlation has multiplier 1 at ``±ω``
    and 0 elsewhere (the projector of spec §2.4): ``W(q) = Re Σ_{ν∈{ω,-ω}} e^{-2πi⟨ν,q⟩/n} / |P|`` … with the
    conjugation of PyTorch's correlation (C5a). ``|P| ‖W‖² =`` :func:`identity_cost` (C11)."""
    h, w = int(grid[0]), int(grid[1])
    k, l = int(frequency[0]) % h, int(frequency[1]) % w
    t = np.zeros((h, w))
    t[k, l] = 1.0
    t[(-k) % h, (-l) % w] = 1.0
    # correlation multiplier T = conj(fft2(W)) = t (real, symmetric)  =>  W = ifft2(conj(t)) = ifft2(t)
    kernel = np.fft.ifft2(t)
    return np.ascontiguousarray(kernel.real)


def cbn_cost(frequencies: Sequence[Sequence[int]], grid: Sequence[int]) -> int:
    """``Σ_ω k_ω`` counted over all frequencies, for a list of kept ``(ω, direction)`` entries given once per
    direction at one representative of each ``±ω`` pair: each self-conjugate direction adds 1, each pair 2
    (spec §2.4 "Type")."""
    return int(sum(identity_cost(f, grid) for f in frequencies))


@dataclass(frozen=True)
class DepthFit:
    """``y ≈ a L + b`` by least squares (spec §5c): ``a`` estimates ``R⁽⁰⁾``, ``b`` estimates ``R⁽¹⁾``.

    ``a_stderr`` / ``b_stderr`` are the usual OLS standard errors (``nan`` with fewer than 3 points).
    """

    a: float
    b: float
    a_stderr: float
    b_stderr: float
    residuals: np.ndarray


def fit_depth_slope(depths: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> DepthFit:
    """Least-squares fit ``values ≈ a·depth + b``; needs at least two distinct depths."""
    x = np.asarray(depths, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"depths and values must have the same length, got {x.size} and {y.size}")
    if np.unique(x).size < 2:
        raise ValueError("fit_depth_slope needs at least two distinct depths")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("depths and values must be finite")
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = x.size - 2
    if dof > 0:
        sigma2 = float(resid @ resid) / dof
        cov = sigma2 * np.linalg.inv(design.T @ design)
        a_se, b_se = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    else:
        a_se = b_se = float("nan")
    return DepthFit(a=float(coef[0]), b=float(coef[1]), a_stderr=a_se, b_stderr=b_se, residuals=resid)
