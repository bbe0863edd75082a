"""Measurements of the decoder paper (``spec/decoder_spectra.md``) on random or trained conv nets: per-layer
``p_low`` (§4 item 7), the second-order moment ``SOM(h) = E|H_uv|²`` per layer (§4 item 5, Thm 4.2), least-squares
slopes of ``log SOM`` in depth, monotone trends along a setting, where Thm 4.3 puts the leak of a zero padding,
when each radial band of a training run first falls below an error threshold and in which order (§4 item 3), how
much a magnitude map peaks at the DC replicas of an upsampling (Thm 4.4, Fig. 1b / Fig. 7), and the paper's route
to the layer spectra and to the weight-update change of the transfer matrices (Cor. 3.3 / 3.4, Fig. 3).

The ``decoder-*`` experiments call these; nothing here knows about an experiment or a run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from ..fourier import conv2d_transfer_matrices
from ..hooks import capture_layers, select_layers
from ..spectral.conv import conv_geometry
from ..spectral.maps import low_frequency_mask, magnitude_cosine_similarity, p_low, radial_frequency
from ..spectral.propagation import (
    apply_transfer,
    assumed_circular_transfer_matrices,
    cascade_dc_offset,
    conv2d_weight_update_transfer_change,
)
from ..theory.decoder_som import zero_padding_som_gain

__all__ = [
    "conv_outputs",
    "first_crossings",
    "linear_fit",
    "log_som_at",
    "monotone_trend",
    "network_family_statistics",
    "paper_route_spectra",
    "per_network_slopes",
    "radial_band_index",
    "som_per_layer",
    "spectra_statistics",
    "weight_update_similarities",
    "zero_padding_leak_shares",
]


def conv_outputs(model: nn.Sequential, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run a model once; return the (pre-activation) output of every ``nn.Conv2d`` call and the input it
    received, in call order (no grad). Layers are seen through :func:`freqlens.hooks.capture_layers` (plumbing)."""
    outs: list[torch.Tensor] = []
    ins: list[torch.Tensor] = []

    def record(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Keep one conv call's input and output (plumbing)."""
        ins.append(inputs[0])
        outs.append(output)

    with torch.no_grad(), capture_layers(select_layers(model, types=(nn.Conv2d,)), record):
        model(x)
    return outs, ins


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line ``y ≈ a x + b``: returns ``(slope a, intercept b, R²)`` (the depth slope of Fig. 5)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    return float(a), float(b), r2


def _batch_parts(model: nn.Sequential, xb: torch.Tensor, low_fraction: float) -> dict[str, np.ndarray]:
    """Sums over one batch of :func:`spectra_statistics`: defined ``p_low`` sums and counts, last-layer ``|H|``."""
    outs, _ = conv_outputs(model, xb)
    specs = [torch.fft.fft2(o.to(torch.float64)) for o in outs]
    pl = np.stack([p_low(h, low_fraction) for h in specs])  # (L, B)
    pn = np.stack([p_low(h, low_fraction, exclude_dc=True) for h in specs])
    return {
        "p_low_sum": np.nansum(pl, axis=1),
        "p_low_n": np.isfinite(pl).sum(axis=1),
        "p_low_no_dc_sum": np.nansum(pn, axis=1),
        "p_low_no_dc_n": np.isfinite(pn).sum(axis=1),
        "output_magnitude": specs[-1].abs().mean(dim=1).sum(dim=0).cpu().numpy(),
    }


def spectra_statistics(
    model: nn.Sequential, x: torch.Tensor, batch_size: int = 64, low_fraction: float = 1 / 8
) -> dict[str, np.ndarray]:
    """Per conv layer of a sequential net on images ``x``: ``p_low`` and ``p_low`` without DC (mean over
    images, §4 item 7) and the mean magnitude map ``E_{b,c}|H|`` of the last conv output.

    ``p_low`` is undefined for an image whose layer output is identically zero (e.g. every ReLU dead): such
    images are left out of that layer's mean and **counted** in ``undefined_images`` (never silently 0).
    The forward pass runs in the model's dtype; spectra are taken in float64. Returns
    ``{"p_low": (L,), "p_low_no_dc": (L,), "undefined_images": (L,), "output_magnitude": (H, W)}``."""
    sums: dict[str, Any] = {}
    count = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(next(model.parameters()).dtype)
        for key, val in _batch_parts(model, xb, low_fraction).items():
            sums[key] = val if key not in sums else sums[key] + val
        count += xb.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "p_low": np.where(sums["p_low_n"] > 0, sums["p_low_sum"] / np.maximum(sums["p_low_n"], 1), np.nan),
            "p_low_no_dc": np.where(
                sums["p_low_no_dc_n"] > 0, sums["p_low_no_dc_sum"] / np.maximum(sums["p_low_no_dc_n"], 1), np.nan
            ),
            "undefined_images": count - sums["p_low_n"],
            "output_magnitude": sums["output_magnitude"] / count,
        }


