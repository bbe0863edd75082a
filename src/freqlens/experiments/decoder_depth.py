"""``decoder-depth``: log-SOM of the feature spectra against depth (decoder paper Fig. 5 and Fig. 4a, App. C.4
Fig. 11; ``spec/decoder_spectra.md`` §4 item 5, Thm 4.2, Eq. 32, §5 item 10, check A15).

Three measurements, each a per-layer ``SOM(h^{(uv)}) = E|H_uv|²`` (over images, channels and random networks)
at randomly selected frequencies plus DC and the highest frequency, with a least-squares line fitted to
``log SOM`` against the layer index:

* ``single_channel``: Thm 4.2's own setting. Many independent single-channel linear circular 3×3 stacks
  (one grouped conv per layer), weights ``N(μ, σ²)``; ``SOM(h) = SOM(T^{(l:1)}) E|g|²``, so the fitted slope is
  compared with the theory slope ``log(|μR_uv|² + K²σ²)`` (standard error from groups of networks).
* ``linear_circular``: 50 layers, 16 channels, circular padding, no ReLU, ``N(μ, σ_l²)`` weights; the theory
  slope is the one of the Eq. 32 recursion (approximate, §7.8) over the same layers.
* ``paper``: the paper's Fig. 5 net: 50 layers, 16 channels, zero padding, ReLU, same weights. No exact theory
  exists (ReLU, padding); the read-out is the fitted slope and the linearity ``R²`` of ``log SOM`` vs depth.

Weights [choice, the paper gives none for Fig. 5]: mean ``μ = 0.01`` (a small non-zero mean, as Assumption 4.1
says happens in training) and He-scaled ``σ_l = sqrt(2 / (C_{l-1} K²))``, so ReLU nets neither explode nor vanish
at high frequency. "SOM increases with depth" holds only where the per-layer factor exceeds 1 (A15).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from ..analysis.decoder_metrics import conv_outputs, linear_fit, log_som_at, per_network_slopes, som_per_layer
from ..analysis.statistics import Claim, directional_claim, equality_claim
from ..fourier import signed_frequencies
from ..models.decoders import deep_network, init_normal_
from ..plots import MODE_COLORS
from ..theory.decoder_som import log_som_per_layer, log_som_slope, som_multichannel_eq32
from .decoder_common import DATASET_LABELS, draw_magnitude, load_images
from .registry import Experiment, ExperimentResult, RunContext, register

VARIANTS = ("paper", "linear_circular")
VARIANT_LABELS = {
    "paper": "zero padding + ReLU (Fig. 5)",
    "linear_circular": "circular, no ReLU (Eq. 32)",
    "single_channel": "single channel, linear circular (Thm 4.2)",
}


@dataclass(frozen=True)
class DepthConfig:
    """Settings of ``decoder-depth`` (defaults = full run; [choice] = not fixed by the paper)."""

    dataset: str = "cifar10"  # replaces Tiny-ImageNet/Broden
    num_images: int = 64  # [choice]
    depth: int = 50
    width: int = 16  # [choice] not stated for Fig. 5
    networks: int = 10  # [choice] >= 10 so that the over-network t tests have >= 9 df
    weight_mean: float = 0.01  # [choice]
    num_frequencies: int = 6  # random frequencies, plus DC and the highest frequency
    map_layers: tuple[int, ...] = (1, 3, 10)  # Fig. 4a shows the input and layers 1, 3, 10
    single_depth: int = 6  # [choice] Thm 4.2 check: layers of the single-channel stacks (E|ΠT|² is
    # heavy-tailed: its relative variance grows like 2^L, so the Monte Carlo needs n >> 2^L networks)
    single_networks: int = 65536  # [choice] independent single-channel stacks
    single_images: int = 1
    single_mean: float = 0.1  # [choice] per-layer factor > 1 at DC, < 1 at high frequencies
    single_std: float = 0.2
    single_groups: int = 8  # groups of networks for the slope's standard error

    def validate(self) -> None:
        """Refuse an unknown dataset, depths below 2, map layers out of range, uneven groups (plumbing)."""
        if self.dataset not in DATASET_LABELS:
            raise ValueError(f"dataset must be one of {sorted(DATASET_LABELS)}, got {self.dataset!r}")
        if self.depth < 2 or self.single_depth < 2:
            raise ValueError("depth and single_depth must be >= 2 (a slope needs two layers)")
        if any(not 1 <= l <= self.depth for l in self.map_layers):
            raise ValueError(f"map_layers must lie in 1..{self.depth}")
        if self.single_networks % self.single_groups:
            raise ValueError("single_networks must be a multiple of single_groups")


def _he_std(c_in: int, k: int = 3) -> float:
    """He-normal standard deviation ``sqrt(2 / (c_in k²))`` of a ``k×k`` conv (plumbing)."""
    return float(np.sqrt(2.0 / (c_in * k * k)))


def _init_deep(net: nn.Sequential, mean: float, gen: torch.Generator) -> None:
    """Initialise every conv of ``net`` with ``N(mean, he_std²)`` weights and zero biases (plumbing)."""
    for m in net:
        if isinstance(m, nn.Conv2d):
            init_normal_(m, mean, _he_std(m.in_channels), bias=0.0, generator=gen)


def _pick_frequencies(ctx: RunContext, grid: tuple[int, int], count: int) -> np.ndarray:
    """DC, the highest frequency and ``count`` random others of ``grid``, drawn from the run seed (plumbing)."""
    m, n = grid
    rng = ctx.rng("picked_frequencies", legacy_offset=41)
    chosen = [(0, 0), (m // 2, n // 2)]
    candidates = [(u, v) for u in range(m) for v in range(n) if (u, v) not in chosen]
    idx = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    chosen += [candidates[i] for i in sorted(idx)]
    return np.array(chosen, dtype=np.int64)


def _single_channel(ctx: RunContext, cfg: DepthConfig, gray: torch.Tensor) -> dict[str, np.ndarray]:
    """Many independent single-channel linear circular stacks, as one grouped conv per layer, in chunks of
    networks. Returns ``SOM(T^{(l:1)})`` per layer and per group of networks, ``(L, G, H, W)``."""
    n, groups = cfg.single_networks, cfg.single_groups
    per_group = n // groups
    gen = ctx.generator("single_channel_weights", legacy_offset=77)
    g_power = (torch.fft.fft2(gray).abs() ** 2).mean(dim=(0, 1)).numpy()
    som = np.zeros((cfg.single_depth, groups, *g_power.shape))
    with torch.no_grad():
        for gi in range(groups):
            h = gray.expand(-1, per_group, -1, -1).contiguous()
            for l in range(cfg.single_depth):
                w = cfg.single_mean + cfg.single_std * torch.randn(
                    per_group, 1, 3, 3, generator=gen, dtype=torch.float64
                )
                h = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="circular"), w, groups=per_group)
                som[l, gi] = (torch.fft.fft2(h).abs() ** 2).mean(dim=(0, 1)).numpy()
    return {"som_t_groups": som / g_power, "input_power": g_power}


def _paper_net_claims(log_som: np.ndarray, layers: np.ndarray) -> list[Claim]:
    """Fig. 5's two claims on the zero-padding ReLU nets, judged over networks: the per-network slope of
    ``log SOM`` in depth at DC is > 0 (growth), and exceeds the slope at the highest frequency (paired t)."""
    dc, highest = per_network_slopes(log_som, layers, 0), per_network_slopes(log_som, layers, 1)
    return [
        directional_claim(
            "Fig. 5: log SOM(h) at DC grows with depth (slope > 0), zero padding + ReLU",
            "increases",
            dc,
            "greater",
            note="samples = per-network least-squares slope of log SOM at DC over the layers",
        ),
        directional_claim(
            "Fig. 5: log SOM(h) grows faster at DC than at the highest frequency, zero padding + ReLU",
            "faster at low frequencies",
            dc,
            "greater",
            other=highest,
            paired=True,
            note="paired over networks: slope at DC - slope at the highest frequency",
        ),
    ]


def _frequency_label(grid: tuple[int, int], u: int, v: int) -> str:
    """``"(k,l)"``: the signed frequency of DFT bin ``(u, v)`` on ``grid`` (plumbing)."""
    return f"({signed_frequencies(grid[0])[u]},{signed_frequencies(grid[1])[v]})"


def _variant_networks(ctx: RunContext, payload: tuple[DepthConfig, str, torch.Tensor]) -> dict[str, np.ndarray]:
    """One variant's ``cfg.networks`` deep nets: ``SOM`` per layer (mean and per network) and the magnitude
    maps of network 0 at ``cfg.map_layers`` (plumbing; the same weight draws for both variants)."""
    cfg, variant, x = payload
    soms, maps = [], []
    for s in range(cfg.networks):
        mode = "zeros" if variant == "paper" else "circular"
        net = deep_network(cfg.depth, x.shape[1], cfg.width, mode, relu=variant == "paper").double().eval()
        _init_deep(net, cfg.weight_mean, ctx.generator("depth_network", legacy_offset=s))
        soms.append(som_per_layer(net, x))
        if s == 0:
            outs, _ = conv_outputs(net, x)
            maps = [torch.fft.fft2(outs[l - 1]).abs().mean(dim=(0, 1)).numpy() for l in cfg.map_layers]
    return {"som": np.mean(soms, axis=0), "som_nets": np.stack(soms), "maps": np.stack(maps)}


def _variant_record(
    res: Mapping[str, np.ndarray], variant: str, cfg: DepthConfig, x: torch.Tensor, freqs: np.ndarray
) -> dict[str, np.ndarray]:
    """The stored record of one variant: ``log SOM`` per layer at the picked frequencies ``(L, F)`` and the
    maps; for the circular linear net also the Eq. 32 recursion's ``log SOM`` (approximate, §7.8)."""
    record = {"log_som": np.log(res["som"][:, freqs[:, 0], freqs[:, 1]]), "maps": res["maps"]}
    if variant == "linear_circular":
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        sigmas = [_he_std(x.shape[1])] + [_he_std(cfg.width)] * (cfg.depth - 1)
        chans = [x.shape[1]] + [cfg.width] * cfg.depth
        eq32 = som_multichannel_eq32([cfg.weight_mean] * cfg.depth, sigmas, chans, 3, grid)
        record["eq32_log_som"] = np.log(eq32[:, freqs[:, 0], freqs[:, 1]])
    return record


