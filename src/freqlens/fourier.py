"""Fourier and circulant core: the single home of every DFT convention in freqlens.

Conventions (``spec/README.md`` "Shared conventions"; ``spec/linear_cnn_dynamics.md`` §1, §3):

* Row-major vectorisation: ``x = X.reshape(-1)``, pixel ``m = i*n + j``; in a frequency pair
  ``(k, l)`` the first index multiplies the **row** index.
* Unitary DFT: ``F_ab = exp(-2πi ab/n)/sqrt(n)`` and ``Q = F ⊗ F`` (symmetric, unitary,
  ``Q vec(X) = vec(fft2(X))/n``). For batches we never build ``Q``: :func:`vec2d_dft` is an FFT.
* Unnormalised spectra (``spectrum maps``) are ``torch.fft.fft2`` / ``np.fft.fft2`` with the default
  norm, unshifted (low frequencies at the corners).
* PyTorch ``conv2d`` is a cross-correlation. With circular padding ``p`` its per-frequency
  multiplier is ``conj(fft2(W, s=grid)) * exp(-2πi(u p_h/H + v p_w/W))`` (spec C5a / decoder §2.2);
  a true circular convolution has multiplier ``fft2(K)``.

* Conjugate representatives: of each pair ``{m, m̄}`` the smaller flat index (``m <= m̄``) is kept
  (:func:`conjugate_representatives`); on the ``rfft2`` half-plane the member inside it
  (:func:`half_plane_representatives`). Self-conjugate frequencies (``2ω ≡ 0``) are their own partner.
* Dirichlet kernel: ``D_L(f; P) = Σ_{t<L} e^{-2πi f t/P}`` (the **minus** sign of the DFT: the
  unnormalised DFT of an ``L``-pixel box), :func:`dirichlet_kernel`. The decoder paper's ``R_uv`` (App.
  A.4, Eq. 27, plus sign) is its complex conjugate.
* Phase ramps: ``exp(sign·2πi (u s_h/H + v s_w/W))`` with the index product reduced modulo the size before
  the exponential (:func:`phase_ramp_angles`, :func:`phase_ramp`).
* 1-D signals: a length-``L`` signal (``(..., L)``, e.g. the input of ``nn.Conv1d``) lives on the ``1×L``
  grid (``x[..., None, :]``): its frequencies are labelled ``(0, k)`` and every 2-D rule, table and mask
  applies unchanged, since a DFT over a size-1 axis is the identity (:func:`spatial_grid`).
* SVD phases: every singular vector freqlens returns is normalised by :func:`svd_phase_fix` (the entry of
  largest modulus of each left vector is real and positive; the right vector gets the same unit factor).

Functions accept numpy arrays or torch tensors where that is natural and return the same kind.
This module imports torch only inside the functions that handle tensors, so NumPy-only layers
(``freqlens.theory``) can use it without loading torch.
Dense matrices (``Q``, circulant matrices) are numpy ``complex128``/``float64``: they exist for
checks and small theory, never for batched work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from ._validation import (
    ArrayLike,
    check_choice,
    check_ndim,
    check_positive_int,
    check_tensor_like,
    describe,
    is_tensor,
)

if TYPE_CHECKING:
    import torch

ConvOp = Literal["conv", "corr"]
T = TypeVar("T", np.ndarray, "torch.Tensor")

__all__ = [
    "as_pair",
    "circulant_1d",
    "circulant_eigendecomposition",
    "circulant_eigenvalues",
    "circulant_matrix",
    "circular_conv2d",
    "conjugate_index",
    "conjugate_representatives",
    "conv2d_transfer_matrices",
    "dft_matrix",
    "dft_matrix_1d",
    "dirichlet_kernel",
    "downsample_spectrum",
    "frequency_pairs",
    "half_plane_representatives",
    "is_self_conjugate",
    "low_frequency_mask",
    "nearest_upsample_spectrum",
    "phase_ramp",
    "phase_ramp_angles",
    "self_conjugate_indices",
    "self_conjugate_mask",
    "signed_frequencies",
    "spatial_grid",
    "svd_phase_fix",
    "unitary_fft2",
    "unitary_ifft2",
    "vec2d_dft",
    "vec2d_idft",
    "vec_index",
    "zero_insertion_spectrum",
]


# --------------------------------------------------------------------------------------------
# Dense DFT matrices (spec §1.2-1.3)
# --------------------------------------------------------------------------------------------
def dft_matrix_1d(n: int) -> np.ndarray:
    """Unitary 1-D DFT matrix ``F_ab = exp(-2πi ab/n)/sqrt(n)`` (spec §1.2), complex128 ``(n, n)``."""
    n = check_positive_int("n", n)
    a = np.arange(n)
    # Reduce ab mod n before the exponential: keeps the phase exact for large n.
    return np.exp(-2j * np.pi * (np.outer(a, a) % n) / n) / np.sqrt(n)


def dft_matrix(n: int) -> np.ndarray:
    """The vec-2D DFT matrix ``Q = F ⊗ F`` (spec §1.3, Eq. S.15), complex128 ``(n², n²)``.

    ``Q`` is unitary and symmetric, ``Q @ X.reshape(-1) == fft2(X).reshape(-1) / n`` and ``Q²`` is the
    index negation. Use :func:`vec2d_dft` for anything batched: building ``Q`` costs ``O(n⁴)``.
    """
    f = dft_matrix_1d(n)
    return np.kron(f, f)


# --------------------------------------------------------------------------------------------
# FFT equivalents (never build Q where an FFT does the job)
# --------------------------------------------------------------------------------------------
@overload
def unitary_fft2(x: np.ndarray) -> np.ndarray: ...
@overload
def unitary_fft2(x: torch.Tensor) -> torch.Tensor: ...
def unitary_fft2(x: ArrayLike) -> ArrayLike:
    """Unitary 2-D DFT over the last two axes: ``F X F`` for square ``X`` (spec §1.2).

    ``x (..., H, W)`` real or complex, numpy or torch; returns complex of the same kind.
    """
    check_ndim("x", x, range(2, 64), "(..., H, W)")
    if is_tensor(x):
        import torch

        return torch.fft.fft2(x, norm="ortho")
    return np.fft.fft2(x, norm="ortho")


@overload
def unitary_ifft2(x: np.ndarray) -> np.ndarray: ...
@overload
def unitary_ifft2(x: torch.Tensor) -> torch.Tensor: ...
def unitary_ifft2(x: ArrayLike) -> ArrayLike:
    """Inverse of :func:`unitary_fft2` (``F* X F*``)."""
    check_ndim("x", x, range(2, 64), "(..., H, W)")
    if is_tensor(x):
        import torch

        return torch.fft.ifft2(x, norm="ortho")
    return np.fft.ifft2(x, norm="ortho")


@overload
def vec2d_dft(x: np.ndarray) -> np.ndarray: ...
@overload
def vec2d_dft(x: torch.Tensor) -> torch.Tensor: ...
def vec2d_dft(x: ArrayLike) -> ArrayLike:
    """Batched vec-2D DFT ``x̂ = Q vec(X)`` (spec §1.3) without building ``Q``.

    ``x (..., H, W)`` -> ``(..., H*W)`` complex. Channels are simply leading axes, so an image
    ``(C, H, W)`` gives the per-channel spectra ``(C, H*W)``.
    """
    xh = unitary_fft2(x)
    return xh.reshape(*xh.shape[:-2], xh.shape[-2] * xh.shape[-1])


@overload
def vec2d_idft(xh: np.ndarray, shape: tuple[int, int]) -> np.ndarray: ...
@overload
def vec2d_idft(xh: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor: ...
def vec2d_idft(xh: ArrayLike, shape: tuple[int, int]) -> ArrayLike:
    """Inverse of :func:`vec2d_dft`: ``(..., H*W)`` -> ``(..., H, W)`` complex (``Q^H x̂``)."""
    check_tensor_like("xh", xh)
    h, w = shape
    if xh.shape[-1] != h * w:
        raise ValueError(f"xh must have last axis of length H*W = {h * w} for shape={shape}, got {describe(xh)}")
    return unitary_ifft2(xh.reshape(*xh.shape[:-1], h, w))


# --------------------------------------------------------------------------------------------
# Frequency bookkeeping (spec §1.4)
# --------------------------------------------------------------------------------------------
def as_pair(name: str, value: int | Sequence[int], minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints as ``(first, second)``, the one reading of PyTorch-style size arguments
    (plumbing). Integer-like numpy scalars are accepted; floats, bools and other lengths are refused with a
    message naming ``name``; ``minimum`` (if given) bounds both entries from below."""

    def one(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(v)

    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif isinstance(value, str) or (not isinstance(value, Sequence) and not hasattr(value, "__len__")):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    else:
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = list(value)  # type: ignore[arg-type]
        out = (one(pair[0]), one(pair[1]))
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def spatial_grid(name: str, size: int | Sequence[int]) -> tuple[int, int]:
    """The frequency grid of a feature map's spatial size, the one 1-D convention of freqlens (module
    docstring): ``(H, W)`` is itself; a 1-D length ``L`` (an int or ``(L,)``) is the ``1×L`` grid, whose
    frequencies are labelled ``(0, k)``. Other lengths, non-ints and sizes below 1 are refused naming ``name``."""
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        dims: list[Any] = [1, int(size)]
    elif isinstance(size, str) or not hasattr(size, "__len__"):
        raise TypeError(f"{name} must be a length L (int), (L,) or (H, W), got {size!r}")
    else:
        dims = list(size)  # type: ignore[arg-type]  # a sized non-str: checked just above
        if len(dims) == 1:
            dims = [1, *dims]
        if len(dims) != 2:
            raise ValueError(f"{name} must be a length L (int), (L,) or (H, W), got {size!r} ({len(dims)} axes)")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in dims):
        raise TypeError(f"{name} must be a length L (int), (L,) or (H, W) of ints, got {size!r}")
    if min(int(v) for v in dims) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return int(dims[0]), int(dims[1])