def network_family_statistics(
    make_network: Callable[[int], nn.Sequential], networks: int, x: torch.Tensor, low_fraction: float
) -> dict[str, np.ndarray]:
    """:func:`spectra_statistics` of ``networks`` random nets ``make_network(0), make_network(1), ...`` on
    the same images (§5 item 11: single random nets are noisy): ``p_low`` / ``p_low_no_dc`` /
    ``undefined_images`` stacked ``(networks, L)``, and the output ``magnitude`` map averaged over the nets."""
    stats = [spectra_statistics(make_network(s).eval(), x.float(), low_fraction=low_fraction) for s in range(networks)]
    return {
        "p_low": np.stack([st["p_low"] for st in stats]),
        "p_low_no_dc": np.stack([st["p_low_no_dc"] for st in stats]),
        "magnitude": np.mean([st["output_magnitude"] for st in stats], axis=0),
        "undefined_images": np.stack([st["undefined_images"] for st in stats]),
    }


def monotone_trend(values: Sequence[float], along: str = "K") -> str:
    """Whether ``values`` increase, decrease or are not monotone along the setting ``along`` (Fig. 4d read-out)."""
    if all(b > a for a, b in itertools.pairwise(values)):
        return f"increases with {along}"
    if all(b < a for a, b in itertools.pairwise(values)):
        return f"decreases with {along}"
    return f"not monotone in {along}"


def som_per_layer(net: nn.Sequential, x: torch.Tensor) -> np.ndarray:
    """``SOM(h) = E_{b,c}|H|²`` after every conv layer of a sequential net (§4 item 5): float64 ``(L, H, W)``."""
    soms = []
    h = x
    with torch.no_grad():
        for layer in net:
            h = layer(h)
            if isinstance(layer, nn.Conv2d):
                soms.append((torch.fft.fft2(h).abs() ** 2).mean(dim=(0, 1)).cpu().numpy())
    return np.stack(soms)