def _variant_measured(
    record: Mapping[str, np.ndarray], variant: str, freqs: np.ndarray, layers: np.ndarray, grid: tuple[int, int]
) -> dict[str, Any]:
    """``summary.json`` entry of one variant: the fitted slope and ``R²`` of ``log SOM`` in depth per picked
    frequency (with the Eq. 32 slope next to it for the circular linear net) (Fig. 5 read-out)."""
    log_som = record["log_som"]
    fits = [linear_fit(layers, log_som[:, j]) for j in range(len(freqs))]
    entry: dict[str, Any] = {}
    for j, (u, v) in enumerate(freqs):
        a, _, r2 = fits[j]
        item: dict[str, Any] = {"fitted_slope": round(a, 4), "r2": round(r2, 4)}
        if "eq32_log_som" in record:
            item["eq32_theory_slope"] = round(linear_fit(layers, record["eq32_log_som"][:, j])[0], 4)
        entry[_frequency_label(grid, u, v)] = item
    return {
        "label": VARIANT_LABELS[variant],
        "per_frequency": entry,
        "min_r2": round(float(min(f[2] for f in fits)), 4),
        "slope_at_dc": round(fits[0][0], 4),
        "slope_at_highest_frequency": round(fits[1][0], 4),
    }


def _single_channel_check(
    single: Mapping[str, np.ndarray], cfg: DepthConfig, freqs: np.ndarray, grid: tuple[int, int]
) -> tuple[dict[str, np.ndarray], dict[str, Any], list[Claim]]:
    """Thm 4.2 in its own setting: per picked frequency the slope of the measured ``log SOM(T)`` in depth
    against ``log(|μR_uv|² + K²σ²)``, standard error from the groups of networks. Returns the stored
    record, the per-frequency ``summary.json`` entries (and ``max_abs_z``) and one equality claim per frequency."""
    s_layers = np.arange(1, cfg.single_depth + 1)
    groups = single["som_t_groups"][:, :, freqs[:, 0], freqs[:, 1]]  # (L, G, F)
    log_meas = np.log(groups.mean(axis=1))  # (L, F)
    theory_log = log_som_per_layer([cfg.single_mean] * cfg.single_depth, [cfg.single_std] * cfg.single_depth, 3, grid)
    theory_slope = log_som_slope(cfg.single_mean, cfg.single_std, 3, grid)[freqs[:, 0], freqs[:, 1]]
    record = {"log_som": log_meas, "theory_log_som": theory_log[:, freqs[:, 0], freqs[:, 1]], "layers": s_layers}
    entries: dict[str, Any] = {}
    claims: list[Claim] = []
    max_abs_z = 0.0
    for j, (u, v) in enumerate(freqs):
        a = linear_fit(s_layers, log_meas[:, j])[0]
        group_slopes = [linear_fit(s_layers, np.log(groups[:, gi, j]))[0] for gi in range(groups.shape[1])]
        se = float(np.std(group_slopes, ddof=1) / np.sqrt(len(group_slopes)))
        z = (a - float(theory_slope[j])) / se if se > 0 else float("inf")
        key = _frequency_label(grid, u, v)
        claims.append(
            equality_claim(
                f"Thm 4.2 (single channel, linear circular): slope of log SOM(T) in depth at {key} equals "
                "log(|mu R_uv|^2 + K^2 sigma^2)",
                round(float(theory_slope[j]), 6),
                group_slopes,
                note=f"samples = slopes of {len(group_slopes)} independent groups of networks",
            )
        )
        entries[key] = {
            "fitted_slope": round(a, 4),
            "slope_standard_error": round(se, 4),
            "theory_slope": round(float(theory_slope[j]), 4),
            "z": round(z, 2),
        }
        max_abs_z = max(max_abs_z, abs(z))
    entries["max_abs_z"] = round(float(max_abs_z), 2)
    return record, entries, claims


