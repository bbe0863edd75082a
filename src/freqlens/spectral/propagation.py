"""Exact propagation of spectrum maps through decoder layers (``spec/decoder_spectra.md`` §2).

Every rule acts on **unnormalised, unshifted** spectrum maps ``G (B, C, H, W)`` (complex,
``torch.fft.fft2`` of real feature maps, spec §2.1) and returns the spectrum map of the layer output.
All conv multipliers come from :mod:`freqlens.spectral.conv` (the one implementation of the conv-layer
multiplier in freqlens); resampling rules come from :mod:`freqlens.fourier`. Which rule applies to which
layer type is decided in one place, the registry of :mod:`freqlens.spectral.rules` (``layer_rule``,
``propagate_layer`` and :func:`propagate` only look it up; user layers join with ``register_rule``).

Exact rules (each reproduces the PyTorch layer to rounding error in float64):

* ``nn.Conv2d`` with circular padding, stride 1, same size: ``h = T g + δ_{uv} MN b`` per frequency
  (Thm 3.2, §2.2), ``T`` with PyTorch's symmetric-padding phase; with stride ``s | H`` the result is
  aliased (:func:`freqlens.fourier.downsample_spectrum`).
* ``nn.Conv2d`` with zero padding ``p`` (or no padding, or any other output size): zero-pad to
  ``(H+2p)×(W+2p)``, apply the circular rule on that grid, crop the valid part, subsample by the stride
  (§2.3 "practical equivalent" of Eq. 17; §5 item 5). Dilation and groups are folded into a dense kernel.
* ``nn.ConvTranspose2d`` with ``kernel − 2·padding == stride`` (e.g. ``K=4, s=2, P=1``): zero insertion
  (tiling, Thm 4.4) then a true convolution (§2.6). PyTorch's op is not circular; the exact rule zero-pads
  the input by ``q = ⌈2P/r⌉`` pixels, applies the circular rule on the ``r(H+q)`` grid and crops.
* zero-insertion upsampling (:class:`ZeroInsertionUpsample`): ``r×r`` tiling (Thm 4.4, Eq. 11).
* ``nn.Upsample(mode="nearest")`` with an integer factor: tiling times ``D_r(u) D_r(v)`` (§2.6); the DC
  replicas cancel exactly.
* ``nn.BatchNorm2d`` **in eval mode**: a per-channel affine map, ``h_c = a_c g_c + δ_{uv} MN b_c``.
* ``nn.Identity``, ``nn.Dropout*`` in eval mode: identity.

Layers with **no exact rule**: pointwise nonlinearities (ReLU, GELU, tanh, ...: they mix all frequencies),
batch norm in training mode (it depends on the batch), bilinear/bicubic upsampling (edge clamping; not
analysed by the paper, §7.9), reflect/replicate padding (§7 and :func:`module_transfer_matrices`),
pooling and any other module. There the propagated prediction **stops**: :func:`propagate` records the
gap and restarts the next prediction from the *measured* spectrum of that layer's output.

Also here: the cascade (Cor. 3.3), the backward rule ``p̂^{(l-1)} = T^H p̂^{(l)}`` and the weight-update
rule of Cor. 3.4 (§2.5), each as its own function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_finite, check_model_usable, check_ndim, check_real_floating, describe
from ..fourier import (
    as_pair,
    conv2d_transfer_matrices,
    downsample_spectrum,
    nearest_upsample_spectrum,
    zero_insertion_spectrum,
)
from ..hooks import capture_layers, layer_modules, preserve_state
from .conv import (
    conv_geometry,
    conv_output_size,
    conv_transpose_transfer_matrices,
    dense_kernel,
    module_transfer_matrices,
    padding_rule_gap,
    transposed_rule_gap,
)

__all__ = [
    "LayerRule",
    "NoExactRuleError",
    "PropagationResult",
    "PropagationStep",
    "ZeroInsertionUpsample",
    "add_dc_bias",
    "apply_transfer",
    "assumed_circular_transfer_matrices",
    "batchnorm_spectrum",
    "cascade_dc_offset",
    "cascade_transfer_matrices",
    "check_spectrum",
    "conv2d_backward_spectrum",
    "conv2d_spectrum",
    "conv2d_weight_update_transfer_change",
    "conv_transpose2d_spectrum",
    "flatten_sequential",
    "layer_rule",
    "propagate",
    "propagate_layer",
    "upsample_factor",
    "upsample_spectrum",
    "weight_update_transfer_change",
]


class NoExactRuleError(ValueError):
    """The layer has no exact per-frequency rule; the message says why. Propagation stops there."""


class ZeroInsertionUpsample(nn.Module):
    """Zero-insertion upsampling by an integer ``factor`` (spec §1 Eq. 10): ``out[..., ::r, ::r] = x``,
    zeros elsewhere. Its spectrum is the ``r×r`` tiling of the input spectrum (Thm 4.4)."""

    def __init__(self, factor: int | tuple[int, int] = 2) -> None:
        super().__init__()
        self.factor = as_pair("factor", factor, minimum=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Insert ``factor - 1`` zeros after every pixel along each axis (decoder_spectra §6, zero insertion)."""
        rh, rw = self.factor
        out = x.new_zeros(*x.shape[:-2], x.shape[-2] * rh, x.shape[-1] * rw)
        out[..., ::rh, ::rw] = x
        return out

    def extra_repr(self) -> str:
        """``factor=(rh, rw)`` in the module repr (plumbing)."""
        return f"factor={self.factor}"


