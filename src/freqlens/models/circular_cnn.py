"""The deep circular ReLU CNN family of the bottleneck paper (conv_bottleneck §1.2, §1.4, §4.0).

``α_1 = W_1 ⋆ x + β b_1``, ``α_ℓ = S_{s_ℓ}(W_ℓ ⋆ σ(α_{ℓ-1})) + β b_ℓ``, output ``α_L`` (or, with the
``"gap_fc"`` head, ``W_fc GAP(σ(α_{L-1})) + β b_fc``). Convolutions are circular cross-correlations with a
one-sided end wrap (PyTorch's layout, multiplier ``conj(fft2(W))``, C5a with ``p = 0``), with full-size
kernels (FFT route; the theory's setting) or small ``k×k`` kernels. ``L`` counts the weight layers,
including the FC head.

Operator-normalised parameters (the default, spec §1.4, ambiguity 3): each conv weight is stored as
``V = sqrt(|P_out|) W`` through a ``torch.nn.utils.parametrize`` parametrization, so ``module.weight`` is
still the true kernel ``W`` (what the spectral tools read) while the trainable tensor's squared norm is
``‖MW‖_F²``. Coupled L2 on the trainable tensors is then ``λ ‖θ‖²_op``: a kept self-conjugate direction
costs ``λ`` per layer and a kept conjugate pair ``2λ`` (C11), on any grid.

Training speed: ``CircularCNN.forward`` runs the whole network frequency-major
(:meth:`CircularCNN.forward_fused`, :mod:`freqlens.models.circular_fft`) unless a conv has a forward hook, a
layer would take the direct route, or every layer would take the dense route;
:meth:`CircularCNN.forward_layerwise` is the layer-by-layer route (each ``CircularConv2d.forward``), the same
function.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .circular_fft import circular_correlation_hwcn

__all__ = ["BiasScaledLinear", "CircularCNN", "CircularConv2d", "OperatorScale", "PenaltyNorm"]

Head = Literal["none", "gap_fc"]
#: Readings of the parameter norm that the L2 penalty acts on (spec §1.4, ambiguity 3).
PenaltyNorm = Literal["operator", "plain"]

# Above this many kernel taps the FFT route is cheaper than a direct (padded) convolution.
_FFT_MIN_TAPS = 26
# Up to this many entries (c_out |P_out| × c_in |P_in|) the layer runs as one dense matrix product, which on a
# CPU beats many tiny FFTs (small grids, few channels: the quick experiments).
_DENSE_MAX_ENTRIES = 1_500_000


@functools.lru_cache(maxsize=64)
def _circular_index(h: int, w: int, stride: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Flat kernel index ``((r - s p) mod n)`` for output pixel ``p`` and input pixel ``r``: ``(P_out, P_in)``."""
    rows = torch.arange(0, h, stride[0], device=device)
    cols = torch.arange(0, w, stride[1], device=device)
    out_r = rows[:, None].expand(-1, cols.numel()).reshape(-1)
    out_c = cols[None, :].expand(rows.numel(), -1).reshape(-1)
    in_r = torch.arange(h, device=device)[:, None].expand(-1, w).reshape(-1)
    in_c = torch.arange(w, device=device)[None, :].expand(h, -1).reshape(-1)
    dr = (in_r[None, :] - out_r[:, None]) % h
    dc = (in_c[None, :] - out_c[:, None]) % w
    return dr * w + dc


