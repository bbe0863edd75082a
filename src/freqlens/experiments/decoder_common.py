"""Helpers shared by the decoder-paper experiments (``decoder-*``): data, layer outputs, fits, figures.

Registers no experiment. Datasets: the paper's Tiny-ImageNet and Broden are not available to freqlens, so
the experiments use CIFAR-10 (32×32 RGB) and MNIST (28×28 grey) instead (``docs/decoder_spectra.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from torch import nn

from ..analysis.statistics import Claim, Direction, directional_claim
from ..datasets import load_cifar10, load_mnist
from ..hooks import capture_layers, select_layers
from ..plots import MODE_COLORS
from ..spectral.maps import clip_dc_for_display, mean_magnitude_map, p_low
from .registry import RunContext

__all__ = [
    "DATASET_LABELS",
    "DC_LEGEND",
    "compare_output_p_low",
    "conv_outputs",
    "draw_magnitude",
    "draw_p_low_bars",
    "linear_fit",
    "load_images",
    "log_display",
    "mean_std",
    "network_family_statistics",
    "spectra_statistics",
]

DATASET_LABELS = {"cifar10": "CIFAR-10", "mnist": "MNIST", "white": "white noise 64x64"}
#: Legend for bar charts drawn as "with DC" (plain) / "without DC" (hatched) pairs.
DC_LEGEND = [
    Patch(facecolor="white", edgecolor="k", lw=0.5, label="with DC"),
    Patch(facecolor="white", edgecolor="k", lw=0.5, hatch="//", label="without DC"),
]
#: Size of the synthetic white-noise images (spec §5 item 11 uses 64×64 white input, 3 channels).
WHITE_SHAPE = (3, 64, 64)


def load_images(ctx: RunContext, dataset: str, count: int, offset: int = 0, split: str = "test") -> torch.Tensor:
    """``count`` images of ``dataset``, float64 ``(N, C, H, W)``, standardised per channel with the subset's
    own mean and std (the usual CNN input preprocessing; it removes most of the DC bin of raw ``[0, 1]``
    images; choice documented in ``docs/decoder_spectra.md``).

    ``"cifar10"`` / ``"mnist"``: a random subset of the split drawn with
    ``ctx.rng("<dataset>_<split>_images", legacy_offset=offset)``. ``"white"``: i.i.d. standard normal images of
    shape :data:`WHITE_SHAPE` drawn with ``ctx.generator("white_noise_images", legacy_offset=offset)`` (a flat input
    spectrum, so only the network shapes the output spectrum; spec §5 item 11)."""
    if dataset not in DATASET_LABELS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_LABELS)}, got {dataset!r}")
    if dataset == "white":
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        w = torch.randn(
            count,
            *WHITE_SHAPE,
            generator=ctx.generator("white_noise_images", legacy_offset=offset),
            dtype=torch.float64,
        )
        return (w - w.mean(dim=(0, 2, 3), keepdim=True)) / w.std(dim=(0, 2, 3), keepdim=True)
    root = ctx.require_data(DATASET_LABELS[dataset])
    x = load_cifar10(root, split)[0] if dataset == "cifar10" else load_mnist(root, split)[0]
    if count < 1 or count > x.shape[0]:
        raise ValueError(f"count must lie in [1, {x.shape[0]}] for {dataset} {split}, got {count}")
    idx = np.sort(
        ctx.rng(f"{dataset}_{split}_images", legacy_offset=offset).choice(x.shape[0], size=count, replace=False)
    )
    x = x[torch.from_numpy(idx)].to(torch.float64)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std


def conv_outputs(model: nn.Sequential, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run a model once; return the (pre-activation) output of every ``nn.Conv2d`` call and the input it
    received, in call order (no grad). Layers are seen through :func:`freqlens.hooks.capture_layers`."""
    outs: list[torch.Tensor] = []
    ins: list[torch.Tensor] = []

    def record(name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ins.append(inputs[0])
        outs.append(output)

    with torch.no_grad(), capture_layers(select_layers(model, types=(nn.Conv2d,)), record):
        model(x)
    return outs, ins


def linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line ``y ≈ a x + b``: returns ``(slope a, intercept b, R²)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    return float(a), float(b), r2


def mean_std(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{mean, std}`` (population std) of ``values``, rounded to 6 decimals for ``summary.json`` (plumbing)."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(arr.mean()), 6), "std": round(float(arr.std()), 6)}


def log_display(magnitude: np.ndarray) -> np.ndarray:
    """``log10`` of an unshifted magnitude map with DC clipped to the second-largest value (as the paper's
    figures), fftshifted for display (DC at the centre)."""
    clipped = clip_dc_for_display(magnitude)
    floor = max(float(clipped.max()), 1e-300) * 1e-12
    return np.fft.fftshift(np.log10(clipped + floor))


def draw_magnitude(
    ax: Axes,
    magnitude: np.ndarray,
    title: str | None = None,
    marks: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Any:
    """Draw a magnitude map (unshifted ``(H, W)``) as the paper does: fftshifted, log scale, DC clipped.

    Axes are the signed frequencies ``(k, l)`` (DC at the centre). ``marks``: unshifted ``(P, 2)`` positions
    to circle (e.g. the predicted DC replicas of Thm 4.4). ``colorbar``: a log10 scale bar next to the map (on
    by default: a log map without its scale cannot be read)."""
    h, w = magnitude.shape
    shown = log_display(magnitude)
    ext = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
    im = ax.imshow(shown, cmap="viridis", extent=ext, vmin=vmin, vmax=vmax)
    ax.set_xticks([-(w // 2), 0, w - w // 2 - 1])
    ax.set_yticks([-(h // 2), 0, h - h // 2 - 1])
    ax.tick_params(labelsize=6, length=2)
    if marks is not None and len(marks):
        ku = np.where(marks[:, 0] >= h - h // 2, marks[:, 0] - h, marks[:, 0])
        lv = np.where(marks[:, 1] >= w - w // 2, marks[:, 1] - w, marks[:, 1])
        ax.scatter(lv, ku, s=60, facecolors="none", edgecolors="#D55E00", linewidths=0.9)
    if title:
        ax.set_title(title, fontsize=7)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
        cb.set_label("log10 |H|", fontsize=6)
    return im


def channel_mean_magnitude(spectrum: torch.Tensor) -> np.ndarray:
    """``E_{b,c}|H|`` of a complex spectrum ``(B, C, H, W)``: float64 ``(H, W)`` (unshifted)."""
    return mean_magnitude_map(spectrum)


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
        outs, _ = conv_outputs(model, xb)
        specs = [torch.fft.fft2(o.to(torch.float64)) for o in outs]
        pl = np.stack([p_low(h, low_fraction) for h in specs])  # (L, B)
        pn = np.stack([p_low(h, low_fraction, exclude_dc=True) for h in specs])
        mag = specs[-1].abs().mean(dim=1).sum(dim=0).numpy()
        parts = {
            "p_low_sum": np.nansum(pl, axis=1),
            "p_low_n": np.isfinite(pl).sum(axis=1),
            "p_low_no_dc_sum": np.nansum(pn, axis=1),
            "p_low_no_dc_n": np.isfinite(pn).sum(axis=1),
            "output_magnitude": mag,
        }
        for key, val in parts.items():
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
    the same images: ``p_low`` / ``p_low_no_dc`` / ``undefined_images`` stacked ``(networks, L)``, and the
    output ``magnitude`` map averaged over the nets."""
    stats = [spectra_statistics(make_network(s).eval(), x.float(), low_fraction=low_fraction) for s in range(networks)]
    return {
        "p_low": np.stack([st["p_low"] for st in stats]),
        "p_low_no_dc": np.stack([st["p_low_no_dc"] for st in stats]),
        "magnitude": np.mean([st["output_magnitude"] for st in stats], axis=0),
        "undefined_images": np.stack([st["undefined_images"] for st in stats]),
    }


def compare_output_p_low(
    statement: str,
    paper: str,
    data: Mapping[str, np.ndarray],
    first: str,
    second: str,
    expected: Direction,
    paired: bool,
) -> list[Claim]:
    """The claim "output ``p_low`` of setting ``first`` is ``expected`` (greater/less) than of ``second``",
    judged over networks for ``p_low`` with DC (the paper's definition) and without DC (§4 item 7).

    ``data[f"{first}_p_low"]``, ``data[f"{first}_p_low_no_dc"]`` (and the same for ``second``): ``(networks,
    L)`` arrays as :func:`network_family_statistics` returns them; the last layer is compared.
    ``paired=True`` (same weights or normal draws in both settings): paired t, ``df = n - 1``;
    ``paired=False`` (different networks): Welch's t with the Welch-Satterthwaite df. Verdict by
    :func:`freqlens.analysis.statistics.directional_claim` (two-sided 5%; fewer than 3 networks: no verdict).
    One shared comparison for decoder-padding/-mean/-kernel."""
    claims = []
    for key, what in (("p_low", "p_low with DC"), ("p_low_no_dc", "p_low without DC")):
        a = np.asarray(data[f"{first}_{key}"])[:, -1]
        b = np.asarray(data[f"{second}_{key}"])[:, -1]
        claims.append(
            directional_claim(
                f"{statement} ({what})",
                paper,
                a,
                expected,
                other=b,
                paired=paired,
                note=f"measured = mean difference of output {what} over networks (first - second)",
            )
        )
    return claims


def draw_p_low_bars(ax: Axes, values: Mapping[str, Sequence[np.ndarray]], tick_labels: Sequence[str]) -> None:
    """Paired bars per setting: ``p_low`` of the output with DC (plain) and without DC (hatched), mean ± std over
    networks. ``values["p_low"]`` / ``values["p_low_no_dc"]``: one array of per-network values per setting
    (NaN = every image undefined, left out)."""
    xs = np.arange(len(tick_labels))
    colors = [MODE_COLORS[i % len(MODE_COLORS)] for i in range(len(tick_labels))]
    for off, key, hatch in ((-0.18, "p_low", ""), (0.18, "p_low_no_dc", "//")):
        vals = values[key]
        ax.bar(
            xs + off,
            [np.nanmean(v) for v in vals],
            0.36,
            yerr=[np.nanstd(v) for v in vals],
            color=colors,
            hatch=hatch,
            edgecolor="k",
            lw=0.4,
        )
    ax.set_xticks(xs)
    ax.set_xticklabels(list(tick_labels), fontsize=7)
    ax.set_ylabel("$p_{low}$ of output")
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.legend(handles=DC_LEGEND, fontsize=6, ncol=2, loc="upper center", frameon=False)
