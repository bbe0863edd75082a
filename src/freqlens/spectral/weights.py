"""Per-frequency singular values of conv layers and of whole models (conv_bottleneck §1.3, §1.5, §5a).

Per-layer math (this module's lower half) is kept apart from the model walker :func:`weight_spectra`, a thin
walker over the rule registry (:mod:`freqlens.spectral.rules`).

* A stride-1 layer with circular padding is block-diagonal in the unitary Fourier basis: its singular
  values are the union over ω of ``sv(T(ω))`` (C2), with ``T`` from
  :func:`freqlens.spectral.conv.module_transfer_matrices` (C5a).
* A stride-``s`` layer maps ``ẑ`` on the ``G``-grid to the ``G/s``-grid by the aliasing fold (C14), so its
  unitary operator is block-diagonal over **output** frequencies ``ω'`` with blocks
  ``B(ω') = (s_h s_w)^{-1/2} [T(ω' + a G/s)]_a ∈ C^{c_out × s_h s_w c_in}`` (C5b, :func:`stride_blocks`).
* A transposed conv (zero insertion by ``r`` then a true convolution on the output grid) is block-diagonal
  over **input** frequencies ``ν`` with blocks ``(r_h r_w)^{-1/2} [T(ν + a n)]_a`` stacked over rows
  (:func:`transposed_blocks`). Zero-insertion and nearest upsampling act per channel
  (:func:`upsampling_gains`).
* Zero padding ``p`` is "pad, circular rule on the ``(H+2p)×(W+2p)`` grid, crop": the padded-grid spectrum
  is exact for the uncropped circular operator, and only an upper bound (interlacing) for the cropped one.
  Such layers are flagged ``exact=False`` with a note.

Speed (issue 14; every route is exact up to rounding and tested against the dense/SVD route in float64):

* only the conjugate representatives ``m <= m̄`` are decomposed (real kernels: the blocks at ``-ω`` are the
  conjugates of those at ``ω`` up to a permutation of block rows/columns, C4); at the self-conjugate
  frequencies of a stride-1 layer the blocks are real and decomposed as real matrices;
* the multiplier is evaluated only where those blocks need it, from the kernel's non-zero taps, without the
  unit phases (they do not change singular values); a kernel with one non-zero tap (1x1 convs) and blocks
  that are the same at every frequency cost one SVD;
* the Gram route ``σ = sqrt(eigvalsh(B Bᴴ))`` on the smaller side, with an accuracy guard: small singular
  values lose relative accuracy there, so a block whose predicted error exceeds 1e-10 (float64) of the
  layer's largest singular value is decomposed again by SVD (:func:`_svdvals_at_representatives`);
* batched LAPACK calls over chunks of at most ``_CHUNK_BYTES`` of blocks (bounded memory, cache-sized).

Precision: float64 by default (agrees with the per-frequency SVD to 1e-10 of each layer's largest singular
value; measured 3e-13 on CIFAR ResNet-18). ``dtype=torch.float32`` computes the multipliers and
decompositions in single precision: measured within 3.2e-6 of each layer's largest singular value on CIFAR
ResNet-18 (``benchmarks/conv_spectra.py``; tests hold it to 1e-5); its Gram route is kept only for clearly
rectangular blocks and guarded at 1e-4.

Threads: ``workers = min(torch.get_num_threads(), usable CPUs)`` (a caller's ``torch.set_num_threads`` is
respected, never raised). During the decompositions torch and NumPy's OpenBLAS run one thread each and the
chunks of blocks are shared among ``workers`` Python threads (the LAPACK calls, the ctypes ``herk`` of
:mod:`freqlens.spectral._blas` and torch release the GIL), so at most ``workers`` threads compute: no
oversubscription, and results bitwise independent of the thread count (:func:`freqlens.spectral._blas.lapack_threads`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from .._validation import check_model_usable
from ..fourier import (
    as_pair,
    conjugate_index,
    conjugate_representatives,
    dirichlet_kernel,
    self_conjugate_mask,
    signed_frequencies,
    spatial_grid,
)
from ..hooks import LayerForwardError, capture_layers, evaluation_mode, select_layers, trace_layers
from ._blas import gram_upper, lapack_threads, map_in_threads
from .conv import ConvGeometry, conv_geometry, dense_kernel, module_transfer_matrices, spectrum_grid_problem

__all__ = [
    "LayerSpectrum",
    "WeightSpectra",
    "conjugate_representatives",
    "layer_names_argument",
    "layer_operator_blocks",
    "layer_spectrum",
    "singular_values_by_frequency",
    "stride_blocks",
    "transposed_blocks",
    "upsampling_gains",
    "weight_spectra",
]


# --------------------------------------------------------------------------------------------
# Per-layer math
# --------------------------------------------------------------------------------------------
def stride_blocks(transfer: torch.Tensor, stride: int | Sequence[int], name: str = "transfer") -> torch.Tensor:
    """Aliasing blocks of a stride-``s`` layer (conv_bottleneck §1.5, C5b).

    ``transfer (G_h, G_w, c_out, c_in)``: the stride-1 multiplier on the grid the stride acts on. Returns
    ``B (G_h/s_h, G_w/s_w, c_out, s_h s_w c_in)``, ``B(ω') = (s_h s_w)^{-1/2} [T(ω' + a G/s)]_a`` with the
    aliases ``a`` in row-major order along the columns; the unitary operator of "conv then keep every
    ``s``-th pixel" is ``blockdiag_ω' B(ω')``. Stride 1 returns ``transfer`` unchanged.
    """
    sh, sw = as_pair("stride", stride, minimum=1)
    if transfer.ndim != 4:
        raise ValueError(f"{name} must have shape (G_h, G_w, c_out, c_in), got {tuple(transfer.shape)}")
    gh, gw, co, ci = transfer.shape
    if gh % sh or gw % sw:
        raise ValueError(f"{name}: stride {(sh, sw)} does not divide the grid {(gh, gw)} it acts on")
    if (sh, sw) == (1, 1):
        return transfer
    oh, ow = gh // sh, gw // sw
    blocks = transfer.reshape(sh, oh, sw, ow, co, ci).permute(1, 3, 4, 0, 2, 5)
    return blocks.reshape(oh, ow, co, sh * sw * ci) / math.sqrt(sh * sw)


def transposed_blocks(transfer: torch.Tensor, factor: int | Sequence[int], name: str = "transfer") -> torch.Tensor:
    """Blocks of "zero insertion by ``r`` then convolution with multiplier ``T``" per **input** frequency.

    ``transfer (M, N, c_out, c_in)`` on the output grid ``M = r_h h``, ``N = r_w w``. Since zero insertion
    tiles the spectrum (decoder_spectra Thm 4.4), the output at ``ν + a n`` only sees ``x̂(ν)``: the unitary
    operator is ``blockdiag_ν (r_h r_w)^{-1/2} [T(ν + a n)]_a`` (aliases stacked along rows), returned as
    ``(h, w, r_h r_w c_out, c_in)``.
    """
    rh, rw = as_pair("factor", factor, minimum=1)
    if transfer.ndim != 4:
        raise ValueError(f"{name} must have shape (M, N, c_out, c_in), got {tuple(transfer.shape)}")
    m, n, co, ci = transfer.shape
    if m % rh or n % rw:
        raise ValueError(f"{name}: upsampling factor {(rh, rw)} does not divide the output grid {(m, n)}")
    h, w = m // rh, n // rw
    blocks = transfer.reshape(rh, h, rw, w, co, ci).permute(1, 3, 0, 2, 4, 5)
    return blocks.reshape(h, w, rh * rw * co, ci) / math.sqrt(rh * rw)


def upsampling_gains(
    input_size: Sequence[int], factor: int | Sequence[int], mode: Literal["zeros", "nearest"]
) -> np.ndarray:
    """Per-input-frequency gain of a channel-wise upsampling by ``r`` (unitary bases): float64 ``(h, w)``.

    Zero insertion tiles the spectrum (gain 1: an isometry). Nearest upsampling multiplies the tiled
    spectrum by ``D_r(u) D_r(v)`` (decoder_spectra §2.6), so the gain at ``ν`` is
    ``sqrt(Σ_a |D(ν + a n)|²) / sqrt(r_h r_w)``. Each channel contributes one singular value per ``ν``.
    """
    h, w = as_pair("input_size", input_size, minimum=1)
    rh, rw = as_pair("factor", factor, minimum=1)
    if mode == "zeros":
        return np.ones((h, w))
    if mode != "nearest":
        raise ValueError(f"mode must be 'zeros' or 'nearest', got {mode!r}")

    def dirichlet_power(size: int, r: int) -> np.ndarray:
        d = dirichlet_kernel(np.arange(size * r), r, size * r)
        return (np.abs(d) ** 2).reshape(r, size).sum(axis=0)  # Σ over aliases ν + a n

    return np.sqrt(np.outer(dirichlet_power(h, rh), dirichlet_power(w, rw)) / (rh * rw))


# Bytes of blocks per batched LAPACK call: a chunk's blocks and their Grams fit in the 32 MiB L3 of the
# benchmark machine and peak memory stays bounded on large layers (the value is not tuned by measurement);
# a block larger than this is a call of its own.
_CHUNK_BYTES = 8 * 2**20
_MIN_TASKS = 32  # chunks per layer at least (work for every worker thread)

# Gram route (eigvalsh of the smaller Gram, then sqrt) when the block's aspect max/min reaches this. Measured
# on the benchmark machine (OpenBLAS): the Gram route beats the SVD from square blocks on in float64; in
# float32 its accuracy is only kept on clearly rectangular blocks, so square blocks go to the SVD.
_GRAM_MIN_ASPECT = {torch.float64: 1.0, torch.float32: 1.5}
# Guard of the Gram route: a block keeps its Gram values only when their predicted absolute error is at most
# this times the layer's largest singular value; otherwise the block is decomposed again by SVD.
_GUARD_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _gram_error_scale(rows: int, cols: int, dtype: torch.dtype) -> float:
    """``c(n, K) ε``: the Gram route's eigenvalue error model ``|Δλ| ≤ c ε σ_max²`` of one block (plumbing).

    Forming ``G = B Bᴴ`` and ``eigvalsh(G)`` are backward stable, so ``|Δλ_i| ≲ c ε ‖B‖₂²`` (Weyl). Observed
    on ill-conditioned blocks (σ from 1 to 1e-9, n ≤ 512, K ≤ 1024): ``c ≤ 20``; the model takes
    ``c = 2 (√n + √K)``, about 5x above the largest observed value.
    """
    return 2.0 * (math.sqrt(rows) + math.sqrt(cols)) * float(torch.finfo(dtype).eps)


def _lapack_svdvals(blocks: torch.Tensor) -> torch.Tensor:
    """Descending singular values of a batch ``(B, m, k)``: ``gesdd`` without vectors (plumbing).

    Backend (:func:`_numpy_lapack`): float64 on CPU through NumPy (OpenBLAS), measured 1.6x faster than
    torch's MKL ``svdvals`` on the benchmark machine (AMD EPYC); float32 and other devices through torch
    (MKL's single precision is about 2x its double, OpenBLAS's is not faster than its double).
    """
    if _numpy_lapack(blocks):
        return torch.from_numpy(np.linalg.svd(blocks.numpy(), compute_uv=False))
    return torch.linalg.svdvals(blocks)


def _gram_eigenvalues(blocks: torch.Tensor) -> torch.Tensor:
    """Descending eigenvalues of the smaller Gram ``B Bᴴ`` (``m ≤ k``) or ``Bᴴ B`` of a batch (plumbing):
    ``σ_i² = λ_i`` (the singular values of ``B`` are the square roots).

    float64 on CPU: the Gram by BLAS ``herk``/``syrk`` (half a GEMM, measured 2x NumPy's ``B @ B.conj().T``;
    :func:`freqlens.spectral._blas.gram_upper`, GIL released) and NumPy's ``eigvalsh`` on its upper triangle.
    """
    if _numpy_lapack(blocks):
        grams = gram_upper(blocks.numpy())
        return torch.from_numpy(np.linalg.eigvalsh(grams, UPLO="U")[..., ::-1].copy())
    bh = blocks.mH
    gram_t = blocks @ bh if blocks.shape[-2] <= blocks.shape[-1] else bh @ blocks
    return torch.linalg.eigvalsh(gram_t).flip(-1)


def _numpy_lapack(blocks: torch.Tensor) -> bool:
    """Whether a batch goes to NumPy's LAPACK (float64 on CPU) rather than torch's (plumbing, see above)."""
    return blocks.device.type == "cpu" and blocks.dtype in (torch.float64, torch.complex128)


def _uses_gram(rows: int, cols: int, dtype: torch.dtype) -> bool:
    small, large = min(rows, cols), max(rows, cols)
    return small > 1 and large >= _GRAM_MIN_ASPECT[dtype] * small


def _svdvals_at_representatives(
    grid: tuple[int, int],
    block_shape: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
    blocks_at: Callable[[torch.Tensor], torch.Tensor],
    conjugate_symmetric: bool = True,
    real_at_self_conjugate: bool = False,
) -> torch.Tensor:
    """Singular values ``(grid_h, grid_w, r)``, descending, of the blocks ``blocks_at(flat indices)``
    (``(len, rows, cols)``, ``r = min(rows, cols)``), using every structure there is (conv_bottleneck C4):

    * ``conjugate_symmetric``: only the representatives ``m <= m̄`` are decomposed, their values copied to
      the partner ``m̄`` (blocks of a real layer at ``-ω`` are conjugates up to a permutation, C4);
    * ``real_at_self_conjugate``: at ``2ω ≡ 0`` the caller's blocks are real (phase-free multipliers of a real
      kernel), decomposed as real matrices;
    * the Gram route (:func:`_uses_gram`): ``σ_i = sqrt(λ_i(B Bᴴ))``. Exact in exact arithmetic; in floating
      point ``|Δλ| ≤ δ = c ε σ_max(B)²`` (:func:`_gram_error_scale`) gives ``|Δσ_i| ≤ δ / (σ_i + √δ)``, so small
      singular values lose relative accuracy. Guard: a block whose predicted error exceeds
      ``_GUARD_TOL[dtype]`` times the layer's largest singular value is decomposed again by SVD (float64:
      1e-10, so float64 results agree with the SVD to 1e-10 of the layer's largest value);
    * batched LAPACK calls over chunks of ``_CHUNK_BYTES`` of blocks.
    """
    rows, cols = block_shape
    rank = min(rows, cols)
    n = grid[0] * grid[1]
    out = torch.zeros(n, rank, dtype=dtype, device=device)
    if conjugate_symmetric:
        reps_np = conjugate_representatives(grid)
        partner = torch.from_numpy(conjugate_index(grid)[reps_np]).to(device)
        self_conj = self_conjugate_mask(grid).reshape(-1)[reps_np]
    else:
        reps_np = np.arange(n)
        partner = torch.from_numpy(reps_np).to(device)
        self_conj = np.zeros(n, dtype=bool)
    real_mask = self_conj if real_at_self_conjugate else np.zeros_like(self_conj)
    groups = [(torch.from_numpy(reps_np[real_mask]).to(device), True)]
    groups.append((torch.from_numpy(reps_np[~real_mask]).to(device), False))
    element = 2 * torch.finfo(dtype).bits // 8
    gram = _uses_gram(rows, cols, dtype)
    scale = _gram_error_scale(min(rows, cols), max(rows, cols), dtype)

    def fetch(idx: torch.Tensor, real: bool) -> torch.Tensor:
        blocks = blocks_at(idx)
        return blocks.real.contiguous() if real and blocks.is_complex() else blocks.contiguous()

    def decompose(task: tuple[torch.Tensor, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Singular values of one chunk and each block's worst predicted error (0 for the SVD route)."""
        blocks = fetch(*task)
        if not gram:
            sv = _lapack_svdvals(blocks).to(dtype)
            return sv, sv.new_zeros(sv.shape[0])
        lam = _gram_eigenvalues(blocks).to(dtype).clamp_min(0)
        sv = lam.sqrt()
        delta = scale * lam[:, :1]
        return sv, (delta / (sv + delta.sqrt())).amax(dim=-1)

    def redo_by_svd(task: tuple[torch.Tensor, bool]) -> torch.Tensor:
        return _lapack_svdvals(fetch(*task)).to(dtype)

    # Chunks of at most _CHUNK_BYTES, and at least _MIN_TASKS of them per group so that the worker threads
    # share even a small layer; the split never depends on the worker count (bitwise-equal results).
    by_bytes = max(1, _CHUNK_BYTES // max(1, rows * cols * element))
    tasks = []
    for reps, real in groups:
        chunk = max(1, min(by_bytes, -(-reps.numel() // _MIN_TASKS)))
        tasks += [(reps[start : start + chunk], real) for start in range(0, reps.numel(), chunk)]
    with lapack_threads(device) as workers:
        results = map_in_threads(workers, decompose, tasks)
        for (idx, _), (sv, _) in zip(tasks, results):
            out[idx] = sv
        if gram:
            limit = _GUARD_TOL[dtype] * float(out.max())
            retry = []
            for (idx, real), (_, worst) in zip(tasks, results):
                failed = idx[worst > limit]
                retry += [(failed[start : start + by_bytes], real) for start in range(0, failed.numel(), by_bytes)]
            for (idx, _), sv in zip(retry, map_in_threads(workers, redo_by_svd, retry)):
                out[idx] = sv
    reps_t = torch.from_numpy(reps_np).to(device)
    out[partner] = out[reps_t]
    return out.reshape(grid[0], grid[1], rank)


def singular_values_by_frequency(blocks: torch.Tensor, conjugate_symmetric: bool = True) -> torch.Tensor:
    """Singular values of every per-frequency block, descending: ``(F_h, F_w, r)`` real, ``r = min(rows, cols)``.

    ``blocks (F_h, F_w, rows, cols)``. With ``conjugate_symmetric`` (valid for the blocks of a real layer:
    :func:`stride_blocks`, :func:`transposed_blocks` and plain multipliers all satisfy it) only one
    frequency per conjugate pair is decomposed and the result is copied to its partner (C4). Blocks that are
    the same at every frequency (a frequency-independent layer) cost one decomposition. Routes and their
    accuracy: :func:`_svdvals_at_representatives`.
    """
    if blocks.ndim != 4:
        raise ValueError(f"blocks must have shape (F_h, F_w, rows, cols), got {tuple(blocks.shape)}")
    fh, fw, rows, cols = blocks.shape
    flat = blocks.reshape(fh * fw, rows, cols)
    real_dtype = flat.real.dtype if flat.is_complex() else flat.dtype
    if real_dtype not in _GUARD_TOL:
        flat = flat.to(torch.complex128 if flat.is_complex() else torch.float64)
        real_dtype = torch.float64
    if torch.equal(flat, flat[:1].expand_as(flat)):
        one = _svdvals_at_representatives((1, 1), (rows, cols), real_dtype, flat.device, lambda idx: flat[idx])
        return one.expand(fh, fw, min(rows, cols))
    return _svdvals_at_representatives(
        (fh, fw), (rows, cols), real_dtype, flat.device, lambda idx: flat.index_select(0, idx), conjugate_symmetric
    )


@dataclass(frozen=True)
class _KernelTaps:
    """The non-zero spatial taps ``q`` of a dense kernel and their ``(c_out, c_in)`` matrices (plumbing)."""

    offsets: np.ndarray  # (taps, 2) int64
    matrices: torch.Tensor  # (taps, c_out * c_in) real
    out_channels: int
    in_channels: int

    @classmethod
    def of(cls, kernel: torch.Tensor) -> _KernelTaps:
        co, ci = kernel.shape[:2]
        live = kernel.ne(0).flatten(0, 1).any(dim=0)  # (kh, kw): a zero tap (dilation, groups) costs nothing
        offsets = live.nonzero().cpu().numpy().astype(np.int64)
        picked = kernel[:, :, offsets[:, 0], offsets[:, 1]] if len(offsets) else kernel.new_zeros(co, ci, 0)
        return cls(offsets, picked.permute(2, 0, 1).reshape(len(offsets), co * ci).contiguous(), co, ci)

    def transfer_at(self, grid: tuple[int, int], u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Phase-free multipliers ``T₀(u, v) = Σ_q W_q e^{-2πi(u q_h/G_h + v q_w/G_w)}`` at the listed
        frequencies: ``(len, c_out, c_in)`` complex. ``T₀`` is ``fft2`` of the kernel: the layer's ``T(ω)`` of
        C5a is ``conj(T₀(ω))`` times a unit phase, and neither changes singular values (conv_bottleneck C5a)."""
        gh, gw = grid
        un, vn = u.cpu().numpy(), v.cpu().numpy()
        # exact integer phases k = u q mod G, then the angle (keeps float64 phases at rounding level)
        turns = (np.outer(un, self.offsets[:, 0]) % gh) / gh + (np.outer(vn, self.offsets[:, 1]) % gw) / gw
        angle = torch.from_numpy(-2 * np.pi * turns).to(device=self.matrices.device, dtype=self.matrices.dtype)
        real = torch.cos(angle) @ self.matrices
        imag = torch.sin(angle) @ self.matrices
        return torch.complex(real, imag).reshape(-1, self.out_channels, self.in_channels)


def _layer_singular_values(
    kernel: torch.Tensor, grid: tuple[int, int], stride: tuple[int, int], transposed: bool
) -> torch.Tensor:
    """Per-frequency singular values of a (strided / transposed) conv from its dense kernel (C5a, C5b, §5a.2).

    ``grid``: the grid the stride-1 multiplier lives on (input or padded grid of a conv; output grid of a
    transposed conv). Conv: blocks ``(s_h s_w)^{-1/2} [T₀(ω' + a G/s)]_a`` (aliases along columns) on the
    ``G/s`` grid; transposed: the same aliases stacked along rows on the input grid ``G/r``. The phase-free
    ``T₀`` (:meth:`_KernelTaps.transfer_at`) is evaluated only at the frequencies the representatives need.
    A kernel with one non-zero tap has the same singular values at every frequency (``B Bᴴ = W Wᴴ`` for a
    conv, ``Bᴴ B = Wᵀᴴ Wᵀ`` for a transposed conv): one SVD, padded with zeros to the block rank.
    """
    taps = _KernelTaps.of(kernel)
    co, ci = taps.out_channels, taps.in_channels
    sh, sw = stride
    fold = sh * sw
    out_grid = (grid[0] // sh, grid[1] // sw)
    rows, cols = (fold * co, ci) if transposed else (co, fold * ci)
    rank = min(rows, cols)
    dtype = kernel.dtype
    if len(taps.offsets) <= 1:
        matrix = taps.matrices.reshape(-1, co, ci)
        if len(taps.offsets):
            with lapack_threads(kernel.device):  # the same single-threaded call as every other block
                sv0 = _lapack_svdvals(matrix).to(dtype)[0]
        else:
            sv0 = kernel.new_zeros(min(co, ci))
        sv0 = torch.cat([sv0, sv0.new_zeros(rank - sv0.numel())])
        return sv0.expand(out_grid[0], out_grid[1], rank)
    ah = torch.arange(sh).repeat_interleave(sw)  # aliases a, row-major
    aw = torch.arange(sw).repeat(sh)

    def blocks_at(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.cpu()
        u = (idx // out_grid[1])[:, None] + ah[None, :] * out_grid[0]  # (R, fold)
        v = (idx % out_grid[1])[:, None] + aw[None, :] * out_grid[1]
        t = taps.transfer_at(grid, u.reshape(-1), v.reshape(-1)).reshape(-1, fold, co, ci)
        if fold == 1:
            return t[:, 0]
        if transposed:
            return t.reshape(-1, fold * co, ci) / math.sqrt(fold)
        return t.permute(0, 2, 1, 3).reshape(-1, co, fold * ci) / math.sqrt(fold)

    return _svdvals_at_representatives(
        out_grid, (rows, cols), dtype, kernel.device, blocks_at, real_at_self_conjugate=fold == 1
    )


# --------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpectrum:
    """Per-frequency singular values of one layer's linear operator (unitary Fourier bases).

    Attributes:
        name: qualified module name.
        kind: ``"conv"`` or ``"conv_transpose"``; ``"conv1d"`` / ``"conv_transpose1d"`` for 1-D layers (on the
            ``1×L`` grid, :func:`freqlens.fourier.spatial_grid`); a registered rule's own kind.
        input_size / output_size: spatial sizes seen in the traced forward pass (``(1, L)`` for 1-D layers).
        grid: the frequency grid the values are labelled on: the **output** grid of a (strided) conv
            (padded and strided for zero padding), the **input** grid of a transposed conv.
        singular_values: float64 ``(grid_h, grid_w, r)``, descending along the last axis.
        exact: ``True`` when the union of these values is exactly the spectrum of the layer's operator
            (circular padding, no crop); ``False`` when they describe the uncropped circular operator on
            the padded grid (zero padding, 'valid' convolutions); ``note`` says which.
        operator: a short label of the operator these values describe (``"circular: exact"``,
            ``"zero padding: circulant embedding, upper bound"``, ...).
        operator_norm_sq: ``‖MW‖_F² = Σ s²`` (C3).
    """

    name: str
    kind: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    grid: tuple[int, int]
    stride: tuple[int, int]
    in_channels: int
    out_channels: int
    singular_values: np.ndarray
    exact: bool
    note: str = ""
    operator: str = ""

    @property
    def operator_norm_sq(self) -> float:
        """``Σ σ²`` over all frequencies: the squared Frobenius norm of the layer operator (conv_bottleneck C3)."""
        return float((self.singular_values**2).sum())

    @property
    def frequencies(self) -> np.ndarray:
        """Signed integer labels ``(grid_h, grid_w, 2)`` of every frequency, in ``(-n/2, n/2]``."""
        kh = signed_frequencies(self.grid[0])
        kw = signed_frequencies(self.grid[1])
        return np.stack(np.meshgrid(kh, kw, indexing="ij"), axis=-1)

    @property
    def self_conjugate(self) -> np.ndarray:
        """Boolean ``(grid_h, grid_w)``: ``2ω ≡ 0`` (DC and Nyquist)."""
        return self_conjugate_mask(self.grid)


def _module_geometry_check(module: nn.Module, name: str, input_size: tuple[int, int]) -> ConvGeometry:
    """Validate everything that can fail before the FFTs/SVDs (:func:`spectrum_grid_problem`)."""
    geom = conv_geometry(module, name)
    problem = spectrum_grid_problem(geom, input_size)
    if problem is not None:
        raise ValueError(problem)
    return geom


def layer_operator_blocks(
    module: nn.Module, input_size: Sequence[int], name: str = "", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The per-frequency blocks of the layer's operator (unitary bases): stride-1 ``T``, aliasing blocks
    (stride ``s``, C5b) or transposed blocks, as ``(F_h, F_w, rows, cols)`` complex. Small layers only:
    :func:`layer_spectrum` never materialises all strided blocks."""
    size = as_pair("input_size", input_size, minimum=1)
    geom = _module_geometry_check(module, name, size)
    transfer = module_transfer_matrices(module, size, name=geom.name, dtype=dtype)
    if geom.transposed:
        return transposed_blocks(transfer, geom.stride, name=geom.name)
    return stride_blocks(transfer, geom.stride, name=geom.name)


def layer_spectrum(
    module: nn.Module,
    input_size: Sequence[int],
    name: str = "",
    output_size: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> LayerSpectrum:
    """Per-frequency singular values of one ``nn.Conv2d`` / ``nn.ConvTranspose2d`` (spec §1.3, §1.5, §5a.1-2).

    ``input_size = (H, W)``; ``output_size`` (from a traced forward pass, optional) decides whether the
    layer crops (then ``exact=False``). Raises ``TypeError`` for other modules and ``ValueError`` (naming
    the layer) for a kernel larger than the grid, a stride that does not divide the grid, or a padding
    mode without an exact rule, before any FFT.
    """
    size = as_pair("input_size", input_size, minimum=1)
    geom = _module_geometry_check(module, name, size)
    label = geom.name
    if geom.transposed:
        grid = size
        full_out = (geom.stride[0] * size[0], geom.stride[1] * size[1])
        pad_grid = full_out
    else:
        pad_grid = size if geom.circular else (size[0] + 2 * geom.padding[0], size[1] + 2 * geom.padding[1])
        grid = (pad_grid[0] // geom.stride[0], pad_grid[1] // geom.stride[1])
        full_out = grid
    out_size = tuple(int(s) for s in output_size) if output_size is not None else full_out
    with torch.no_grad():
        # pad_grid: where the stride-1 multiplier lives (padded or input grid; output grid of a transposed conv)
        kernel = dense_kernel(module, label, dtype)
        sv = _layer_singular_values(kernel, pad_grid, geom.stride, geom.transposed)
    exact = tuple(out_size) == tuple(full_out) and (geom.transposed or geom.circular)
    if geom.transposed:
        note = (
            "circular transposed conv (zero insertion then true convolution); PyTorch's non-circular op "
            "differs near the edges"
        )
        operator = "transposed conv: circular model, PyTorch's edges differ"
        exact = False
    elif exact:
        note = "circular padding: exact per-frequency spectrum"
        operator = "circular: exact"
    elif not geom.circular:
        operator = "zero padding: circulant embedding, upper bound"
        note = (
            f"zero padding {geom.padding}: spectrum of the circular operator on the padded "
            f"{size[0] + 2 * geom.padding[0]}x{size[1] + 2 * geom.padding[1]} grid before the crop "
            "(an upper bound, by interlacing, on the cropped operator's singular values)"
        )
    else:
        note = f"output {out_size} is a crop of the circular operator's output {full_out}: approximation"
        operator = "crop of the circular operator: approximation"
    return LayerSpectrum(
        name=label,
        kind="conv_transpose" if geom.transposed else "conv",
        input_size=size,
        output_size=(int(out_size[0]), int(out_size[1])),
        grid=grid,
        stride=geom.stride,
        in_channels=geom.in_channels,
        out_channels=geom.out_channels,
        singular_values=sv.detach().cpu().numpy().astype(np.float64, copy=True),
        exact=exact,
        note=note,
        operator=operator,
    )


# --------------------------------------------------------------------------------------------
# User-facing: a whole model
# --------------------------------------------------------------------------------------------
@dataclass
class WeightSpectra:
    """Per-frequency singular values of every conv layer of a model, in call order (spec §5a)."""

    layers: list[LayerSpectrum] = field(default_factory=list)
    #: ``(layer, reason)`` for each layer whose forward could not be verified against its rule (no numbers).
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: int | str) -> LayerSpectrum:
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer {key!r}; layers are {[lay.name for lay in self.layers]}")
        return self.layers[key]

    @property
    def names(self) -> list[str]:
        """Layer names in call order (plumbing)."""
        return [layer.name for layer in self.layers]

    def table(self) -> dict[str, np.ndarray]:
        """A tidy table, one row per (layer, frequency, index): columns ``layer`` (str), ``layer_index``,
        ``k``, ``l`` (signed frequency labels on the layer's grid), ``index`` (0 = largest), ``singular_value``
        and ``self_conjugate``."""
        cols: dict[str, list[np.ndarray]] = {
            k: [] for k in ("layer", "layer_index", "k", "l", "index", "singular_value", "self_conjugate")
        }
        for li, layer in enumerate(self.layers):
            sv = layer.singular_values
            r = sv.shape[-1]
            freqs = layer.frequencies
            kk = np.broadcast_to(freqs[..., 0][..., None], sv.shape).reshape(-1)
            ll = np.broadcast_to(freqs[..., 1][..., None], sv.shape).reshape(-1)
            sc = np.broadcast_to(layer.self_conjugate[..., None], sv.shape).reshape(-1)
            idx = np.broadcast_to(np.arange(r), sv.shape).reshape(-1)
            cols["layer"].append(np.full(sv.size, layer.name, dtype=object))
            cols["layer_index"].append(np.full(sv.size, li, dtype=np.int64))
            cols["k"].append(kk.astype(np.int64))
            cols["l"].append(ll.astype(np.int64))
            cols["index"].append(idx.astype(np.int64))
            cols["singular_value"].append(sv.reshape(-1))
            cols["self_conjugate"].append(sc.astype(bool))
        out = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
        out["layer"] = out["layer"].astype(str)
        return out


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence | torch.Size):
        raise TypeError(
            f"input_shape must be a tuple (C, H, W), (N, C, H, W) or, for 1-D models, (C, L) of ints, "
            f"got {input_shape!r}"
        )
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in input_shape):
        raise TypeError(f"input_shape must hold ints, got {input_shape!r}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) in (2, 3):  # (C, L) of a 1-D model, (C, H, W): one sample
        shape = (1, *shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (C, H, W), (N, C, H, W) or, for 1-D models, (C, L) with positive sizes, "
            f"got {input_shape!r}"
        )
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(shape, dtype=dtype, device=device)


def _record_calls(
    model: nn.Module, chosen: Sequence[tuple[str, nn.Module]], example: torch.Tensor
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """One forward pass recording ``(name, input (C, *spatial), output spatial)`` of every call of the chosen
    layers with as many spatial axes as their rule describes (``(C, H, W)`` maps, ``(C, L)`` signals).

    The shapes come from hooks on the chosen layers themselves (so parametrized convs, which are not leaf
    modules, are seen); :func:`trace_layers` runs the pass so that a failure names the failing layer.
    """
    from .rules import rule_for

    calls: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def record(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        dims = tuple(2 + d for d in rule_for(module)[1].spatial_dims)
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].ndim in dims and output.ndim == inputs[0].ndim:
            entry = (name, tuple(int(v) for v in inputs[0].shape[1:]), tuple(int(v) for v in output.shape[2:]))
            if entry not in calls:
                calls.append(entry)

    with capture_layers(chosen, record):
        trace_layers(model, example)
    return calls


def layer_names_argument(layers: Sequence[str] | str | None) -> list[str] | None:
    """``layers=`` as a list of names: one str is one name (never iterated per character; plumbing)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        return [layers]
    names = list(layers)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"layers must be layer names (str), got {bad[:3]!r}")
    return names


def weight_spectra(
    model: nn.Module,
    input_shape: Sequence[int],
    layers: Sequence[str] | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> WeightSpectra:
    """Per-frequency singular values of every layer with a weight rule in ``model`` (spec §5a): by default
    ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Conv1d`` and any type added with
    :func:`freqlens.spectral.register_rule`.

    A thin walker over the rule registry (:mod:`freqlens.spectral.rules`). One forward pass on zeros of
    ``input_shape`` (``(C, H, W)``; ``(C, L)`` for a model of 1-D signals, whose layers are labelled on the
    ``1×L`` grid, :func:`freqlens.fourier.spatial_grid`; ints) records each layer's input and output size
    (forward hooks; a layer called several times is listed once per distinct input size), then each layer's
    spectrum is computed by
    its rule in ``dtype`` (float64 default; float32 accuracy and the thread policy: module docstring).
    Repeated calls of a module with the same input size share one spectrum. Everything runs in eval mode
    (parametrizations such as ``spectral_norm`` are read without advancing) and the model is left exactly as found.

    ``layers``: qualified names (one str is one name) to restrict to; a name without a weight rule raises
    ``TypeError``, an unknown name ``ValueError``. A failing forward raises
    :class:`freqlens.hooks.LayerForwardError` naming the layer; NaN/Inf/meta weights are refused first. All
    layers are validated (kernel vs grid, strides dividing the grid) before any spectrum is computed. A layer
    whose ``forward`` overrides its registered type and does not reproduce the rule on a float64 probe is
    not computed: it is listed in :attr:`WeightSpectra.skipped` with the reason.
    """
    from .rules import registered_rules, rule_for, verify_forward

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(dtype, torch.dtype) or dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    names = layer_names_argument(layers)
    example = _example_input(model, input_shape)
    check_model_usable("model", model)
    weight_types = tuple(t for t, r in registered_rules().items() if r.has_weights)
    chosen = select_layers(model, names=names, types=weight_types)
    if not chosen:
        raise ValueError(
            f"model {type(model).__name__} has no conv layer with a weight rule (nn.Conv2d, nn.ConvTranspose2d, "
            "nn.Conv1d, nn.ConvTranspose1d or registered)"
        )
    wanted = {name for name, _ in chosen}
    modules = dict(model.named_modules())
    result = WeightSpectra()
    with evaluation_mode(model), torch.no_grad():
        try:
            calls = _record_calls(model, chosen, example)
        except LayerForwardError as exc:
            if example.ndim != 3:
                raise
            raise ValueError(
                f"input_shape {tuple(input_shape)} was read as (C, L) of a model of 1-D signals and its forward "
                f"pass failed ({exc}); a 2-D model needs (C, H, W)"
            ) from exc
        missing = wanted - {c[0] for c in calls}
        if missing:
            raise ValueError(
                f"layers {sorted(missing)} were not called in the forward pass of input shape {input_shape} "
                "(or only on inputs with another number of spatial axes than their rule describes)"
            )
        checked = []
        for name, shape, out in calls:  # validate everything before the first SVD
            rule = rule_for(modules[name])[1]
            form, reason = verify_forward(modules[name], shape, linear_only=True)
            if form is None:  # an unverified forward is a marked gap, whatever its attributes say
                result.skipped.append((name, reason))
                continue
            grid = spatial_grid("input_size", shape[1:])  # (L,) of a 1-D layer is the 1xL grid
            rule.check_spectrum_geometry(modules[name], name, grid)
            checked.append((name, grid, spatial_grid("output_size", out), rule))
        for name, grid, out_grid, rule in checked:
            result.layers.append(rule.layer_spectrum(modules[name], grid, name, out_grid, dtype))
    return result
