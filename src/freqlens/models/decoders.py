"""The decoder paper's networks (``spec/decoder_spectra.md`` §4), as plain ``nn.Sequential`` models.

* :func:`conv_stack`: ``depth`` conv layers with ``width`` kernels each (optionally ReLU after every layer
  but the last), size-preserving padding (``zeros`` / ``circular`` / ``reflect``), stride 1, biases. The
  paper's 10-layer nets of Fig. 3 (§4 item 1), 5-layer nets of Fig. 4 (items 4, 6, 7) and 50-layer nets of
  Fig. 5 (item 5) are instances (:func:`fit_network`, :func:`five_layer_network`, :func:`deep_network`).
* :func:`upsampling_chain`: pure cascaded upsampling (item 11a), zero insertion / nearest / bilinear.
* :func:`conv_autoencoder`: a small CIFAR-10/MNIST conv auto-encoder whose decoder is made of transposed
  convs (``K=4, s=2, P=1``, zero padding) each followed by batch norm and ReLU, as in items 3 and 11b. The
  paper's VGG-16 encoder is replaced by a small strided-conv encoder (CPU budget; see
  ``docs/decoder_spectra.md``).
* :func:`init_normal_`: i.i.d. ``N(μ, σ²)`` conv weights (Assumption 4.1; items 6, 8).

Layers are named (``conv1``, ``relu1``, ...) so reports and figures can refer to them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal, cast

import torch
from torch import nn

from .._validation import check_choice, check_positive_int
from ..spectral.propagation import ZeroInsertionUpsample

__all__ = [
    "conv_autoencoder",
    "conv_stack",
    "deep_network",
    "fit_network",
    "five_layer_network",
    "init_normal_",
    "upsampling_chain",
]

PADDING_MODES = ("zeros", "circular", "reflect")


def conv_stack(
    depth: int,
    in_channels: int = 3,
    width: int = 16,
    out_channels: int | None = None,
    kernel_size: int = 3,
    padding_mode: str = "zeros",
    relu: bool = True,
    bias: bool = True,
) -> nn.Sequential:
    """``depth`` size-preserving conv layers (stride 1, padding ``K//2``), ``width`` kernels each and
    ``out_channels`` (default ``width``) in the last; ReLU after every layer except the last when ``relu``.

    Layer names: ``conv1..convL`` and ``relu1..relu{L-1}``. ``kernel_size`` must be odd (same size).
    """
    depth = check_positive_int("depth", depth)
    check_positive_int("in_channels", in_channels)
    check_positive_int("width", width)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    k = check_positive_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd for a size-preserving conv stack, got {k}")
    last = width if out_channels is None else check_positive_int("out_channels", out_channels)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = in_channels
    for l in range(1, depth + 1):
        c_out = last if l == depth else width
        mode = cast(Literal["zeros", "reflect", "replicate", "circular"], padding_mode)
        layers[f"conv{l}"] = nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode=mode, bias=bias)
        if relu and l < depth:
            layers[f"relu{l}"] = nn.ReLU()
        c_in = c_out
    return nn.Sequential(layers)


def fit_network(
    kind: str, in_channels: int = 3, depth: int = 10, width: int = 16, out_channels: int = 3
) -> nn.Sequential:
    """The three 10-layer networks of Fig. 3 (§4 item 1): 16 kernels of 3×3 per layer, biases, stride 1.

    ``kind``: ``"zero_relu"`` (zero padding + ReLU), ``"zero_linear"`` (zero padding, no ReLU) or
    ``"circular_linear"`` (circular padding, no ReLU: exactly Assumption 3.1). The paper does not say what
    the last layer outputs or which loss drives the update of Fig. 3b (§7.11): here the last layer has
    ``out_channels = 3`` kernels so the net maps an image to an image (MSE reconstruction loss).
    """
    check_choice("kind", kind, ("zero_relu", "zero_linear", "circular_linear"))
    mode = "circular" if kind == "circular_linear" else "zeros"
    return conv_stack(depth, in_channels, width, out_channels, 3, mode, relu=kind == "zero_relu")


def five_layer_network(
    kernel_size: int = 7, padding_mode: str = "zeros", in_channels: int = 3, width: int = 16, out_channels: int = 3
) -> nn.Sequential:
    """The 5-layer networks of Fig. 4 (§4 items 4, 6, 7): 16 kernels per layer, 3 in the last, ReLU."""
    return conv_stack(5, in_channels, width, out_channels, kernel_size, padding_mode, relu=True)


def deep_network(
    depth: int = 50, in_channels: int = 3, width: int = 16, padding_mode: str = "zeros", relu: bool = True
) -> nn.Sequential:
    """The 50-layer network of Fig. 5 (§4 item 5): zero padding, ReLU, 3×3 kernels (width not stated; 16)."""
    return conv_stack(depth, in_channels, width, width, 3, padding_mode, relu=relu)


def init_normal_(
    model: nn.Module, mean: float, std: float, bias: float = 0.0, generator: torch.Generator | None = None
) -> nn.Module:
    """Set every conv / transposed-conv weight to i.i.d. ``N(mean, std²)`` and biases to ``bias``
    (Assumption 4.1; §4 items 5, 6, 8). Returns ``model``."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                w = torch.randn(module.weight.shape, generator=generator, dtype=torch.float64)
                module.weight.copy_((mean + std * w).to(module.weight.dtype))
                if module.bias is not None:
                    module.bias.fill_(bias)
    return model


def upsampling_chain(steps: int, mode: str = "zero_insertion", factor: int = 2) -> nn.Sequential:
    """``steps`` cascaded upsamplings by ``factor`` (§4 item 11a: 32→64→...→512 for 4 steps):
    ``"zero_insertion"`` (Thm 4.4), ``"nearest"`` or ``"bilinear"`` (``align_corners=False``)."""
    steps = check_positive_int("steps", steps)
    check_choice("mode", mode, ("zero_insertion", "nearest", "bilinear"))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for s in range(1, steps + 1):
        if mode == "zero_insertion":
            layers[f"up{s}"] = ZeroInsertionUpsample(factor)
        else:
            layers[f"up{s}"] = nn.Upsample(
                scale_factor=factor, mode=mode, align_corners=False if mode == "bilinear" else None
            )
    return nn.Sequential(layers)


def conv_autoencoder(
    in_channels: int = 3,
    widths: Sequence[int] = (32, 64, 128),
    batch_norm: bool = True,
) -> nn.Sequential:
    """Conv auto-encoder with a transposed-conv decoder (§4 items 3, 11b), ``nn.Sequential(encoder, decoder)``.

    Encoder: ``conv3×3 (in→w_0)``, then one ``conv4×4 stride 2 pad 1`` per width (``w_0→w_0→w_1→...``),
    each followed by BN and ReLU: ``len(widths)`` halvings (32×32 → 4×4 for three widths).
    Decoder: one ``ConvTranspose2d(K=4, s=2, P=1)`` per width in reverse order, each followed by BN and
    ReLU (zero padding, as in the paper), then ``conv3×3 (w_0→in)`` (linear output). Spatial sizes must be
    divisible by ``2**len(widths)``.
    """
    check_positive_int("in_channels", in_channels)
    ws = [check_positive_int("width", w) for w in widths]
    if not ws:
        raise ValueError("widths must name at least one level")

    def block(conv: nn.Module, c: int) -> list[nn.Module]:
        return [conv, *([nn.BatchNorm2d(c)] if batch_norm else []), nn.ReLU()]

    enc: list[nn.Module] = block(nn.Conv2d(in_channels, ws[0], 3, padding=1), ws[0])
    chans = [ws[0], *ws]
    for i in range(len(ws)):
        enc += block(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1), chans[i + 1])
    dec: list[nn.Module] = []
    rev = chans[::-1]  # w_{n-1}, ..., w_0, w_0
    for i in range(len(ws)):
        dec += block(nn.ConvTranspose2d(rev[i], rev[i + 1], 4, stride=2, padding=1), rev[i + 1])
    dec.append(nn.Conv2d(ws[0], in_channels, 3, padding=1))
    return nn.Sequential(OrderedDict(encoder=nn.Sequential(*enc), decoder=nn.Sequential(*dec)))