def log_som_at(som_nets: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """``log SOM`` per network, layer and chosen frequency, ``(networks, L, F)``; ``-inf`` (a zero SOM) -> NaN."""
    with np.errstate(divide="ignore"):
        out = np.log(som_nets[:, :, freqs[:, 0], freqs[:, 1]])
    return np.where(np.isfinite(out), out, np.nan)


def per_network_slopes(log_som: np.ndarray, layers: np.ndarray, frequency: int) -> np.ndarray:
    """Least-squares slope of ``log SOM`` in depth per network at chosen frequency number ``frequency`` (Fig. 5,
    Thm 4.2: the slope is the per-layer growth ``log(|μR_uv|² + K²σ²)``); NaN where a layer's SOM is zero."""
    return np.array(
        [
            linear_fit(layers, net[:, frequency])[0] if np.isfinite(net[:, frequency]).all() else np.nan
            for net in log_som
        ]
    )


def zero_padding_leak_shares(size: tuple[int, ...], pad: int, low_fraction: float) -> dict[str, float]:
    """Where Thm 4.3's leak ``a²τ_uv²`` of one zero padding ``M → M + 2p`` lands: share on the axes
    (``u = 0`` or ``v = 0``) and share inside ``Ω_low`` (i.i.d. pixels; the theorem's own setting)."""
    m, n = int(size[0]), int(size[1])
    gain = zero_padding_som_gain(1.0, (m, n), (m + 2 * pad, n + 2 * pad))
    axes = np.zeros_like(gain, dtype=bool)
    axes[0, :] = True
    axes[:, 0] = True
    total = float(gain.sum())
    return {
        "share_on_axes": round(float(gain[axes].sum()) / total, 4),
        "share_in_omega_low": round(float(gain[low_frequency_mask((m, n), low_fraction)].sum()) / total, 4),
    }


def radial_band_index(grid: tuple[int, int], edges: Sequence[float]) -> np.ndarray:
    """The radial band of every frequency of ``grid`` between consecutive ``edges`` (cycles/pixel; decoder §4
    item 3): ``(H, W)`` integers in ``[0, len(edges) - 2]``."""
    rho = radial_frequency(grid)
    idx = np.searchsorted(np.asarray(edges), rho, side="right") - 1
    return np.clip(idx, 0, len(edges) - 2)


def first_crossings(values: np.ndarray, times: np.ndarray, threshold: float) -> tuple[list[float | None], bool]:
    """Per column of ``values`` ``(T, bands)`` the first time in ``times`` at which it falls below ``threshold``
    (``None``: never), and whether the crossings come in column order (Fig. 1a: low bands are learned first;
    a band that never crosses may only follow bands that never cross either)."""
    crossings: list[float | None] = []
    for b in range(values.shape[1]):
        below = np.flatnonzero(values[:, b] < threshold)
        crossings.append(float(times[below[0]]) if below.size else None)
    ordered = all(
        (a is not None and (b is None or a <= b)) or (a is None and b is None) for a, b in itertools.pairwise(crossings)
    )
    return crossings, ordered


def crossing_order_correlation(crossings: Sequence[float | None], never: float) -> float:
    """Spearman's rank correlation ``ρ`` between the band index (low → high) and the band's first crossing
    time (:func:`first_crossings`; a band that never crosses is placed at ``never``, later than every time
    measured, so the bands that never cross tie after the others). ``ρ = 1``: the bands cross strictly from low
    to high (Fig. 1a, low frequencies learned first); ``ρ = -1``: high first. ``nan`` when every band ties (none
    crossed, or all at one time): the order is then undefined. The per-network statistic of decoder-learning's
    band-order claim (§4 item 3)."""
    times = np.array([never if c is None else c for c in crossings], dtype=np.float64)
    if times.size < 2 or np.all(times == times[0]):
        return float("nan")
    return float(stats.spearmanr(np.arange(times.size), times).statistic)


def replica_peak_ratio(magnitude: np.ndarray, replicas: np.ndarray) -> float:
    """Mean magnitude at the DC replica positions ``replicas`` ``(P, 2)`` (DC itself excluded by the caller)
    over the mean magnitude at their 8 circular neighbours on the grid of ``magnitude`` ``(H, W)``: ``> 1`` means
    the map peaks at Thm 4.4's replica positions (the grid pattern of upsampling, App. C.1 Fig. 7 / Fig. 9)."""
    grid = magnitude.shape
    offsets = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
    neigh_u = np.concatenate([(replicas[:, 0] + a) % grid[0] for a, _ in offsets])
    neigh_v = np.concatenate([(replicas[:, 1] + b) % grid[1] for _, b in offsets])
    return float(magnitude[replicas[:, 0], replicas[:, 1]].mean() / magnitude[neigh_u, neigh_v].mean())


def paper_route_spectra(convs: list[nn.Conv2d], g: torch.Tensor) -> list[torch.Tensor]:
    """Cor. 3.3 from the input spectrum with every layer read as circular (Assumption 3.1), ReLU ignored."""
    size = (int(g.shape[-2]), int(g.shape[-1]))
    ts = [assumed_circular_transfer_matrices(c, size, f"conv{i + 1}") for i, c in enumerate(convs)]
    out = []
    h = g
    for l in range(len(convs)):
        h = apply_transfer(ts[l], h)
        beta_l = cascade_dc_offset(ts[: l + 1], [c.bias for c in convs[: l + 1]])
        pred = h.clone()
        pred[:, :, 0, 0] += beta_l
        out.append(pred)
    return out


def weight_update_similarities(net: nn.Sequential, x: torch.Tensor, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Cor. 3.4 / Fig. 3b. One SGD step on MSE(net(x), x): per conv layer, sim(|ΔT*|, |ΔT|) of the paper route
    (circular reading, M×N grid) and the max relative error of the exact route (padded grid)."""
    convs = [(n, m) for n, m in net.named_children() if isinstance(m, nn.Conv2d)]
    saved: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def keep(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Keep one conv call's input and a slot for the gradient of its output (plumbing)."""
        grads: list[torch.Tensor] = []
        output.register_hook(lambda grad: grads.append(grad.detach()))
        saved[name] = (inputs[0].detach(), grads)

    net.zero_grad(set_to_none=True)
    with capture_layers(convs, keep):
        F.mse_loss(net(x), x).backward()
    sims, errs = [], []
    for name, conv in convs:
        xin, grads = saved[name]
        assert conv.weight.grad is not None and len(grads) == 1
        step = -lr * conv.weight.grad.detach()
        size = (int(xin.shape[-2]), int(xin.shape[-1]))
        pad = conv_geometry(conv, name).padding
        real = conv2d_transfer_matrices(step, size, pad)  # ΔT* on the M×N grid (PyTorch phase)
        paper = conv2d_weight_update_transfer_change(conv, grads[0], xin, lr, name, assume_circular=True)
        per_d = magnitude_cosine_similarity(real.permute(2, 3, 0, 1), paper.permute(2, 3, 0, 1))
        sims.append(float(per_d.mean()))
        exact = conv2d_weight_update_transfer_change(conv, grads[0], xin, lr, name)
        real_grid = conv2d_transfer_matrices(step, exact.shape[:2], pad if conv.padding_mode == "circular" else 0)
        errs.append(float((exact - real_grid).abs().max() / real_grid.abs().max()))
    net.zero_grad(set_to_none=True)
    return np.array(sims), np.array(errs)