def _single_channel_measured(cfg: DepthConfig, entries: Mapping[str, Any]) -> dict[str, Any]:
    """``summary.json`` entry of the single-channel check (plumbing)."""
    return {
        "label": VARIANT_LABELS["single_channel"],
        "setting": (
            f"{cfg.single_networks} single-channel stacks, {cfg.single_depth} layers, 3x3 circular, weights "
            f"N({cfg.single_mean:g}, {cfg.single_std:g}^2), {cfg.single_images} grey "
            f"{DATASET_LABELS[cfg.dataset]} image(s)"
        ),
        "per_frequency": {k: v for k, v in entries.items() if k != "max_abs_z"},
        "max_abs_z": entries["max_abs_z"],
    }


def _depth_summary(cfg: DepthConfig, measured: Mapping[str, Any], claims: list[Claim]) -> dict[str, Any]:
    """``summary.json`` of decoder-depth: the claim, the setting, what was measured and judged (plumbing)."""
    lc = measured["linear_circular"]["per_frequency"]
    rel = [abs(v["fitted_slope"] - v["eq32_theory_slope"]) / abs(v["eq32_theory_slope"]) for v in lc.values()]
    return {
        "paper_claim": (
            "Fig. 5 / Thm 4.2: log SOM(h^(uv)) increases linearly with depth (exponential growth), faster at low "
            "frequencies (per-layer term log(|mu R_uv|^2 + K^2 sigma^2), larger where |R_uv| is large)."
        ),
        "dataset": f"{DATASET_LABELS[cfg.dataset]} (replaces Tiny-ImageNet/Broden)",
        "weights": (
            f"N({cfg.weight_mean:g}, sigma_l^2), sigma_l = sqrt(2/(C_in K^2)) (He), biases 0 [choice]; "
            f"{cfg.networks} nets"
        ),
        "measured": dict(measured),
        "linear_circular_max_relative_slope_deviation_from_eq32": round(float(max(rel)), 4),
        "claims": claims,
        "claims_note": (
            "'increases' holds only where the per-layer factor exceeds 1 (check A15); Eq. 32 is approximate (§7.8), "
            "so the circular no-ReLU net is compared with it as a number, not judged"
        ),
    }


