"""Canonical description of PyTorch conv layers and their exact per-frequency multipliers.

This is the one implementation of "what a conv layer does to each frequency" in freqlens; weight
spectra (bottleneck paper) and spectrum propagation (decoder paper) both build on it.

* ``nn.Conv2d`` with circular padding ``p`` and stride 1 on an ``H×W`` grid multiplies the
  unnormalised spectrum by ``T(ω) = conj(fft2(W, s=(H, W))) e^{-2πi(u p_h/H + v p_w/W)}``
  (conv_bottleneck C5a; decoder_spectra Thm 3.2 and §2.2). Dilation and groups are folded into an
  equivalent dense kernel (zeros inserted / block-diagonal channels), so every conv has one
  ``(c_out, c_in, kh, kw)`` kernel.
* Stride ``s``: the stride-1 output is subsampled, i.e. its spectrum is aliased
  (:func:`freqlens.fourier.downsample_spectrum`; conv_bottleneck §1.5, C5b).
* Zero padding ``p``: exactly "zero-pad to ``(H+2p)×(W+2p)``, apply the circular rule on the padded
  grid, crop" (decoder_spectra §2.3, Eq. 17). The layer is then not translation-equivariant, so its
  per-frequency matrices on the padded grid describe the operator only approximately.
* ``nn.ConvTranspose2d`` (stride ``r``, padding ``P``): circularly, zero insertion followed by a
  **true** convolution, ``T(ω) = fft2(W, s=out)ᵀ e^{+2πi(u P/M + v P/N)}`` on the output grid
  (decoder_spectra §2.6); exact in the interior, edges differ from the non-circular PyTorch op.
* ``nn.Conv1d`` of a length-``L`` signal is exactly ``nn.Conv2d`` on the ``1×L`` grid with kernel ``(1, k)``,
  stride ``(1, s)``, padding ``(0, p)``, dilation ``(1, d)``, the same groups, bias and padding mode
  (:func:`conv1d_as_conv2d`; the 1-D convention of :func:`freqlens.fourier.spatial_grid`), and likewise
  ``nn.ConvTranspose1d`` is ``nn.ConvTranspose2d`` on that grid, so every rule above applies to them
  unchanged: nothing here is specific to one dimension twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..fourier import as_pair, conv2d_transfer_matrices, phase_ramp_angles

__all__ = [
    "ConvGeometry",
    "conv1d_as_conv2d",
    "conv_geometry",
    "conv_output_size",
    "conv_transpose_transfer_matrices",
    "dense_kernel",
    "module_transfer_matrices",
    "padding_rule_gap",
    "spectrum_grid_problem",
    "transposed_rule_gap",
]

PaddingMode = Literal["zeros", "circular", "reflect", "replicate"]


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a conv layer except its weights, in canonical form.

    ``kernel_size`` is the *effective* size after dilation; ``padding`` is explicit (``"same"`` and
    ``"valid"`` are resolved); ``transposed`` marks ``nn.ConvTranspose2d``.
    """

    name: str
    transposed: bool
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    padding_mode: PaddingMode
    dilation: tuple[int, int]
    groups: int
    output_padding: tuple[int, int]
    has_bias: bool

    @property
    def circular(self) -> bool:
        """True when the layer is a circular convolution on its input grid (no zero/reflect padding)."""
        return self.padding_mode == "circular" or self.padding == (0, 0)

    def output_size(self, input_size: Sequence[int]) -> tuple[int, int]:
        """Output ``(H, W)`` of the layer for an input grid (PyTorch's size formula; plumbing)."""
        return conv_output_size(self, input_size)