class OperatorScale(nn.Module):
    """Parametrization ``W = V / sqrt(|P_out|)`` so that ``‖V‖² = |P_out| ‖W‖² = ‖MW‖_F²`` (spec §1.4, C3)."""

    def __init__(self, output_pixels: int) -> None:
        super().__init__()
        if output_pixels < 1:
            raise ValueError(f"output_pixels must be >= 1, got {output_pixels}")
        self.output_pixels = int(output_pixels)
        self.scale = 1.0 / math.sqrt(output_pixels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """``W = V / sqrt(|P_out|)`` (spec §1.4)."""
        return v * self.scale

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        """``V = sqrt(|P_out|) W`` (spec §1.4): what assigning a kernel stores."""
        return w / self.scale


class CircularConv2d(nn.Conv2d):
    """Circular cross-correlation with one-sided end wrap and stride ``s``, bias multiplier ``β``:

    ``y_i(p) = Σ_j Σ_q W_ij(q) z_j((s p + q) mod n) + β b_i`` (conv_bottleneck §1.2 in PyTorch's layout).

    It is an ``nn.Conv2d`` with ``padding=0`` and ``padding_mode="circular"``, so
    :func:`freqlens.spectral.conv.module_transfer_matrices` reads its exact multiplier
    ``T(ω) = conj(fft2(W, s=grid))(ω)`` on the input grid; the stride keeps every ``s``-th output pixel
    (aliasing blocks, C5b). The output has size ``n/s``; ``s`` must divide the input size and the kernel
    must fit in the grid (both checked in ``forward`` with a message naming the problem).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        bias: bool = True,
        bias_multiplier: float = 1.0,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias, padding_mode="circular"
        )
        self.bias_multiplier = float(bias_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class's equation on ``(N, c_in, H, W)`` maps: one dense matrix for small layers, the FFT route for
        large kernels, a circular-padded ``conv2d`` for small ones (the layerwise route)."""
        kh, kw = self.kernel_size
        sh, sw = self.stride
        h, w = x.shape[-2], x.shape[-1]
        if kh > h or kw > w:
            raise ValueError(f"CircularConv2d: kernel {kh}x{kw} is larger than the input grid {h}x{w}")
        if h % sh or w % sw:
            raise ValueError(f"CircularConv2d: stride {(sh, sw)} does not divide the input grid {h}x{w}")
        weight = self.weight
        cout, cin = weight.shape[0], weight.shape[1]
        pout = (h // sh) * (w // sw)
        if cout * pout * cin * h * w <= _DENSE_MAX_ENTRIES and kh * kw >= _FFT_MIN_TAPS:
            # the layer's operator as one (c_out P_out) × (c_in P_in) matrix: M[o,p,i,r] = W[o,i,(r - s p) mod n]
            full = F.pad(weight, (0, w - kw, 0, h - kh)).reshape(cout, cin, h * w)
            index = _circular_index(h, w, (sh, sw), x.device)
            mat = full[:, :, index].permute(0, 2, 1, 3).reshape(cout * pout, cin * h * w)
            y = (x.reshape(x.shape[0], cin * h * w) @ mat.T).reshape(x.shape[0], cout, h // sh, w // sw)
        elif kh * kw >= _FFT_MIN_TAPS:
            xf = torch.fft.rfft2(x)  # (N, c_in, h, w//2+1)
            wf = torch.fft.rfft2(weight, s=(h, w)).conj()  # (c_out, c_in, h, w//2+1)
            yf = torch.einsum("oiuv,niuv->nouv", wf, xf)
            y = torch.fft.irfft2(yf, s=(h, w))
            if (sh, sw) != (1, 1):
                y = y[..., ::sh, ::sw]
        else:
            y = F.conv2d(F.pad(x, (0, kw - 1, 0, kh - 1), mode="circular"), weight, None, self.stride)
        if self.bias is not None:
            y = y + self.bias_multiplier * self.bias[None, :, None, None]
        return y


class BiasScaledLinear(nn.Linear):
    """``y = W x + β b``: the FC head with the same bias multiplier as the conv layers."""

    def __init__(self, in_features: int, out_features: int, bias_multiplier: float = 1.0) -> None:
        super().__init__(in_features, out_features, bias=True)
        self.bias_multiplier = float(bias_multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + β b`` (spec §1.2, bias reading (i))."""
        return F.linear(x, self.weight, self.bias_multiplier * self.bias)


class CircularCNN(nn.Module):
    """Deep circular ReLU CNN (conv_bottleneck §1.2, §4.0).

    Args:
        in_channels / out_channels: ``c_0`` and ``c_L`` (``out_channels`` = classes with the GAP+FC head).
        width: ``c_ℓ`` of every hidden layer.
        depth: ``L``, the number of weight layers (the FC head counts as one).
        grid: input size ``(H, W)`` (or ``n``).
        kernel_size: ``None`` for full-size kernels (the size of each layer's input grid), else ``k``.
        downsample_at: 1-based conv layers with stride 2 (e.g. ``(2, 4)`` for Fig. 1).
        bias_multiplier: β (reading (i) of spec ambiguity 1).
        head: ``"none"`` (output ``α_L``, ``out_channels`` maps) or ``"gap_fc"``.
        operator_normalised: store ``V = sqrt(|P_out|) W`` (module docstring); else plain weights.
        generator: seeds the He (fan-in) initialisation; biases start at 0.
        fused: let :meth:`forward` take the fused frequency-major route where it applies (same function).
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        depth: int,
        grid: int | Sequence[int],
        kernel_size: int | None = None,
        downsample_at: Sequence[int] = (),
        bias_multiplier: float = 1.0,
        head: Head = "none",
        operator_normalised: bool = True,
        generator: torch.Generator | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("width", width), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if head not in ("none", "gap_fc"):
            raise ValueError(f"head must be 'none' or 'gap_fc', got {head!r}")
        n_conv = depth - 1 if head == "gap_fc" else depth
        if not isinstance(depth, int) or n_conv < 1:
            raise ValueError(f"depth must leave at least one conv layer, got depth={depth!r} with head={head!r}")
        h, w = (int(grid), int(grid)) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
        bad = [s for s in downsample_at if not 1 <= int(s) <= n_conv]
        if bad:
            raise ValueError(f"downsample_at entries must be conv layers 1..{n_conv}, got {bad}")
        if kernel_size is not None and (kernel_size < 1 or kernel_size > min(h, w)):
            raise ValueError(f"kernel_size must be in [1, {min(h, w)}] (the input grid), got {kernel_size}")
        self.depth = depth
        self.head = head
        self.bias_multiplier = float(bias_multiplier)
        self.operator_normalised = operator_normalised
        self.fused = bool(fused)
        self.input_grid = (h, w)
        self.downsample_at = tuple(sorted(int(s) for s in downsample_at))
        self.convs = nn.ModuleList()
        self.grids: list[tuple[int, int]] = []  # input grid of each conv
        size = (h, w)
        for layer in range(1, n_conv + 1):
            stride = 2 if layer in self.downsample_at else 1
            if size[0] % stride or size[1] % stride:
                raise ValueError(f"layer {layer}: stride 2 does not divide its input grid {size[0]}x{size[1]}")
            cin = in_channels if layer == 1 else width
            cout = out_channels if (layer == n_conv and head == "none") else width
            k = (size[0], size[1]) if kernel_size is None else (min(kernel_size, size[0]), min(kernel_size, size[1]))
            conv = CircularConv2d(cin, cout, k, stride=stride, bias=True, bias_multiplier=bias_multiplier)
            gain = 1.0 if (layer == n_conv and head == "none") else 2.0  # He for ReLU layers, 1/fan_in for the output
            std = math.sqrt(gain / (cin * k[0] * k[1]))
            with torch.no_grad():
                conv.weight.normal_(0.0, std, generator=generator)
                assert conv.bias is not None
                conv.bias.zero_()
            self.grids.append(size)
            size = (size[0] // stride, size[1] // stride)
            if operator_normalised:
                parametrize.register_parametrization(conv, "weight", OperatorScale(size[0] * size[1]))
            self.convs.append(conv)
        self.output_grid = size
        self.fc: BiasScaledLinear | None = None
        if head == "gap_fc":
            self.fc = BiasScaledLinear(width, out_channels, bias_multiplier)
            with torch.no_grad():
                self.fc.weight.normal_(0.0, math.sqrt(1.0 / width), generator=generator)
                self.fc.bias.zero_()

    # ------------------------------------------------------------------ structure
    @property
    def num_conv(self) -> int:
        """Number of conv layers (``L`` minus the FC head)."""
        return len(self.convs)

    @property
    def conv_layers(self) -> list[CircularConv2d]:
        """The conv layers, typed."""
        return [cast(CircularConv2d, conv) for conv in self.convs]

    @property
    def conv_names(self) -> list[str]:
        """Qualified names of the conv layers (for ``weight_spectra`` / ``activation_spectra``)."""
        return [f"convs.{i}" for i in range(self.num_conv)]

    def output_pixels(self, layer: int) -> int:
        """``|P_out|`` of conv layer ``layer`` (1-based)."""
        h, w = self.grids[layer - 1]
        s = 2 if layer in self.downsample_at else 1
        return (h // s) * (w // s)

    # ------------------------------------------------------------------ forward
    def hidden(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Pre-activation ``α_layer(x)`` of conv layer ``layer`` (1-based)."""
        if not 1 <= layer <= self.num_conv:
            raise ValueError(f"layer must be in 1..{self.num_conv}, got {layer}")
        a = self.convs[0](x)
        for conv in self.convs[1:layer]:
            a = conv(torch.relu(a))
        return a

    def forward_from(self, alpha: torch.Tensor, layer: int) -> torch.Tensor:
        """Continue the forward pass from the pre-activation ``α_layer`` to the output."""
        if not 1 <= layer <= self.num_conv:
            raise ValueError(f"layer must be in 1..{self.num_conv}, got {layer}")
        a = alpha
        for conv in self.convs[layer:]:
            a = conv(torch.relu(a))
        if self.fc is None:
            return a
        return self.fc(torch.relu(a).mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f_θ(x)`` (module docstring): the fused frequency-major route when it applies (:meth:`uses_fused`),
        else layer by layer (:meth:`forward_layerwise`); both compute the same function."""
        if self.uses_fused():
            return self.forward_fused(x)
        return self.forward_layerwise(x)

    def forward_layerwise(self, x: torch.Tensor) -> torch.Tensor:
        """``f_θ(x)`` by calling each ``CircularConv2d`` on ``(N, C, H, W)`` maps (their forward hooks fire)."""
        return self.forward_from(self.convs[0](x), 1)

    def uses_fused(self) -> bool:
        """Whether :meth:`forward` takes the fused route: every conv has a full-size-like kernel (no conv would
        take the direct route) and no conv has a forward (pre-)hook (the fused route does not call the conv
        modules, so hooks would not fire).

        Layers small enough for one dense matrix do not make the network layerwise, whether a few of them (one
        input or output channel, as in cbn-fig2/fig3) or all of them: one Adam step of the cbn-fig3 quick network
        (c = 10, 1 channel in and out, 16×16) took 66-70 ms layerwise and 22-23 ms fused, of the cbn-fig1 quick
        network (14×14, c = 12, every layer dense-sized) 84 ms and 25 ms, and of the cbn-depth quick network
        (6×6, c = 6) 16.0 and 15.7 ms, another time 10.8 and 12.2 ms: within the noise (docs/conv_bottleneck.md)."""
        if not self.fused or torch.nn.modules.module._global_forward_hooks:
            return False
        if torch.nn.modules.module._global_forward_pre_hooks:
            return False
        for conv in self.conv_layers:
            kh, kw = conv.kernel_size
            if kh * kw < _FFT_MIN_TAPS or conv._forward_hooks or conv._forward_pre_hooks:
                return False
        return True

    def forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """``f_θ(x)`` with the activations kept spatial-major ``(H, W, C, N)`` between layers, each conv one
        batched per-frequency block product (:func:`freqlens.models.circular_fft.circular_correlation_hwcn`, spec
        §1.2, C5b); the same function as :meth:`forward_layerwise`."""
        if x.dim() != 4 or x.shape[1] != self.conv_layers[0].in_channels or tuple(x.shape[-2:]) != self.input_grid:
            raise ValueError(
                f"x must be (N, {self.conv_layers[0].in_channels}, {self.input_grid[0]}, {self.input_grid[1]}), "
                f"got {tuple(x.shape)}"
            )
        a = x.permute(2, 3, 1, 0)
        for i, conv in enumerate(self.conv_layers):
            z = a if i == 0 else torch.relu(a)
            a = circular_correlation_hwcn(z, conv.weight, (conv.stride[0], conv.stride[1]))
            if conv.bias is not None:
                a = a + conv.bias_multiplier * conv.bias[:, None]
        if self.fc is None:
            return a.permute(3, 2, 0, 1)
        return self.fc(torch.relu(a).mean(dim=(0, 1)).T)

    # ------------------------------------------------------------------ norms (spec §1.4)
    def conv_kernels(self) -> list[torch.Tensor]:
        """The true kernels ``W_ℓ`` (after the operator parametrization)."""
        return [conv.weight for conv in self.conv_layers]

    def operator_norm_sq(self, include_bias: bool = False) -> torch.Tensor:
        """``‖θ‖²_op = Σ_ℓ |P_out,ℓ| ‖W_ℓ‖² + ‖W_fc‖²`` (+ ``Σ‖b_ℓ‖²`` if ``include_bias``), spec §1.4."""
        total = sum(
            (self.output_pixels(i + 1) * conv.weight.pow(2).sum() for i, conv in enumerate(self.conv_layers)),
            torch.zeros(()),
        )
        if self.fc is not None:
            total = total + self.fc.weight.pow(2).sum()
        if include_bias:
            total = total + self.bias_norm_sq()
        return total

    def plain_norm_sq(self, include_bias: bool = False) -> torch.Tensor:
        """``Σ_ℓ ‖W_ℓ‖² + ‖W_fc‖²`` (+ biases): the plain parameter norm of the true kernels."""
        total = sum((conv.weight.pow(2).sum() for conv in self.conv_layers), torch.zeros(()))
        if self.fc is not None:
            total = total + self.fc.weight.pow(2).sum()
        if include_bias:
            total = total + self.bias_norm_sq()
        return total

    def penalty_factors(self, norm: PenaltyNorm = "operator") -> list[tuple[torch.Tensor, float]]:
        """Every trained tensor ``t`` (in ``parameters()`` order) with the factor ``f`` such that
        ``Σ f ‖t‖²`` is the chosen reading of ``‖θ‖²`` (spec §1.4, ambiguity 3), biases included:

        * ``"operator"``: ``Σ_ℓ |P_out,ℓ| ‖W_ℓ‖² + ‖W_fc‖² + ‖b‖²`` (``= ‖θ‖²_op + ‖b‖²``);
        * ``"plain"``: ``Σ_ℓ ‖W_ℓ‖² + ‖W_fc‖² + ‖b‖²``, i.e. ``|P_out,ℓ|`` times weaker on conv kernels.

        The factor of a conv kernel is the ratio of the chosen norm to the trained tensor's own: with the
        operator parametrization the trained tensor is ``V = sqrt(|P_out|) W`` (so ``1`` or ``1/|P_out|``),
        without it ``W`` (``|P_out|`` or ``1``). Biases and the FC head have factor 1 in both readings.
        """
        if norm not in get_args(PenaltyNorm):
            raise ValueError(f"norm must be one of {', '.join(get_args(PenaltyNorm))}, got {norm!r}")
        factor_of: dict[int, float] = {}
        for layer, conv in enumerate(self.conv_layers, start=1):
            pixels = float(self.output_pixels(layer))
            if self.operator_normalised:
                tensor = dict(conv.named_parameters())["parametrizations.weight.original"]
                factor_of[id(tensor)] = 1.0 if norm == "operator" else 1.0 / pixels
            else:
                factor_of[id(conv.weight)] = pixels if norm == "operator" else 1.0
        return [(p, factor_of.get(id(p), 1.0)) for p in self.parameters() if p.requires_grad]

    def bias_norm_sq(self) -> torch.Tensor:
        """``Σ_ℓ ‖b_ℓ‖² (+ ‖b_fc‖²)``: the bias part of the penalty (spec §1.4)."""
        terms = [conv.bias.pow(2).sum() for conv in self.conv_layers if conv.bias is not None]
        if self.fc is not None:
            terms.append(self.fc.bias.pow(2).sum())
        return torch.stack(terms).sum()