def run_depth(ctx: RunContext, cfg: DepthConfig) -> ExperimentResult:
    """Per-layer ``log SOM`` at the picked frequencies for the three variants, fitted slopes vs Thm 4.2 / Eq. 32."""
    x = load_images(ctx, cfg.dataset, cfg.num_images, offset=50)
    grid = (int(x.shape[-2]), int(x.shape[-1]))
    freqs = _pick_frequencies(ctx, grid, cfg.num_frequencies)
    layers = np.arange(1, cfg.depth + 1)
    data: dict[str, Any] = {"frequencies": freqs, "layers": layers, "map_layers": np.array(cfg.map_layers)}
    data["input_magnitude"] = torch.fft.fft2(x).abs().mean(dim=(0, 1)).numpy()
    measured: dict[str, Any] = {}
    per_network_log_som: dict[str, np.ndarray] = {}
    for variant in VARIANTS:
        res = ctx.stage(f"depth_{variant}", functools.partial(_variant_networks, ctx, (cfg, variant, x)))
        per_network_log_som[variant] = log_som_at(res["som_nets"], freqs)
        data[variant] = _variant_record(res, variant, cfg, x, freqs)
        measured[variant] = _variant_measured(data[variant], variant, freqs, layers, grid)
    gray = x.mean(dim=1, keepdim=True)[: cfg.single_images]
    single = ctx.stage("depth_single_channel", lambda: _single_channel(ctx, cfg, gray))
    data["single_channel"], entries, claims = _single_channel_check(single, cfg, freqs, grid)
    measured["single_channel"] = _single_channel_measured(cfg, entries)
    claims += _paper_net_claims(per_network_log_som["paper"], layers)
    return ExperimentResult(data=data, summary=_depth_summary(cfg, measured, claims))