def conv_geometry(module: nn.Module, name: str = "") -> ConvGeometry:
    """Read ``nn.Conv2d`` / ``nn.ConvTranspose2d`` into a :class:`ConvGeometry`.

    Raises ``TypeError`` naming the layer for any other module (including 1-D/3-D convs; 1-D convs are read
    through :func:`conv1d_as_conv2d`).
    """
    label = name or type(module).__name__
    if not isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        line = isinstance(module, nn.Conv1d | nn.ConvTranspose1d)
        hint = " (a 1-D conv is read through conv1d_as_conv2d: use its registry rule)" if line else ""
        raise TypeError(f"layer {label!r} is {type(module).__name__}, not nn.Conv2d or nn.ConvTranspose2d{hint}")
    transposed = isinstance(module, nn.ConvTranspose2d)
    dil = as_pair("dilation", module.dilation)
    k = as_pair("kernel_size", module.kernel_size)
    k_eff = (dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1)
    pad_attr = module.padding
    if isinstance(pad_attr, str):
        if pad_attr == "valid":
            pad = (0, 0)
        else:  # "same" (stride 1 only, enforced by PyTorch)
            total = (k_eff[0] - 1, k_eff[1] - 1)
            if total[0] % 2 or total[1] % 2:
                raise ValueError(
                    f"layer {label!r}: padding='same' with an even effective kernel {k_eff} pads asymmetrically; "
                    "freqlens supports symmetric padding only"
                )
            pad = (total[0] // 2, total[1] // 2)
    else:
        pad = as_pair("padding", pad_attr)
    mode = str(module.padding_mode)
    if mode not in ("zeros", "circular", "reflect", "replicate"):
        raise ValueError(f"layer {label!r}: unknown padding_mode {mode!r}")
    return ConvGeometry(
        name=label,
        transposed=transposed,
        in_channels=int(module.in_channels),
        out_channels=int(module.out_channels),
        kernel_size=k_eff,
        stride=as_pair("stride", module.stride),
        padding=pad,
        padding_mode=mode,  # type: ignore[arg-type]
        dilation=dil,
        groups=int(module.groups),
        output_padding=as_pair("output_padding", module.output_padding) if transposed else (0, 0),
        has_bias=module.bias is not None,
    )


def conv1d_as_conv2d(module: nn.Module, name: str = "") -> nn.Conv2d | nn.ConvTranspose2d:
    """The 2-D twin on the ``1×L`` grid of ``nn.Conv1d`` (an ``nn.Conv2d``) or ``nn.ConvTranspose1d`` (an
    ``nn.ConvTranspose2d``) ``module`` (module docstring): kernel ``(1, k)``, stride ``(1, s)``, padding
    ``(0, p)`` (or the same ``"same"``/``"valid"``), dilation ``(1, d)``, output padding ``(0, o)``, groups and
    padding mode copied, weight ``module.weight[..., None, :]`` (a view: no copy, no new parameter) and the
    same bias, so ``twin(x[..., None, :])[..., 0, :] == module(x)`` for the stock forward. Built on the meta
    device first, so no random initialisation touches the global RNG (plumbing)."""
    label = name or type(module).__name__
    if not isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
        raise TypeError(f"layer {label!r} is {type(module).__name__}, not nn.Conv1d or nn.ConvTranspose1d")
    padding: str | tuple[int, int] = (
        module.padding if isinstance(module.padding, str) else (0, int(module.padding[0]))
    )
    options: dict[str, Any] = {
        "stride": (1, int(module.stride[0])),
        "padding": padding,
        "dilation": (1, int(module.dilation[0])),
        "groups": int(module.groups),
        "bias": False,
        "padding_mode": module.padding_mode,
        "device": "meta",
    }
    cls: type[nn.Conv2d] | type[nn.ConvTranspose2d] = nn.Conv2d
    if isinstance(module, nn.ConvTranspose1d):
        cls = nn.ConvTranspose2d
        options["output_padding"] = (0, int(module.output_padding[0]))
    twin = cls(int(module.in_channels), int(module.out_channels), (1, int(module.kernel_size[0])), **options)
    weight, bias = module.weight, module.bias  # read once: a parametrized weight is computed here
    del twin.weight, twin.bias  # plain attributes below: views of the 1-D tensors, shared with the module
    twin.weight = weight.unsqueeze(-2)
    twin.bias = bias
    return twin.train(module.training)


def padding_rule_gap(geom: ConvGeometry) -> str | None:
    """Why a conv's padding has no exact per-frequency rule (reflect / replicate padding; §7), else ``None``."""
    if geom.padding_mode in ("reflect", "replicate") and geom.padding != (0, 0):
        return (
            f"layer {geom.name!r}: padding_mode={geom.padding_mode!r} has no exact per-frequency rule "
            "(only circular and zero padding do)"
        )
    return None


def transposed_rule_gap(geom: ConvGeometry) -> str | None:
    """Why a transposed conv has no exact rule (decoder_spectra §2.6 needs ``K − 2P = s`` and no output
    padding, so that the output is exactly ``s`` times the input), else ``None``."""
    ok = all(k - 2 * p == s for k, p, s in zip(geom.kernel_size, geom.padding, geom.stride))
    if ok and geom.output_padding == (0, 0):
        return None
    return (
        f"layer {geom.name!r}: the circular transposed-conv rule needs kernel - 2*padding == stride and no "
        f"output_padding (got kernel {geom.kernel_size}, padding {geom.padding}, stride {geom.stride}, "
        f"output_padding {geom.output_padding})"
    )


def spectrum_grid_problem(geom: ConvGeometry, input_size: Sequence[int]) -> str | None:
    """Everything that stops a per-frequency spectrum on this input size, checked before any FFT/SVD: the
    rule gaps above, a kernel larger than the grid, a stride that does not divide the grid. ``None`` if fine."""
    h, w = int(input_size[0]), int(input_size[1])
    kh, kw = geom.kernel_size
    if geom.transposed:
        gap = transposed_rule_gap(geom)
        if gap is not None:
            return gap
        rh, rw = geom.stride
        if kh > rh * h or kw > rw * w:
            return f"layer {geom.name!r}: kernel {kh}x{kw} is larger than the output grid {rh * h}x{rw * w}"
        return None
    gap = padding_rule_gap(geom)
    if gap is not None:
        return gap
    grid = (h, w) if geom.circular else (h + 2 * geom.padding[0], w + 2 * geom.padding[1])
    if kh > grid[0] or kw > grid[1]:
        return (
            f"layer {geom.name!r}: kernel {kh}x{kw} is larger than the grid {grid[0]}x{grid[1]} "
            f"(input {h}x{w}, padding {geom.padding})"
        )
    sh, sw = geom.stride
    if grid[0] % sh or grid[1] % sw:
        return (
            f"layer {geom.name!r}: stride {geom.stride} does not divide the grid {grid[0]}x{grid[1]} it acts on "
            f"(input {h}x{w}, padding {geom.padding}); choose an input size divisible by the strides"
        )
    return None


def conv_output_size(geom: ConvGeometry, input_size: Sequence[int]) -> tuple[int, int]:
    """Spatial output size of the layer for an input of size ``(H, W)`` (PyTorch's formula)."""
    h, w = int(input_size[0]), int(input_size[1])
    out = []
    for size, k, s, p, op in zip((h, w), geom.kernel_size, geom.stride, geom.padding, geom.output_padding):
        if geom.transposed:
            out.append((size - 1) * s - 2 * p + k + op)
        else:
            out.append((size + 2 * p - k) // s + 1)
    return out[0], out[1]


def dense_kernel(module: nn.Module, name: str = "", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The layer's kernel with dilation and groups folded in.

    Conv2d: ``(c_out, c_in, kh_eff, kw_eff)``, a cross-correlation kernel (PyTorch layout).
    ConvTranspose2d: ``(c_out, c_in, kh_eff, kw_eff)`` obtained from PyTorch's ``(c_in, c_out/g, kh, kw)``
    layout, still to be used as a **true convolution** after zero insertion (see module docstring).
    """
    geom = conv_geometry(module, name)
    assert isinstance(module.weight, torch.Tensor)
    weight = module.weight.detach().to(dtype)
    g = geom.groups
    dh, dw = geom.dilation
    if geom.transposed:
        # (c_in, c_out/g, kh, kw) -> (c_out, c_in/g... ) per group: out channel block j uses input block j.
        cin_g = geom.in_channels // g
        cout_g = geom.out_channels // g
        blocks = weight.reshape(g, cin_g, cout_g, *weight.shape[-2:]).transpose(1, 2)  # (g, cout_g, cin_g, kh, kw)
    else:
        cin_g = geom.in_channels // g
        cout_g = geom.out_channels // g
        blocks = weight.reshape(g, cout_g, cin_g, *weight.shape[-2:])
    kh, kw = blocks.shape[-2:]
    full = torch.zeros(geom.out_channels, geom.in_channels, *geom.kernel_size, dtype=dtype, device=weight.device)
    for j in range(g):
        full[j * cout_g : (j + 1) * cout_g, j * cin_g : (j + 1) * cin_g, ::dh, ::dw] = blocks[j]
    assert full[..., ::dh, ::dw].shape[-2:] == (kh, kw)
    return full


def module_transfer_matrices(
    module: nn.Module, input_size: Sequence[int], name: str = "", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Per-frequency matrices ``T(ω) (G_h, G_w, c_out, c_in)`` of a conv layer at stride 1.

    For ``nn.Conv2d`` the grid ``G`` is the input grid for circular padding (or no padding) and the
    zero-padded grid ``(H+2p_h, W+2p_w)`` for zero padding (where the circular rule is exact before the
    crop). Stride is **not** applied here: subsample the result with
    :func:`freqlens.fourier.downsample_spectrum` (or build aliasing blocks). ``reflect``/``replicate``
    padding have no exact per-frequency rule: a ``ValueError`` says so.
    For ``nn.ConvTranspose2d`` see :func:`conv_transpose_transfer_matrices`.
    """
    geom = conv_geometry(module, name)
    if geom.transposed:
        return conv_transpose_transfer_matrices(module, input_size, name, dtype)
    h, w = int(input_size[0]), int(input_size[1])
    kernel = dense_kernel(module, name, dtype)
    gap = padding_rule_gap(geom)
    if gap is not None:
        raise ValueError(gap)
    if geom.padding_mode == "circular" or geom.padding == (0, 0):
        grid = (h, w)
        phase_pad: tuple[int, int] = geom.padding
    else:  # zeros: circular rule on the padded grid (decoder_spectra §2.3)
        grid = (h + 2 * geom.padding[0], w + 2 * geom.padding[1])
        phase_pad = (0, 0)
    kh, kw = geom.kernel_size
    if kh > grid[0] or kw > grid[1]:
        raise ValueError(f"layer {geom.name!r}: kernel {kh}x{kw} is larger than the grid {grid[0]}x{grid[1]}")
    return conv2d_transfer_matrices(kernel, grid, padding=phase_pad)


def conv_transpose_transfer_matrices(
    module: nn.Module, input_size: Sequence[int], name: str = "", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Circular ``nn.ConvTranspose2d`` as zero insertion by ``r`` then a true convolution:
    ``T(u, v) = fft2(W, s=(M, N))[..., u, v] e^{+2πi(u P_h/M + v P_w/N)}`` on the output grid
    ``M = r_h H``, ``N = r_w W`` (decoder_spectra §2.6). Requires ``K - 2P = r`` and no output
    padding (then the output size is exactly ``r`` times the input size)."""
    geom = conv_geometry(module, name)
    if not geom.transposed:
        raise TypeError(f"layer {geom.name!r} is not nn.ConvTranspose2d")
    h, w = int(input_size[0]), int(input_size[1])
    (rh, rw), (ph, pw) = geom.stride, geom.padding
    gap = transposed_rule_gap(geom)
    if gap is not None:
        raise ValueError(gap)
    m, n = rh * h, rw * w
    kernel = dense_kernel(module, name, dtype)
    spec = torch.fft.fft2(kernel, s=(m, n))  # true convolution: no conjugate
    ang = torch.from_numpy(phase_ramp_angles(m, ph, +1)[:, None] + phase_ramp_angles(n, pw, +1)[None, :])
    spec = spec * torch.polar(torch.ones_like(ang), ang).to(spec.dtype)
    return spec.permute(2, 3, 0, 1)