@dataclass(frozen=True)
class LayerRule:
    """What freqlens knows about a layer's action on spectra.

    ``exact``: the rule reproduces the layer to rounding error. ``predicts``: a prediction is made at all
    (``False`` for layers with no rule, where the prediction stops and the measured spectrum is used).
    ``statement``: one sentence naming the rule (with spec section) or why there is none. ``operator``: a
    short label of the operator the numbers describe (e.g. ``"circular: exact"``; empty for gaps).
    Verdicts come from the rule registry (:mod:`freqlens.spectral.rules`).
    """

    kind: str
    exact: bool
    predicts: bool
    statement: str
    operator: str = ""


# ------------------------------------------------------------------------------------ validation
def check_spectrum(name: str, spectrum: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """Plumbing: complex ``(B, C, H, W)`` spectrum, finite; promoted to complex128 (rules are float64)."""
    if not isinstance(spectrum, torch.Tensor):
        raise TypeError(f"{name} must be a complex torch.Tensor (B, C, H, W), got {describe(spectrum)}")
    check_ndim(name, spectrum, (4,), "(B, C, H, W)")
    if not spectrum.is_complex():
        raise ValueError(
            f"{name} must be a complex spectrum map (torch.fft.fft2 of the feature map), got dtype {spectrum.dtype}"
        )
    check_finite(name, spectrum)
    if channels is not None and spectrum.shape[1] != channels:
        raise ValueError(f"{name} has {spectrum.shape[1]} channels but the layer expects {channels}")
    return spectrum.to(torch.complex128)


def apply_transfer(transfer: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """``h^{(uv)} = T^{(uv)} g^{(uv)}`` for every frequency (Thm 3.2): ``T (H, W, D, C)``,
    ``g (B, C, H, W)`` -> ``(B, D, H, W)``."""
    return torch.einsum("uvdc,bcuv->bduv", transfer.to(torch.complex128), spectrum)


def add_dc_bias(spectrum: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``+ δ_{uv} MN b`` (Thm 3.2): the bias only moves the DC bin, by the output size times ``b`` (§2.2)."""
    if bias is None:
        return spectrum
    out = spectrum.clone()
    h, w = out.shape[-2:]
    out[:, :, 0, 0] += h * w * bias.detach().to(torch.float64).to(out.device)
    return out


def _crop_subsample(z_spectrum: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Spectrum of ``z[..., rows, :][..., cols]`` from the spectrum of ``z`` (exact, via the inverse DFT)."""
    z = torch.fft.ifft2(z_spectrum)
    return torch.fft.fft2(z[..., rows, :][..., cols])


def _scatter_adjoint(p: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Adjoint of ``z -> z[..., rows, :][..., cols]``: place (and sum repeated) entries on the grid."""
    b, c = p.shape[:2]
    flat = p.new_zeros(b, c, grid[0] * grid[1])
    idx = (rows[:, None] * grid[1] + cols[None, :]).reshape(-1)
    flat.index_add_(2, idx.to(flat.device), p.reshape(b, c, -1))
    return flat.reshape(b, c, *grid)


# ------------------------------------------------------------------------------------ conv2d
@dataclass(frozen=True)
class _ConvPlan:
    """How a Conv2d maps an ``H×W`` input: the stride-1 grid, the rows/cols kept, the padding offset."""

    grid: tuple[int, int]
    rows: torch.Tensor
    cols: torch.Tensor
    zero_pad: tuple[int, int]
    spectral_only: bool  # same-size circular: pure Thm 3.2 (+ aliasing fold), no crop needed


def _conv_plan(module: nn.Module, size: tuple[int, int], name: str, assume_circular: bool) -> _ConvPlan:
    geom = conv_geometry(module, name)
    h, w = size
    out = conv_output_size(geom, size)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"layer {geom.name!r}: input {h}x{w} is too small for kernel {geom.kernel_size}")
    (kh, kw), (ph, pw), (sh, sw) = geom.kernel_size, geom.padding, geom.stride
    n1h, n1w = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1  # stride-1 output size
    circular_like = geom.padding_mode == "circular" or geom.padding == (0, 0) or assume_circular
    gap = padding_rule_gap(geom)
    if gap is not None and not assume_circular:
        raise NoExactRuleError(f"{gap}; the prediction stops here and the measured spectrum is used")
    if circular_like:
        if ph > h or pw > w:
            raise ValueError(f"layer {geom.name!r}: circular padding {geom.padding} exceeds the input {h}x{w}")
        rows = torch.arange(0, n1h, sh) % h
        cols = torch.arange(0, n1w, sw) % w
        spectral = (n1h, n1w) == (h, w) and h % sh == 0 and w % sw == 0
        return _ConvPlan((h, w), rows, cols, (0, 0), spectral)
    grid = (h + 2 * ph, w + 2 * pw)
    return _ConvPlan(grid, torch.arange(0, n1h, sh), torch.arange(0, n1w, sw), (ph, pw), False)


def assumed_circular_transfer_matrices(module: nn.Module, input_size: Sequence[int], name: str = "") -> torch.Tensor:
    """``T (H, W, C_out, C_in)`` of a stride-1 ``nn.Conv2d`` on its **input** grid under the paper's
    Assumption 3.1 (circular padding): exact for circular layers; for zero/reflect padding it is the same
    kernel with circular padding of the same width (PyTorch's phase), i.e. the **approximation** the
    paper uses to derive spectra of zero-padded networks (§4 item 1)."""
    geom = conv_geometry(module, name)
    size = (int(input_size[0]), int(input_size[1]))
    if geom.padding_mode == "circular" or geom.padding == (0, 0):
        return module_transfer_matrices(module, size, geom.name)
    return conv2d_transfer_matrices(dense_kernel(module, geom.name), size, padding=geom.padding)


def conv2d_spectrum(
    module: nn.Module, spectrum: torch.Tensor, name: str = "", assume_circular: bool = False
) -> torch.Tensor:
    """Output spectrum of ``nn.Conv2d`` from its input spectrum ``g (B, C_in, H, W)`` (spec §2.2-2.3).

    Circular padding, same size: ``h = T g + δ_{uv} MN b`` (Thm 3.2 with PyTorch's phase), aliased by
    the stride when it divides the grid. Zero padding, no padding or any other output size: the exact
    padded-grid rule (pad, circular rule on the padded grid, crop the valid outputs, subsample by the
    stride; §2.3, §5 item 5). ``assume_circular=True`` instead applies the circular rule to a
    zero-/reflect-padded layer (the paper's Assumption 3.1): an **approximation**, for comparisons only.
    Raises :class:`NoExactRuleError` for reflect/replicate padding (unless ``assume_circular``).
    """
    geom = conv_geometry(module, name)
    if geom.transposed:
        raise TypeError(f"layer {geom.name!r} is nn.ConvTranspose2d: use conv_transpose2d_spectrum")
    g = check_spectrum("spectrum", spectrum, geom.in_channels)
    size = (int(g.shape[-2]), int(g.shape[-1]))
    plan = _conv_plan(module, size, geom.name, assume_circular)
    bias = module.bias if geom.has_bias else None
    assert bias is None or isinstance(bias, torch.Tensor)
    if plan.zero_pad == (0, 0):
        z = apply_transfer(assumed_circular_transfer_matrices(module, size, geom.name), g)
        if plan.spectral_only:
            out = downsample_spectrum(z, geom.stride) if geom.stride != (1, 1) else z
        else:
            out = _crop_subsample(z, plan.rows, plan.cols)
        return add_dc_bias(out, bias)
    ph, pw = plan.zero_pad
    gp = torch.fft.fft2(F.pad(torch.fft.ifft2(g), (pw, pw, ph, ph)))
    z = apply_transfer(module_transfer_matrices(module, size, geom.name), gp)
    return add_dc_bias(_crop_subsample(z, plan.rows, plan.cols), bias)


def conv2d_backward_spectrum(
    module: nn.Module, grad_spectrum: torch.Tensor, input_size: Sequence[int], name: str = ""
) -> torch.Tensor:
    """Backward rule: spectrum of ``∂Loss/∂(layer input)`` from the spectrum ``p̂ (B, C_out, H', W')`` of
    ``∂Loss/∂(layer output)`` (spec §2.5, App. A.3; check A9).

    Circular, same size, stride 1: ``p̂^{(l-1,uv)} = (conj T^{(l,uv)})ᵀ p̂^{(l,uv)}`` per frequency.
    Stride: the adjoint of subsampling is zero insertion (tiling of ``p̂``). Zero padding: the adjoint of
    the padded-grid rule (place the output gradient on the padded grid, ``T^H``, crop the interior).
    """
    geom = conv_geometry(module, name)
    if geom.transposed:
        raise TypeError(f"layer {geom.name!r} is nn.ConvTranspose2d; conv2d_backward_spectrum handles nn.Conv2d")
    p = check_spectrum("grad_spectrum", grad_spectrum, geom.out_channels)
    size = (int(input_size[0]), int(input_size[1]))
    plan = _conv_plan(module, size, geom.name, False)
    expected = (len(plan.rows), len(plan.cols))
    if tuple(p.shape[-2:]) != expected:
        raise ValueError(f"grad_spectrum is {tuple(p.shape[-2:])} but layer {geom.name!r} outputs {expected}")
    t = module_transfer_matrices(module, size, geom.name)
    if plan.spectral_only:
        z_grad = zero_insertion_spectrum(p, geom.stride) if geom.stride != (1, 1) else p
    else:
        z_grad = torch.fft.fft2(_scatter_adjoint(torch.fft.ifft2(p), plan.rows, plan.cols, plan.grid))
    g_grad = torch.einsum("uvdc,bduv->bcuv", t.conj(), z_grad)
    if plan.zero_pad == (0, 0):
        return g_grad
    ph, pw = plan.zero_pad
    return torch.fft.fft2(torch.fft.ifft2(g_grad)[..., ph : ph + size[0], pw : pw + size[1]])


def weight_update_transfer_change(
    grad_output_spectrum: torch.Tensor,
    input_spectrum: torch.Tensor,
    kernel_size: int | Sequence[int],
    lr: float,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Change of ``T`` caused by one SGD step ``W ← W − η ∂Loss/∂W`` (Cor. 3.4, checkable form, §2.5):

        ``ΔT^{(uv)}_{dc} = −η Σ_{u',v'} χ_{u'v'uv} p̂^{(d)}_{u'v'} conj(g^{(c)}_{u'v'})``,
        ``χ_{u'v'uv} = (1/MN) Σ_{t,s<K} e^{2πi((u-u')t/M + (v-v')s/N)}``,

    summed over the batch. ``grad_output_spectrum p̂ (B, D, M, N)`` is the spectrum of ``∂Loss/∂(output)``,
    ``input_spectrum g (B, C, M, N)`` the spectrum of the layer input. Valid for a circular, stride-1,
    same-size conv (Assumption 3.1); ``padding`` is PyTorch's symmetric circular padding (its phase is
    applied to ``g`` and to ``T``). Returns ``ΔT (M, N, D, C)`` complex128.

    The χ-sum is a circular convolution over frequency, i.e. a window over the first ``K×K`` lags of the
    input-gradient cross-correlation; it is evaluated that way (exact) and then mapped to ``T`` by the one
    conv multiplier (:func:`freqlens.fourier.conv2d_transfer_matrices`). For real signals the windowed
    cross-correlation is real; its imaginary part is rounding error and is dropped.
    """
    p = check_spectrum("grad_output_spectrum", grad_output_spectrum)
    g = check_spectrum("input_spectrum", input_spectrum)
    if p.shape[0] != g.shape[0] or p.shape[-2:] != g.shape[-2:]:
        raise ValueError(f"grad_output_spectrum {tuple(p.shape)} and input_spectrum {tuple(g.shape)} do not match")
    kh, kw = as_pair("kernel_size", kernel_size, minimum=1)
    ph, pw = as_pair("padding", padding, minimum=0)
    m, n = int(g.shape[-2]), int(g.shape[-1])
    if kh > m or kw > n:
        raise ValueError(f"kernel {kh}x{kw} is larger than the grid {m}x{n}")
    # The symmetric padding shifts the input by p: g' = g e^{-2πi(u p_h/M + v p_w/N)}.
    phase = conv2d_transfer_matrices(torch.ones(1, 1, 1, 1, dtype=torch.float64), (m, n), (ph, pw))[..., 0, 0]
    g_shifted = g * phase
    cross = torch.einsum("bduv,bcuv->dcuv", p, g_shifted.conj())
    lags = torch.fft.fft2(cross)[..., :kh, :kw] / (m * n)  # Σ_m P_d(m) x'_c(m+t): the weight gradient
    grad_w = lags.real.contiguous()
    return -float(lr) * conv2d_transfer_matrices(grad_w, (m, n), (ph, pw))


def conv2d_weight_update_transfer_change(
    module: nn.Module,
    grad_output: torch.Tensor,
    layer_input: torch.Tensor,
    lr: float,
    name: str = "",
    assume_circular: bool = False,
) -> torch.Tensor:
    """Cor. 3.4 for an ``nn.Conv2d`` (stride 1) from measured tensors (§2.5; check A9).

    ``grad_output (B, D, M', N')`` = ``∂Loss/∂(layer output)`` (real), ``layer_input (B, C, M, N)`` (real).
    Circular padding: the rule on the input grid (exact). Zero padding: the rule on the zero-padded grid
    with the output gradient placed at the valid positions (exact); the returned ``ΔT`` is then on the
    padded grid. ``assume_circular=True`` applies the circular rule on the ``M×N`` grid to a zero-padded
    layer, as the paper does (an **approximation**). Returns ``ΔT (G_h, G_w, D, C)``.
    """
    geom = conv_geometry(module, name)
    if geom.transposed or geom.stride != (1, 1):
        raise ValueError(f"layer {geom.name!r}: the weight-update rule is implemented for stride-1 nn.Conv2d only")
    for label, t in (("grad_output", grad_output), ("layer_input", layer_input)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {describe(t)}")
        check_ndim(label, t, (4,), "(B, C, H, W)")
        check_real_floating(label, t)
        check_finite(label, t)
    x = layer_input.detach().to(torch.float64)
    gout = grad_output.detach().to(torch.float64)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    plan = _conv_plan(module, size, geom.name, assume_circular)
    if tuple(gout.shape[-2:]) != (len(plan.rows), len(plan.cols)) or gout.shape[0] != x.shape[0]:
        raise ValueError(
            f"layer {geom.name!r}: grad_output {tuple(gout.shape)} does not match the layer output for input "
            f"{tuple(x.shape)}"
        )
    # The output gradient sits at the kept stride-1 positions of the (padded) grid; zeros elsewhere.
    placed = _scatter_adjoint(gout.to(torch.complex128), plan.rows, plan.cols, plan.grid)
    if plan.zero_pad == (0, 0):  # circular (or no padding, or assumed circular): the input grid, with phase
        return weight_update_transfer_change(
            torch.fft.fft2(placed), torch.fft.fft2(x), geom.kernel_size, lr, geom.padding
        )
    ph, pw = plan.zero_pad
    xp = F.pad(x, (pw, pw, ph, ph))
    return weight_update_transfer_change(torch.fft.fft2(placed), torch.fft.fft2(xp), geom.kernel_size, lr, 0)


# ------------------------------------------------------------------------------------ cascade
def cascade_transfer_matrices(transfers: Sequence[torch.Tensor]) -> torch.Tensor:
    """``T^{(uv)(L:1)} = T^{(L,uv)} ⋯ T^{(1,uv)}`` (Cor. 3.3, Eq. 4): ``transfers[l] (H, W, C_l, C_{l-1})``
    on one common grid -> ``(H, W, C_L, C_0)``."""
    if not transfers:
        raise ValueError("transfers must hold at least one layer")
    out = transfers[0].to(torch.complex128)
    for l, t in enumerate(transfers[1:], start=2):
        if t.shape[:2] != out.shape[:2] or t.shape[-1] != out.shape[-2]:
            raise ValueError(f"layer {l}: transfer {tuple(t.shape)} does not chain onto {tuple(out.shape)}")
        out = t.to(torch.complex128) @ out
    return out


def cascade_dc_offset(transfers: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``β = MN (b^{(L)} + Σ_{j=2}^{L} T^{(00)(L:j)} b^{(j-1)})`` of Cor. 3.3 (``MN`` multiplies the whole
    bracket, §2.4 and §7.3). ``transfers[l] (H, W, C_l, C_{l-1})``, ``biases[l] (C_l,)`` or ``None``.
    Returns ``β (C_L,)`` complex128 (real up to rounding); the cascade output is ``T^{(L:1)} g + δ_{uv} β``."""
    if len(transfers) != len(biases) or not transfers:
        raise ValueError(f"need one bias per layer, got {len(transfers)} transfers and {len(biases)} biases")
    h, w = transfers[0].shape[:2]
    beta = torch.zeros(transfers[0].shape[-1], dtype=torch.complex128)
    for t, b in zip(transfers, biases):
        beta = t[0, 0].to(torch.complex128) @ beta  # carry earlier biases through this layer's DC gain
        if b is not None:
            beta = beta + b.detach().to(torch.complex128)
    return h * w * beta


# ------------------------------------------------------------------------------------ upsampling
def conv_transpose2d_spectrum(module: nn.Module, spectrum: torch.Tensor, name: str = "") -> torch.Tensor:
    """Output spectrum of ``nn.ConvTranspose2d`` with ``kernel − 2·padding == stride`` (spec §2.6).

    Zero insertion (tiling, Thm 4.4) followed by a true convolution
    (:func:`freqlens.spectral.conv.conv_transpose_transfer_matrices`). PyTorch's op is not circular: the
    exact rule zero-pads the input by ``q = ⌈2P/r⌉`` at the end, applies the circular rule on the
    ``r(H+q)`` grid (no output wraps into the kept window) and crops ``[0, rH)``. With ``P = 0`` no crop
    is needed and the rule is the tiling times ``T`` alone. Other geometries raise
    :class:`NoExactRuleError`.
    """
    geom = conv_geometry(module, name)
    if not geom.transposed:
        raise TypeError(f"layer {geom.name!r} is not nn.ConvTranspose2d")
    g = check_spectrum("spectrum", spectrum, geom.in_channels)
    (rh, rw), (ph, pw) = geom.stride, geom.padding
    gap = transposed_rule_gap(geom)
    if gap is not None:
        raise NoExactRuleError(f"{gap}; the prediction stops here")
    h, w = int(g.shape[-2]), int(g.shape[-1])
    qh, qw = math.ceil(2 * ph / rh), math.ceil(2 * pw / rw)
    gq = torch.fft.fft2(F.pad(torch.fft.ifft2(g), (0, qw, 0, qh))) if (qh or qw) else g
    t = conv_transpose_transfer_matrices(module, (h + qh, w + qw), geom.name)
    z = apply_transfer(t, zero_insertion_spectrum(gq, (rh, rw)))
    if qh or qw:
        z = torch.fft.fft2(torch.fft.ifft2(z)[..., : rh * h, : rw * w])
    bias = module.bias if geom.has_bias else None
    assert bias is None or isinstance(bias, torch.Tensor)
    return add_dc_bias(z, bias)


def upsample_factor(module: nn.Module, input_size: Sequence[int], name: str = "") -> tuple[int, int]:
    """Integer upsampling factor ``(r_h, r_w)`` of an ``nn.Upsample`` / :class:`ZeroInsertionUpsample` for
    an ``H×W`` input. A non-integer ratio raises ``ValueError``: such an upsampling cannot tile (Thm 4.4)."""
    label = name or type(module).__name__
    h, w = int(input_size[0]), int(input_size[1])
    if isinstance(module, ZeroInsertionUpsample):
        return module.factor
    if not isinstance(module, nn.Upsample):
        raise TypeError(f"layer {label!r} is {type(module).__name__}, not an upsampling layer")
    if module.size is not None:
        oh, ow = as_pair("size", tuple(module.size) if isinstance(module.size, list) else module.size)
        if oh % h or ow % w:
            raise ValueError(
                f"layer {label!r}: output size {(oh, ow)} is not an integer multiple of the input {(h, w)}; "
                "the spectrum cannot be tiled (no exact rule)"
            )
        return oh // h, ow // w
    sf = module.scale_factor
    factors = sf if isinstance(sf, tuple | list) else (sf, sf)
    out = []
    for f_ in factors:
        fv = float(f_)  # type: ignore[arg-type]
        if not fv.is_integer() or fv < 1:
            raise ValueError(
                f"layer {label!r}: scale_factor {sf} is not a positive integer; the spectrum cannot be tiled "
                "(no exact rule)"
            )
        out.append(int(fv))
    return out[0], out[1]


def upsample_spectrum(module: nn.Module, spectrum: torch.Tensor, name: str = "") -> torch.Tensor:
    """Spectrum after zero-insertion (tiling, Thm 4.4) or nearest upsampling (tiling × ``D_r(u) D_r(v)``,
    §2.6) by an integer factor. Bilinear/bicubic raise :class:`NoExactRuleError` (§7.9)."""
    label = name or type(module).__name__
    g = check_spectrum("spectrum", spectrum)
    r = upsample_factor(module, g.shape[-2:], label)
    if isinstance(module, ZeroInsertionUpsample):
        return zero_insertion_spectrum(g, r)
    assert isinstance(module, nn.Upsample)
    if module.mode not in ("nearest", "nearest-exact"):
        raise NoExactRuleError(
            f"layer {label!r}: {module.mode} upsampling has no exact per-frequency rule (interpolation clamps at the "
            "edges; not analysed by the paper); the prediction stops here and the measured spectrum is used"
        )
    return nearest_upsample_spectrum(g, r)


def batchnorm_spectrum(module: nn.Module, spectrum: torch.Tensor, name: str = "") -> torch.Tensor:
    """``nn.BatchNorm2d`` in eval mode: ``y_c = a_c x_c + b_c`` with ``a = γ/√(var+ε)``, ``b = β − a·mean``,
    so ``h_c = a_c g_c + δ_{uv} MN b_c`` (exact). In training mode the statistics come from the batch
    itself: :class:`NoExactRuleError`."""
    label = name or type(module).__name__
    if not isinstance(module, nn.BatchNorm2d):
        raise TypeError(f"layer {label!r} is {type(module).__name__}, not nn.BatchNorm2d")
    if module.training or module.running_mean is None or module.running_var is None:
        raise NoExactRuleError(
            f"layer {label!r}: batch norm in training mode (or without running statistics) normalises with the "
            "batch's own statistics; no fixed rule, the prediction stops here"
        )
    g = check_spectrum("spectrum", spectrum, int(module.num_features))
    var = module.running_var.detach().to(torch.float64)
    mean = module.running_mean.detach().to(torch.float64)
    scale = 1.0 / torch.sqrt(var + module.eps)
    shift = -mean * scale
    if module.affine:
        assert module.weight is not None and module.bias is not None
        gamma = module.weight.detach().to(torch.float64)
        scale = scale * gamma
        shift = shift * gamma + module.bias.detach().to(torch.float64)
    out = g * scale.to(g.device)[None, :, None, None]
    return add_dc_bias(out, shift)


# ------------------------------------------------------------------------------------ dispatch
def layer_rule(module: nn.Module, name: str = "", assume_circular: bool = False) -> LayerRule:
    """Which rule applies to ``module`` (no computation): the registry's verdict
    (:func:`freqlens.spectral.rules.layer_verdict`; a subclass overriding ``forward`` is a gap here because
    no input shape is given to verify it). See the module docstring for the list."""
    from .rules import layer_verdict

    return layer_verdict(module, name, None, assume_circular)


def propagate_layer(
    module: nn.Module, spectrum: torch.Tensor, name: str = "", assume_circular: bool = False
) -> torch.Tensor:
    """Apply the layer's registered rule to an input spectrum ``(B, C, H, W)`` (decoder_spectra §2);
    :class:`NoExactRuleError` if it has none."""
    from .rules import layer_verdict, rule_for

    label = name or type(module).__name__
    shape = tuple(spectrum.shape[1:]) if isinstance(spectrum, torch.Tensor) and spectrum.ndim == 4 else None
    rule = layer_verdict(module, label, shape, assume_circular)
    if not rule.predicts:
        raise NoExactRuleError(f"layer {label!r}: {rule.statement}")
    return rule_for(module)[1].propagate(module, spectrum, label, assume_circular)


# ------------------------------------------------------------------------------------ whole model
def flatten_sequential(model: nn.Module | Sequence[nn.Module], prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) ``nn.Sequential`` or a list of layers, in order, with qualified names
    (plumbing over :func:`freqlens.hooks.layer_modules`; modules with a registered rule are not descended into).

    Other containers cannot be ordered from outside their ``forward``: a ``TypeError`` says to use
    :func:`freqlens.analysis.decoder_report.decoder_report`, which hooks layers in any model.
    """
    return list(_as_chain(model, prefix)[1])


def _as_chain(
    model: nn.Module | Sequence[nn.Module], prefix: str = ""
) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """``model`` as one module to run, and its layers in order (plumbing of :func:`propagate`)."""
    if isinstance(model, Sequence) and not isinstance(model, nn.Module):
        for i, m in enumerate(model):
            if not isinstance(m, nn.Module):
                raise TypeError(f"layer {str(i)!r} is {type(m).__name__}, not an nn.Module")
        model = nn.Sequential(*model)  # a new container only: the layers themselves are not touched
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Sequential or a list of layers, got {type(model).__name__}")
    if not isinstance(model, nn.Sequential) and any(True for _ in model.children()):
        raise TypeError(
            f"propagate needs an nn.Sequential (or a list of layers) to know the call order, got "
            f"{type(model).__name__}; use decoder_report for arbitrary models"
        )
    return model, layer_modules(model, lambda m: not isinstance(m, nn.Sequential), prefix)


@dataclass
class PropagationStep:
    """One layer of :func:`propagate`.

    ``measured``: spectrum of the layer's actual output. ``predicted``: the exact-rule prediction chained
    from ``chain_start`` (the network input, or the output of the last layer without a rule), or ``None``
    where the layer has no rule (the prediction stops; the next chain starts from ``measured``).
    """

    name: str
    module_type: str
    rule: LayerRule
    measured: torch.Tensor
    predicted: torch.Tensor | None
    chain_start: str

    def relative_error(self) -> float:
        """``max|pred − meas| / max|meas|`` (``nan`` without a prediction)."""
        if self.predicted is None:
            return float("nan")
        scale = float(self.measured.abs().max())
        err = float((self.predicted - self.measured).abs().max())
        return err / scale if scale > 0 else err


@dataclass
class PropagationResult:
    """Layer-by-layer measured and predicted spectra of a sequential model (see :func:`propagate`)."""

    input_spectrum: torch.Tensor
    steps: list[PropagationStep] = field(default_factory=list)

    @property
    def fully_exact(self) -> bool:
        """True iff every layer had an exact rule (the final prediction is a pure input-to-output chain)."""
        return all(s.rule.exact for s in self.steps)

    def gaps(self) -> list[tuple[str, str]]:
        """``(layer, statement)`` for each layer where the prediction stopped or is approximate."""
        return [(s.name, s.rule.statement) for s in self.steps if not s.rule.exact]


def propagate(
    model: nn.Module | Sequence[nn.Module], x: torch.Tensor, assume_circular: bool = False
) -> PropagationResult:
    """Propagate ``fft2(x)`` through a sequential model with the exact rules, layer by layer, next to the
    measured spectra of the real forward pass (spec §2; §4 item 1).

    ``x (B, C, H, W)`` real and finite, or ``(B, C, L)`` for a chain of 1-D layers (``nn.Conv1d``): then every
    spectrum map is on the ``1×L`` grid, ``(B, C, 1, L)`` (:func:`freqlens.fourier.spatial_grid`), and layers
    whose rule has no 1-D form (:attr:`SpectralRule.spatial_dims`) are gaps. For a network built only from
    layers with exact rules the last
    prediction equals ``fft2(model(x))`` to rounding error. At a layer without a rule (ReLU, training-mode
    batch norm, bilinear upsampling, reflect padding, ...) the prediction stops and the chain restarts from
    the measured spectrum of that layer's output. ``assume_circular`` applies the circular rule to zero-
    and reflect-padded convs (the paper's Assumption 3.1; approximate). Runs under ``torch.no_grad`` in the
    model's own modes; buffers (BatchNorm statistics, spectral-norm vectors) and training flags are restored.
    Rules come from the registry (:mod:`freqlens.spectral.rules`); a layer whose ``forward`` overrides its
    registered type is verified on a probe first and is a marked gap unless it agrees.
    """
    from .rules import layer_verdict, rule_for

    chain, layers = _as_chain(model)
    for name, layer in layers:
        check_model_usable(f"layer {name!r}", layer)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (B, C, H, W), got {describe(x)}")
    check_ndim("x", x, (3, 4), "(B, C, H, W) or (B, C, L)")
    check_real_floating("x", x)
    check_finite("x", x)

    def lifted(t: torch.Tensor) -> torch.Tensor:  # (B, C, L) is the 1xL grid (freqlens.fourier.spatial_grid)
        return t.unsqueeze(-2) if x.ndim == 3 else t

    result = PropagationResult(input_spectrum=torch.fft.fft2(lifted(x.detach().to(torch.float64))))
    state: dict[str, object] = {"chained": result.input_spectrum, "start": "input", "previous": x}

    def step(name: str, layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if not inputs or inputs[0] is not state["previous"]:
            raise TypeError(f"layer {name!r} does not receive the previous layer's output: not a chain of layers")
        if not isinstance(out, torch.Tensor) or out.ndim != x.ndim:
            layout = "(B, C, L)" if x.ndim == 3 else "(B, C, H, W)"
            raise TypeError(f"layer {name!r} returned {describe(out)}, not a {layout} tensor like the input")
        check_finite(f"output of layer {name!r}", out)
        measured = torch.fft.fft2(lifted(out.to(torch.float64)))
        rule = layer_verdict(layer, name, tuple(inputs[0].shape[1:]), assume_circular)
        predicted = None
        if rule.predicts:
            chained = state["chained"]
            assert isinstance(chained, torch.Tensor)
            predicted = rule_for(layer)[1].propagate(layer, chained, name, assume_circular)
            if predicted.shape != measured.shape:
                raise RuntimeError(
                    f"layer {name!r}: rule output {tuple(predicted.shape)} != layer output {tuple(measured.shape)}"
                )
            state["chained"] = predicted
        result.steps.append(PropagationStep(name, type(layer).__name__, rule, measured, predicted, str(state["start"])))
        if predicted is None:
            state["chained"], state["start"] = measured, name
        state["previous"] = out

    with torch.no_grad(), preserve_state(chain), capture_layers(layers, step):
        chain(x)
    return result