def plot_depth(data: Mapping[str, Any], cfg: DepthConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw decoder-depth: ``log SOM`` against layer per variant, measured and theory lines (plumbing)."""
    freqs = data["frequencies"]
    h, w = data["input_magnitude"].shape
    labels = [f"({signed_frequencies(h)[u]},{signed_frequencies(w)[v]})" for u, v in freqs]
    fig = Figure(figsize=(10.5, 3.2), constrained_layout=True)
    axes = fig.subplots(1, 3)
    sc, lc = data["single_channel"], data["linear_circular"]
    panels = (
        ("single_channel", sc["layers"], sc["log_som"], sc["theory_log_som"]),
        ("linear_circular", data["layers"], lc["log_som"], lc["eq32_log_som"]),
        ("paper", data["layers"], data["paper"]["log_som"], None),
    )
    for ax, (variant, layers, meas, theory) in zip(axes, panels):
        for j in range(len(freqs)):
            col = MODE_COLORS[j % len(MODE_COLORS)]
            ax.plot(layers, meas[:, j], "-", color=col, lw=1.1, label=labels[j])
            if theory is not None:
                shift = meas[0, j] - theory[0, j] if variant == "linear_circular" else 0.0
                ax.plot(layers, theory[:, j] + shift, "--", color=col, lw=0.8)
        ax.set_xlabel("layer")
        ax.set_ylabel("log SOM(h)" if variant != "single_channel" else "log SOM(T) = log(E|h|²/E|g|²)")
        ax.set_title(VARIANT_LABELS[variant], fontsize=8)
    axes[0].legend(fontsize=5.5, ncol=2, title="frequency (k,l)", title_fontsize=6)
    fig.suptitle(
        "Fig. 5: log SOM vs depth at random frequencies (solid: measured; dashed: Thm 4.2 / Eq. 32 theory, "
        "Eq. 32 shifted to the measured layer 1)",
        fontsize=8,
    )
    ml = list(data["map_layers"])
    fig_m = Figure(figsize=(2.0 * (1 + len(ml)) + 0.3, 4.3), constrained_layout=True)
    grid = fig_m.subplots(2, 1 + len(ml))
    for r, variant in enumerate(VARIANTS):
        draw_magnitude(grid[r, 0], data["input_magnitude"], f"{DATASET_LABELS[cfg.dataset]} input")
        for j, l in enumerate(ml, start=1):
            draw_magnitude(grid[r, j], data[variant]["maps"][j - 1], f"layer {l}")
        grid[r, 0].set_ylabel(VARIANT_LABELS[variant], fontsize=7)
    fig_m.suptitle("Fig. 4a: magnitude maps by depth (log10, DC clipped, DC at centre)", fontsize=8)
    return {"fig5_log_som_vs_depth": fig, "fig4a_depth_maps": fig_m}


register(
    Experiment(
        name="decoder-depth",
        description="Decoder paper Fig. 5/4a: log-SOM vs depth (50 layers), fitted vs Thm 4.2 / Eq. 32 slopes",
        config_cls=DepthConfig,
        run=run_depth,
        plot=plot_depth,
        quick={"num_images": 8, "networks": 2, "single_networks": 16384},
        needs=("cifar10",),
        paper="decoder",
        devices=("cpu",),
        figure="Fig. 5, Fig. 4a",
    )
)
