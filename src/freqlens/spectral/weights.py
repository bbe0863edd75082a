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

Speed: real kernels give ``T(-ω) = conj(T(ω))`` (C4), and the blocks at ``-ω'`` are the conjugates of those
at ``ω'`` up to a permutation of block rows/columns, so only one frequency per conjugate pair is
decomposed (batched ``torch.linalg.svdvals``, in chunks of bounded memory). A 1×1 kernel has the same
spectrum at every frequency (up to a unit phase), so it costs one SVD.
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
)
from ..hooks import capture_layers, evaluation_mode, select_layers, trace_layers
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

# Bytes of complex blocks decomposed per batched SVD call (bounds peak memory on large layers).
_CHUNK_BYTES = 64 * 2**20


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


def _svdvals_at_representatives(
    grid: tuple[int, int],
    rank: int,
    like: torch.Tensor,
    block_bytes: int,
    blocks_at: Callable[[torch.Tensor], torch.Tensor],
    conjugate_symmetric: bool = True,
) -> torch.Tensor:
    """Singular values ``(grid_h, grid_w, rank)`` of blocks fetched by ``blocks_at(flat indices)``: with
    ``conjugate_symmetric`` only at one frequency per conjugate pair (C4), copied to the partner; in
    batched ``svdvals`` calls of at most ``_CHUNK_BYTES`` of blocks (plumbing)."""
    n = grid[0] * grid[1]
    real_dtype = like.real.dtype if like.is_complex() else like.dtype
    out = torch.empty(n, rank, dtype=real_dtype, device=like.device)
    if conjugate_symmetric:
        reps = torch.from_numpy(conjugate_representatives(grid)).to(like.device)
        partner = torch.from_numpy(conjugate_index(grid)).to(like.device)[reps]
    else:
        reps = torch.arange(n, device=like.device)
        partner = reps
    chunk = max(1, _CHUNK_BYTES // max(1, block_bytes))
    for start in range(0, reps.numel(), chunk):
        idx = reps[start : start + chunk]
        sv = torch.linalg.svdvals(blocks_at(idx))
        out[idx] = sv
        out[partner[start : start + chunk]] = sv
    return out.reshape(grid[0], grid[1], rank)


def singular_values_by_frequency(blocks: torch.Tensor, conjugate_symmetric: bool = True) -> torch.Tensor:
    """Singular values of every per-frequency block, descending: ``(F_h, F_w, r)`` real, ``r = min(rows, cols)``.

    ``blocks (F_h, F_w, rows, cols)``. With ``conjugate_symmetric`` (valid for the blocks of a real layer:
    :func:`stride_blocks`, :func:`transposed_blocks` and plain multipliers all satisfy it) only one
    frequency per conjugate pair is decomposed and the result is copied to its partner (C4).
    """
    if blocks.ndim != 4:
        raise ValueError(f"blocks must have shape (F_h, F_w, rows, cols), got {tuple(blocks.shape)}")
    fh, fw, rows, cols = blocks.shape
    flat = blocks.reshape(fh * fw, rows, cols)
    return _svdvals_at_representatives(
        (fh, fw),
        min(rows, cols),
        flat,
        rows * cols * flat.element_size(),
        lambda idx: flat.index_select(0, idx),
        conjugate_symmetric,
    )


def _gather_stride_blocks(transfer: torch.Tensor, stride: tuple[int, int], reps: torch.Tensor) -> torch.Tensor:
    """:func:`stride_blocks` evaluated only at the flat output frequencies ``reps``: ``(len, c_out, s² c_in)``."""
    gh, gw, co, ci = transfer.shape
    sh, sw = stride
    oh, ow = gh // sh, gw // sw
    u, v = reps // ow, reps % ow
    ah = torch.arange(sh, device=reps.device)
    aw = torch.arange(sw, device=reps.device)
    rows = u[:, None, None] + ah[None, :, None] * oh  # (R, sh, 1)
    cols = v[:, None, None] + aw[None, None, :] * ow  # (R, 1, sw)
    flat_idx = (rows * gw + cols).reshape(-1)  # (R*sh*sw,), aliases row-major
    picked = transfer.reshape(gh * gw, co, ci).index_select(0, flat_idx).reshape(-1, sh * sw, co, ci)
    return picked.permute(0, 2, 1, 3).reshape(-1, co, sh * sw * ci) / math.sqrt(sh * sw)


def _strided_singular_values(transfer: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Like ``singular_values_by_frequency(stride_blocks(T, s))`` without materialising all blocks."""
    gh, gw, co, ci = transfer.shape
    cols = stride[0] * stride[1] * ci
    return _svdvals_at_representatives(
        (gh // stride[0], gw // stride[1]),
        min(co, cols),
        transfer,
        co * cols * transfer.element_size(),
        lambda idx: _gather_stride_blocks(transfer, stride, idx),
    )


# --------------------------------------------------------------------------------------------
# One layer
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpectrum:
    """Per-frequency singular values of one layer's linear operator (unitary Fourier bases).

    Attributes:
        name: qualified module name.
        kind: ``"conv"`` or ``"conv_transpose"``.
        input_size / output_size: spatial sizes seen in the traced forward pass.
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


def _is_pointwise(geom: ConvGeometry) -> bool:
    return geom.kernel_size == (1, 1) and not geom.transposed


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
    else:
        pad_grid = size if geom.circular else (size[0] + 2 * geom.padding[0], size[1] + 2 * geom.padding[1])
        grid = (pad_grid[0] // geom.stride[0], pad_grid[1] // geom.stride[1])
        full_out = grid
    out_size = tuple(int(s) for s in output_size) if output_size is not None else full_out
    with torch.no_grad():
        if _is_pointwise(geom):
            # Same matrix (up to a unit phase from the padding) at every frequency; with stride s the
            # aliasing block (1/s)[W ... W] has the same non-zero singular values as W (B B^H = W W^H).
            kernel = dense_kernel(module, label, dtype)[:, :, 0, 0]
            sv0 = torch.linalg.svdvals(kernel)
            rank = min(geom.out_channels, geom.stride[0] * geom.stride[1] * geom.in_channels)
            sv0 = torch.cat([sv0, sv0.new_zeros(rank - sv0.numel())])
            sv = sv0.expand(grid[0], grid[1], rank)
        else:
            transfer = module_transfer_matrices(module, size, name=label, dtype=dtype)
            if geom.transposed:
                sv = singular_values_by_frequency(transposed_blocks(transfer, geom.stride, name=label))
            elif geom.stride == (1, 1):
                sv = singular_values_by_frequency(transfer)
            else:
                sv = _strided_singular_values(transfer, geom.stride)
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
        raise TypeError(f"input_shape must be a tuple (C, H, W) or (N, C, H, W) of ints, got {input_shape!r}")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in input_shape):
        raise TypeError(f"input_shape must hold ints, got {input_shape!r}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) with positive sizes, got {input_shape!r}")
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(shape, dtype=dtype, device=device)


def _record_calls(
    model: nn.Module, chosen: Sequence[tuple[str, nn.Module]], example: torch.Tensor
) -> list[tuple[str, tuple[int, ...], tuple[int, int]]]:
    """One forward pass recording ``(name, input (C, H, W), output (H, W))`` of every call of the chosen layers.

    The shapes come from hooks on the chosen layers themselves (so parametrized convs, which are not leaf
    modules, are seen); :func:`trace_layers` runs the pass so that a failure names the failing layer.
    """
    calls: list[tuple[str, tuple[int, ...], tuple[int, int]]] = []

    def record(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].ndim == 4 and output.ndim == 4:
            entry = (name, tuple(int(v) for v in inputs[0].shape[1:]), (output.shape[-2], output.shape[-1]))
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
    ``nn.Conv2d`` / ``nn.ConvTranspose2d`` and any type added with :func:`freqlens.spectral.register_rule`.

    A thin walker over the rule registry (:mod:`freqlens.spectral.rules`). One forward pass on zeros of
    ``input_shape`` (``(C, H, W)``, ints) records each layer's input and output size (forward hooks; a layer
    called several times is listed once per distinct input size), then each layer's spectrum is computed by
    its rule in ``dtype`` (float32 or float64). Everything runs in eval mode (parametrizations such as
    ``spectral_norm`` are read without advancing) and the model is left exactly as found.

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
        raise ValueError(f"model {type(model).__name__} has no nn.Conv2d / nn.ConvTranspose2d (or registered) layer")
    wanted = {name for name, _ in chosen}
    modules = dict(model.named_modules())
    result = WeightSpectra()
    with evaluation_mode(model), torch.no_grad():
        calls = _record_calls(model, chosen, example)
        missing = wanted - {c[0] for c in calls}
        if missing:
            raise ValueError(
                f"layers {sorted(missing)} were not called in the forward pass of input shape {input_shape}"
            )
        checked = []
        for name, shape, out in calls:  # validate everything before the first SVD
            rule = rule_for(modules[name])[1]
            form, reason = verify_forward(modules[name], shape, linear_only=True)
            if form is None:  # an unverified forward is a marked gap, whatever its attributes say
                result.skipped.append((name, reason))
                continue
            rule.check_spectrum_geometry(modules[name], name, (shape[1], shape[2]))
            checked.append((name, shape, out, rule))
        for name, shape, out, rule in checked:
            result.layers.append(rule.layer_spectrum(modules[name], (shape[1], shape[2]), name, out, dtype))
    return result