def _shape2(n: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(n, int | np.integer):
        h = w = check_positive_int("n", int(n))
    else:
        if len(n) != 2:
            raise ValueError(f"grid shape must be an int n or a pair (H, W), got {n!r}")
        h = check_positive_int("H", int(n[0]))
        w = check_positive_int("W", int(n[1]))
    return h, w


def frequency_pairs(n: int | Sequence[int]) -> np.ndarray:
    """The ``(k, l)`` pair of every vec-2D index ``m = k*W + l``: int64 ``(H*W, 2)``."""
    h, w = _shape2(n)
    k, l = np.divmod(np.arange(h * w), w)
    return np.stack([k, l], axis=1).astype(np.int64)


def vec_index(k: int | np.ndarray, l: int | np.ndarray, n: int | Sequence[int]) -> np.ndarray:
    """Vec-2D index of frequency ``(k, l)`` (taken modulo the grid): ``m = (k mod H)*W + (l mod W)``."""
    h, w = _shape2(n)
    return (np.asarray(k) % h) * w + (np.asarray(l) % w)


def conjugate_index(n: int | Sequence[int]) -> np.ndarray:
    """The symmetric index ``m -> m̄`` with ``(k̄, l̄) = (-k mod H, -l mod W)`` (spec §1.4).

    For real ``x``: ``x̂[m̄] = conj(x̂[m])``. Returns int64 ``(H*W,)``; it is an involution.
    """
    h, w = _shape2(n)
    kl = frequency_pairs((h, w))
    return vec_index(-kl[:, 0], -kl[:, 1], (h, w)).astype(np.int64)


def conjugate_representatives(grid: int | Sequence[int]) -> np.ndarray:
    """Flat indices ``m`` (row-major on ``grid``) with ``m <= m̄``: one frequency per conjugate pair plus the
    self-conjugate ones (spec README convention 4). :func:`conjugate_index` maps them onto the rest."""
    h, w = _shape2(grid)
    return np.flatnonzero(np.arange(h * w) <= conjugate_index((h, w)))


def half_plane_representatives(grid: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One frequency per conjugate pair (and every self-conjugate one) on the ``rfft2`` half-plane
    ``(H, W//2+1)``: returns the flat half-plane indices and the flat full-grid index of each (C4).

    The half-plane holds both members of a pair only for ``v = 0`` or ``v = W/2``; there the smaller full
    index is kept (as in :func:`conjugate_representatives`), elsewhere the member inside the half-plane."""
    h, w = _shape2(grid)
    wr = w // 2 + 1
    u, v = np.divmod(np.arange(h * wr), wr)
    full = u * w + v
    keep = (full <= conjugate_index((h, w))[full]) | ((v > 0) & (2 * v != w))
    return np.flatnonzero(keep), full[keep]


def is_self_conjugate(omega: Sequence[int], grid: Sequence[int]) -> bool:
    """``2ω ≡ 0`` on ``grid`` (DC and, for even sides, Nyquist): the frequency is its own conjugate partner."""
    h, w = _shape2(tuple(int(g) for g in grid))
    return (2 * int(omega[0])) % h == 0 and (2 * int(omega[1])) % w == 0


def self_conjugate_mask(n: int | Sequence[int]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the frequencies with ``2ω ≡ 0``: DC and, for even sides, Nyquist."""
    h, w = _shape2(n)
    rows = (2 * np.arange(h)) % h == 0
    cols = (2 * np.arange(w)) % w == 0
    return np.outer(rows, cols)


def self_conjugate_indices(n: int | Sequence[int]) -> np.ndarray:
    """Vec-2D indices ``m`` with ``m == m̄``: ``(0,0)`` plus ``(n/2,0), (0,n/2), (n/2,n/2)`` for even n."""
    return np.flatnonzero(self_conjugate_mask(n).reshape(-1))


def low_frequency_mask(grid: tuple[int, int], fraction: float = 1 / 8) -> np.ndarray:
    """``Ω_low`` of spec §4 item 7 on an unshifted ``M×N`` grid: boolean ``(M, N)``, true where
    ``u ∈ [0, fM) ∪ [(1-f)M, M)`` **and** ``v ∈ [0, fN) ∪ [(1-f)N, N)`` (``f = 1/8`` in the paper; the
    paper's visualisations use ``1/6`` in places). Bounds are compared as real numbers."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must lie in (0, 0.5], got {fraction}")
    m, n = int(grid[0]), int(grid[1])
    u = np.arange(m)
    v = np.arange(n)
    rows = (u < fraction * m) | (u >= (1 - fraction) * m)
    cols = (v < fraction * n) | (v >= (1 - fraction) * n)
    return np.outer(rows, cols)


def signed_frequencies(n: int) -> np.ndarray:
    """Signed integer frequency labels in ``(-n/2, n/2]``, in FFT order (``fftfreq(n)*n``, Nyquist positive)."""
    n = check_positive_int("n", n)
    f = np.arange(n)
    f = np.where(f > n // 2, f - n, f)
    return f.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Circulant matrices (spec §3.1-3.3)
# --------------------------------------------------------------------------------------------
def circulant_1d(c: np.ndarray, op: ConvOp = "conv") -> np.ndarray:
    """1-D circulant: ``conv``: ``C_ij = c[(i-j) mod n]`` (first column ``c``, S.16);
    ``corr``: ``C_ij = c[(j-i) mod n]`` (first row ``c``, Sedghi et al.; S.20)."""
    check_choice("op", op, ("conv", "corr"))
    c = np.asarray(c)
    if c.ndim != 1:
        raise ValueError(f"c must be a 1-D vector, got {describe(c)}")
    n = c.shape[0]
    i = np.arange(n)
    diff = (i[:, None] - i[None, :]) if op == "conv" else (i[None, :] - i[:, None])
    return c[diff % n]


def circulant_matrix(kernel: ArrayLike, op: ConvOp = "conv") -> np.ndarray:
    """Doubly block circulant matrix of a full-size kernel ``K (H, W)`` (spec §3.1-3.2, S.17, S.21).

    ``op="conv"``: ``circulant_matrix(K) @ vec(X) == vec(K ⊛ X)`` with
    ``(K ⊛ X)_ij = Σ_ab K_ab X_{(i-a),(j-b)}``; block ``(I, J)`` is ``circ(k_{(I-J) mod H})``.
    ``op="corr"``: ``vec(K ⋆ X)`` with ``(K ⋆ X)_ij = Σ_ab K_ab X_{(i+a),(j+b)}`` (PyTorch/Keras);
    it equals the transpose of the ``conv`` matrix (S.27).

    Built entry-wise from the definition (not from the FFT) so it is an independent route for tests.
    Returns a real ``(H*W, H*W)`` array (float64 for real input).
    """
    check_choice("op", op, ("conv", "corr"))
    check_ndim("kernel", kernel, (2,), "(H, W)")
    k = as_numpy(kernel)
    h, w = k.shape
    i, j = np.divmod(np.arange(h * w), w)
    sign = 1 if op == "conv" else -1
    di = (sign * (i[:, None] - i[None, :])) % h
    dj = (sign * (j[:, None] - j[None, :])) % w
    return k[di, dj]


def circulant_eigenvalues(kernel: ArrayLike, op: ConvOp = "conv") -> np.ndarray:
    """Eigenvalues of :func:`circulant_matrix` on the eigenvectors ``Q*[:, m]`` (spec §3.3, Eq. 6).

    ``conv``: ``n Q k = vec(fft2(K))``; ``corr``: its conjugate (S.28-S.29). complex128 ``(H*W,)``.
    """
    check_choice("op", op, ("conv", "corr"))
    check_ndim("kernel", kernel, (2,), "(H, W)")
    k = as_numpy(kernel)
    lam = np.fft.fft2(k.astype(np.float64) if k.dtype.kind != "c" else k).reshape(-1)
    return lam if op == "conv" else lam.conj()


def circulant_eigendecomposition(kernel: ArrayLike, op: ConvOp = "conv") -> tuple[np.ndarray, np.ndarray]:
    """``circ(k) = Q^H diag(λ) Q`` (spec Eq. 6): returns ``(λ, Q^H)``; eigenvectors are the columns of ``Q^H = Q*``.

    For a non-square kernel ``(H, W)`` the eigenvector matrix is ``(F_H ⊗ F_W)^*``.
    """
    check_ndim("kernel", kernel, (2,), "(H, W)")
    h, w = kernel.shape
    lam = circulant_eigenvalues(kernel, op)
    q = np.kron(dft_matrix_1d(h), dft_matrix_1d(w))
    return lam, q.conj()


def circular_conv2d(kernel: T, x: T, op: ConvOp = "conv") -> T:
    """FFT route for full-size circular convolution or correlation over the last two axes.

    ``kernel (..., H, W)`` and ``x (..., H, W)`` broadcast; returns the real result. ``conv`` gives
    ``K ⊛ X`` (multiplier ``fft2(K)``), ``corr`` gives ``K ⋆ X`` (multiplier ``conj(fft2(K))``).
    """
    check_choice("op", op, ("conv", "corr"))
    if is_tensor(x) and is_tensor(kernel):
        import torch

        kh = torch.fft.fft2(kernel)
        if op == "corr":
            kh = kh.conj()
        return torch.fft.ifft2(kh * torch.fft.fft2(x)).real
    if isinstance(x, np.ndarray) and isinstance(kernel, np.ndarray):
        khn = np.fft.fft2(kernel)
        if op == "corr":
            khn = khn.conj()
        return np.fft.ifft2(khn * np.fft.fft2(x)).real
    raise TypeError(
        f"kernel and x must both be numpy arrays or both torch tensors, got {describe(kernel)} and {describe(x)}"
    )


# --------------------------------------------------------------------------------------------
# Conv-layer multipliers and resampling rules (conv_bottleneck §1.2, §1.5; decoder_spectra §2)
# --------------------------------------------------------------------------------------------
def phase_ramp_angles(size: int, shift: int, sign: int = -1) -> np.ndarray:
    """Angles ``sign·2π (u·shift mod size)/size`` of the 1-D phase ramp ``e^{sign·2πi u shift/size}``,
    float64 ``(size,)``: the spectrum of a circular shift by ``shift`` (``sign=-1``: delay, the DFT's sign).
    The product is reduced modulo ``size`` before scaling so the phase stays exact on large grids."""
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign!r}")
    u = np.arange(size, dtype=np.float64)
    return sign * 2.0 * np.pi * ((u * shift) % size) / size


def phase_ramp(grid: int | Sequence[int], shift: int | Sequence[int], sign: int = -1) -> np.ndarray:
    """The separable 2-D phase ramp ``e^{sign·2πi(u s_h/H + v s_w/W)}`` on an ``H×W`` grid, complex128
    ``(H, W)`` (the multiplier of a circular shift by ``s``; conv_bottleneck C5a, decoder_spectra §2.2)."""
    h, w = _shape2(grid)
    sh, sw = as_pair("shift", shift)
    return np.exp(1j * phase_ramp_angles(h, sh, sign))[:, None] * np.exp(1j * phase_ramp_angles(w, sw, sign))[None, :]


def _torch_phase_ramp(size: int, shift: int, sign: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # The ramp as a tensor, built in float64 (float32 phases cap accuracy near 1e-6).
    import torch

    ang = torch.from_numpy(phase_ramp_angles(size, shift, sign)).to(device)
    return torch.polar(torch.ones_like(ang), ang).to(dtype)


@overload
def conv2d_transfer_matrices(
    weight: np.ndarray, grid: int | Sequence[int], padding: int | Sequence[int] = 0
) -> np.ndarray: ...
@overload
def conv2d_transfer_matrices(
    weight: torch.Tensor, grid: int | Sequence[int], padding: int | Sequence[int] = 0
) -> torch.Tensor: ...
def conv2d_transfer_matrices(
    weight: ArrayLike, grid: int | Sequence[int], padding: int | Sequence[int] = 0
) -> ArrayLike:
    """Per-frequency transfer matrices ``T(ω) ∈ C^{c_out×c_in}`` of a stride-1 PyTorch ``conv2d``
    with **circular** padding on an ``H×W`` grid (conv_bottleneck C5a; decoder_spectra Thm 3.2).

    ``weight (c_out, c_in, kh, kw)`` in PyTorch layout (a cross-correlation), ``grid = (H, W)`` the
    (padded-to) input size, ``padding = p`` the symmetric circular padding of
    ``nn.Conv2d(padding=p, padding_mode="circular")``. ``padding=0`` is the paper convention of
    one-sided end-wrap padding. Then ``fft2(y)[:, u, v] = T[u, v] @ fft2(x)[:, u, v]`` with

        ``T[u, v] = conj(fft2(W, s=(H, W)))[..., u, v] * exp(-2πi (u p_h / H + v p_w / W))``.

    Returns complex ``(H, W, c_out, c_in)`` (complex128 for float64 input), numpy or torch as given.
    Kernels larger than the grid are rejected (the operator would alias the kernel onto itself).
    """
    check_ndim("weight", weight, (4,), "(c_out, c_in, kh, kw)")
    import torch

    h, w = _shape2(tuple(grid) if not isinstance(grid, int | np.integer) else grid)
    kh, kw = weight.shape[-2], weight.shape[-1]
    if kh > h or kw > w:
        raise ValueError(f"weight kernel {kh}x{kw} is larger than the grid {h}x{w}")
    ph, pw = as_pair("padding", padding)
    was_numpy = isinstance(weight, np.ndarray)
    wt = torch.from_numpy(weight) if isinstance(weight, np.ndarray) else weight
    if wt.is_complex():
        raise ValueError(f"weight must be real, got complex dtype {wt.dtype}")
    if not wt.is_floating_point():
        wt = wt.to(torch.float64)
    spec = torch.fft.fft2(wt, s=(h, w)).conj().resolve_conj()  # (c_out, c_in, H, W)
    if ph or pw:
        spec = spec * (
            _torch_phase_ramp(h, ph, -1, spec.dtype, spec.device)[:, None]
            * _torch_phase_ramp(w, pw, -1, spec.dtype, spec.device)[None, :]
        )
    out = spec.permute(2, 3, 0, 1)
    return out.numpy() if was_numpy else out


@overload
def downsample_spectrum(zh: np.ndarray, stride: int | Sequence[int]) -> np.ndarray: ...
@overload
def downsample_spectrum(zh: torch.Tensor, stride: int | Sequence[int]) -> torch.Tensor: ...
def downsample_spectrum(zh: ArrayLike, stride: int | Sequence[int]) -> ArrayLike:
    """Spectrum of ``z[..., ::s, ::s]`` from the unnormalised spectrum ``ẑ`` of ``z`` (aliasing fold).

    ``(S_s z)^(ω') = s⁻² Σ_{a∈{0..s-1}²} ẑ(ω' + a n/s)`` (conv_bottleneck §1.5, check C14). For the
    unnormalised DFT the factor is ``1/(s_h s_w)``. ``zh (..., H, W)`` with ``s | H`` and ``s | W``.
    """
    check_ndim("zh", zh, range(2, 64), "(..., H, W)")
    sh, sw = as_pair("stride", stride)
    h, w = zh.shape[-2], zh.shape[-1]
    if h % sh or w % sw:
        raise ValueError(f"stride {(sh, sw)} must divide the grid {(h, w)}")
    lead = tuple(zh.shape[:-2])
    folded = zh.reshape(*lead, sh, h // sh, sw, w // sw)
    if is_tensor(folded):
        return folded.sum(dim=(-4, -2)) / (sh * sw)
    return folded.sum(axis=(-4, -2)) / (sh * sw)


@overload
def zero_insertion_spectrum(zh: np.ndarray, factor: int | Sequence[int]) -> np.ndarray: ...
@overload
def zero_insertion_spectrum(zh: torch.Tensor, factor: int | Sequence[int]) -> torch.Tensor: ...
def zero_insertion_spectrum(zh: ArrayLike, factor: int | Sequence[int]) -> ArrayLike:
    """Spectrum after zero-insertion upsampling by ``r``: the ``r×r`` tiling of ``ẑ``
    (decoder_spectra Thm 4.4, Eq. 11; ``up[..., ::r, ::r] = z``)."""
    check_ndim("zh", zh, range(2, 64), "(..., H, W)")
    rh, rw = as_pair("factor", factor)
    if is_tensor(zh):
        return zh.repeat(*([1] * (zh.ndim - 2)), rh, rw)
    return np.tile(zh, (*([1] * (zh.ndim - 2)), rh, rw))


def dirichlet_kernel(freqs: np.ndarray | int, length: int, period: int) -> np.ndarray:
    """``D_L(f; P) = Σ_{t=0}^{L-1} e^{-2πi f t/P}`` for integer ``f``: the unnormalised DFT of an ``L``-pixel
    box on a ``P``-grid (decoder_spectra §2.6 nearest upsampling; App. A.4 Lemma A.1 up to conjugation).
    complex128, the shape of ``freqs``.

    Closed form ``sin(Lπf/P)/sin(πf/P) · e^{-i(L−1)πf/P}`` with the ``0/0`` limit ``L`` at ``f ≡ 0 (mod P)``;
    ``f`` is reduced modulo ``P`` first (the sum is ``P``-periodic), which keeps the phase exact for large
    ``f``. The decoder paper's plus-sign sum ``Σ_t e^{+2πi f t/P}`` is ``conj(dirichlet_kernel(f, L, P))``.
    """
    f = np.mod(np.asarray(freqs, dtype=np.int64), int(period)).astype(np.float64)
    theta = np.pi * f / period
    den = np.sin(theta)
    safe = np.where(den == 0, 1.0, den)
    ratio = np.where(den == 0, float(length), np.sin(length * theta) / safe)
    return ratio * np.exp(-1j * (length - 1) * theta)


@overload
def nearest_upsample_spectrum(zh: np.ndarray, factor: int | Sequence[int]) -> np.ndarray: ...
@overload
def nearest_upsample_spectrum(zh: torch.Tensor, factor: int | Sequence[int]) -> torch.Tensor: ...
def nearest_upsample_spectrum(zh: ArrayLike, factor: int | Sequence[int]) -> ArrayLike:
    """Spectrum after nearest-neighbour upsampling by ``r`` (``F.interpolate(mode="nearest")``).

    ``H_uv = ẑ_{u mod H0, v mod W0} D_r(u) D_r(v)``, ``D_r(u) = Σ_{j<r} e^{-2πi u j/(r H0)}``
    (decoder_spectra §2.6). The DC replicas vanish exactly.
    """
    check_ndim("zh", zh, range(2, 64), "(..., H, W)")
    import torch

    rh, rw = as_pair("factor", factor)
    was_numpy = isinstance(zh, np.ndarray)
    zt = torch.from_numpy(np.asarray(zh)) if was_numpy else zh
    assert isinstance(zt, torch.Tensor)
    if not zt.is_complex():
        zt = zt.to(torch.complex128)
    tiled = zero_insertion_spectrum(zt, (rh, rw))
    h, w = tiled.shape[-2], tiled.shape[-1]
    dh = torch.from_numpy(dirichlet_kernel(np.arange(h), rh, h)).to(dtype=tiled.dtype, device=tiled.device)
    dw = torch.from_numpy(dirichlet_kernel(np.arange(w), rw, w)).to(dtype=tiled.dtype, device=tiled.device)
    out = tiled * dh[:, None] * dw[None, :]
    return out.numpy() if was_numpy else out


def as_numpy(x: ArrayLike) -> np.ndarray:
    """Detach a tensor to a numpy array (no copy for CPU tensors); pass numpy arrays through."""
    check_tensor_like("x", x)
    return x.detach().cpu().numpy() if is_tensor(x) else np.asarray(x)


# --------------------------------------------------------------------------------------------
# SVD phase convention
# --------------------------------------------------------------------------------------------
def svd_phase_fix(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one phase convention for singular vectors (plumbing of every SVD freqlens returns).

    Singular pairs ``(u_α, v_α)`` of ``A = U S Vᴴ`` are unique only up to a common unit factor ``c``
    (``u_α c, v_α c``). Each pair is multiplied by the ``c`` that makes the entry of ``u_α`` with the largest
    modulus (the first one within ``1e-9`` of the maximum) real and positive; for real matrices this is a
    joint sign flip. ``u (..., m, r)`` and ``v (..., n, r)`` hold the vectors as **columns** (pass
    ``vh.conj().swapaxes(-1, -2)`` for NumPy's ``vh``). Returns new arrays; ``U S Vᴴ`` is unchanged.
    """
    u = np.array(u, copy=True)
    v = np.array(v, copy=True)
    if u.ndim < 2 or v.ndim < 2 or u.shape[-1] != v.shape[-1]:
        raise ValueError(f"u and v must hold r singular vectors as columns, got shapes {u.shape} and {v.shape}")
    flat_u = u.reshape(-1, *u.shape[-2:])
    flat_v = v.reshape(-1, *v.shape[-2:])
    for b in range(flat_u.shape[0]):
        for a in range(flat_u.shape[-1]):
            mag = np.abs(flat_u[b, :, a])
            if mag.size == 0 or mag.max() == 0:
                continue
            i = int(np.flatnonzero(mag >= mag.max() - 1e-9)[0])
            if np.iscomplexobj(flat_u):
                factor = np.conj(flat_u[b, i, a]) / mag[i]
                flat_u[b, :, a] *= factor
                flat_v[b, :, a] *= factor
            elif flat_u[b, i, a] < 0:
                flat_u[b, :, a] *= -1
                flat_v[b, :, a] *= -1
    return flat_u.reshape(u.shape), flat_v.reshape(v.shape)
