"""``decoder-mean``: the mean of the weights (decoder paper Fig. 4b, App. C.5 Fig. 12;
``spec/decoder_spectra.md`` §4 item 6, Thm 4.2 conclusion 4, App. B.2).

The architecture of ``decoder-padding`` with 9×9 kernels (5 conv layers, 16 kernels, 3 in the last, ReLU,
zero padding), weights i.i.d. ``N(μ, 0.01²)`` with ``μ ∈ {0, 0.001, 0.01}``, biases 0. The same standard
normal draws are used for every ``μ`` (paired comparison), averaged over random networks. Read-out: output
``p_low`` (with and without DC) and mean output magnitude maps. Theory next to it (linear, circular, white
input; ReLU and padding ignored): Thm 4.2's single-channel SOM and the multi-channel Eq. 32 recursion
(approximate, §7.8).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..analysis.decoder_metrics import network_family_statistics
from ..analysis.statistics import Claim
from ..models.decoders import five_layer_network, init_normal_
from ..theory.decoder_som import power_share_low, som_multichannel_eq32, som_single_channel
from .decoder_common import (
    DATASET_LABELS,
    FamilyCell,
    FamilySweep,
    compare_family_p_low,
    draw_family_row,
    family_summary,
    sweep_network_families,
)
from .registry import Experiment, ExperimentResult, RunContext, register


@dataclass(frozen=True)
class MeanConfig:
    """Settings of ``decoder-mean`` (defaults = full run; [choice] = not fixed by the paper)."""

    datasets: tuple[str, ...] = ("white", "cifar10", "mnist")  # CIFAR-10/MNIST replace Broden/Tiny-ImageNet
    num_images: int = 512  # [choice]
    networks: int = 20  # [choice] random networks averaged (paired across μ)
    kernel_size: int = 9
    width: int = 16
    weight_means: tuple[float, ...] = (0.0, 0.001, 0.01)
    weight_std: float = 0.01
    padding_mode: str = "zeros"  # [choice] the paper reuses Fig. 4c's architecture; zero padding assumed
    low_fraction: float = 1 / 8

    def validate(self) -> None:
        """Refuse unknown datasets, no weight means, a negative std or empty counts (plumbing)."""
        if not self.datasets or any(d not in DATASET_LABELS for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of {sorted(DATASET_LABELS)}, got {self.datasets}")
        if not self.weight_means or self.weight_std < 0 or self.networks < 1 or self.num_images < 1:
            raise ValueError("need weight_means, weight_std >= 0, networks >= 1, num_images >= 1")


def _theory(cfg: MeanConfig, mu: float, grid: tuple[int, int], channels: int) -> dict[str, float]:
    """p_low of linear circular stacks with white input (Thm 4.2 single channel; Eq. 32 multi-channel)."""
    layers = 5
    single = som_single_channel([mu] * layers, [cfg.weight_std] * layers, cfg.kernel_size, grid)
    chans = [channels] + [cfg.width] * (layers - 1) + [channels]
    multi = som_multichannel_eq32([mu] * layers, [cfg.weight_std] * layers, chans, cfg.kernel_size, grid)[-1]
    return {
        "single_channel_thm_4_2_p_low": round(power_share_low(single, cfg.low_fraction), 4),
        "single_channel_thm_4_2_p_low_no_dc": round(power_share_low(single, cfg.low_fraction, True), 4),
        "multichannel_eq32_p_low": round(power_share_low(multi, cfg.low_fraction), 4),
        "multichannel_eq32_p_low_no_dc": round(power_share_low(multi, cfg.low_fraction, True), 4),
    }


def _mean_claims(dataset_tree: Mapping[str, Any], ds: str, cfg: MeanConfig) -> list[Claim]:
    """Fig. 4b's claim on one dataset, step by step in ``|μ|``: output ``p_low`` at the next larger ``|μ|`` >
    at the smaller one, paired over networks (the same normal draws for every ``μ``)."""
    order = [int(i) for i in np.argsort(np.abs(cfg.weight_means))]
    claims: list[Claim] = []
    for lo, hi in itertools.pairwise(order):
        claims += compare_family_p_low(
            f"Fig. 4b, {DATASET_LABELS[ds]}: output p_low at mu={cfg.weight_means[hi]:g} > at "
            f"mu={cfg.weight_means[lo]:g}",
            "the output low-frequency magnitude increases with |mu|",
            dataset_tree[f"mu{hi}"],
            dataset_tree[f"mu{lo}"],
            "greater",
            paired=True,
        )
    return claims


def _mean_family(ctx: RunContext, payload: tuple[MeanConfig, FamilyCell]) -> dict[str, np.ndarray]:
    """One cell: ``cfg.networks`` random 5-layer nets with weights ``N(μ, σ²)`` of the cell's ``μ`` (plumbing)."""
    cfg, cell = payload
    mu = cfg.weight_means[int(cell.setting[0].removeprefix("mu"))]
    x = torch.from_numpy(cell.images)

    def make_network(s: int) -> nn.Sequential:
        """Random net ``s``: the same normal draws for every ``μ`` (paired across μ) (plumbing)."""
        net = five_layer_network(cfg.kernel_size, cfg.padding_mode, x.shape[1], cfg.width, x.shape[1])
        gen = ctx.generator("mean_network", legacy_offset=1000 * cell.dataset_index + s)
        init_normal_(net, mu, cfg.weight_std, bias=0.0, generator=gen)
        return net

    return network_family_statistics(make_network, cfg.networks, x, cfg.low_fraction)


def _mean_measured(sweep: FamilySweep, ds: str, cfg: MeanConfig) -> dict[str, Any]:
    """``summary.json`` entry of one dataset: per ``μ`` the family summary and the linear circular theory on the
    dataset's grid (plumbing)."""
    x = sweep.images[ds]
    return {
        f"mu={mu:g}": family_summary(sweep.families[(ds, (f"mu{mi}",))])
        | {"theory_linear_circular_white_input": _theory(cfg, mu, (x.shape[-2], x.shape[-1]), x.shape[1])}
        for mi, mu in enumerate(cfg.weight_means)
    }


def run_mean(ctx: RunContext, cfg: MeanConfig) -> ExperimentResult:
    """``p_low`` of 5-layer 9×9 ReLU outputs per weight mean μ (paired draws), next to Thm 4.2 / Eq. 32."""
    settings = [(f"mu{mi}",) for mi in range(len(cfg.weight_means))]
    sweep = sweep_network_families(ctx, cfg, "mean", 20, settings, _mean_family)
    data: dict[str, Any] = {"weight_means": np.array(cfg.weight_means)}
    data.update(sweep.tree())  # {dataset: {"input_magnitude", "mu<i>": {p_low, p_low_no_dc, magnitude}}}
    summary = {
        "paper_claim": "Fig. 4b / App. C.5: the output low-frequency magnitude increases with the weight mean |mu|.",
        "setup": (
            f"5 conv layers, {cfg.width} kernels of {cfg.kernel_size}x{cfg.kernel_size} (3 in the last), ReLU, "
            f"{cfg.padding_mode} padding, weights N(mu, {cfg.weight_std:g}^2) with the same normal draws for every mu, "
            f"biases 0; {cfg.networks} networks x {cfg.num_images} images"
        ),
        "datasets": [DATASET_LABELS[d] for d in cfg.datasets],
        "datasets_note": "CIFAR-10 and MNIST replace Broden/Tiny-ImageNet; white noise (64x64) isolates the network",
        "measured": {DATASET_LABELS[ds]: _mean_measured(sweep, ds, cfg) for ds in cfg.datasets},
        "claims": [c for ds in cfg.datasets for c in _mean_claims(data[ds], ds, cfg)],
    }
    return ExperimentResult(data=data, summary=summary)


def plot_mean(data: Mapping[str, Any], cfg: MeanConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw decoder-mean: input and output magnitude maps per μ and the ``p_low`` bars (plumbing)."""
    mus = list(cfg.weight_means)
    ncol = 1 + len(mus) + 1
    fig = Figure(figsize=(2.0 * ncol + 0.5, 2.2 * len(cfg.datasets) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(cfg.datasets), ncol, squeeze=False)
    for r, ds in enumerate(cfg.datasets):
        draw_family_row(
            axes[r],
            data[ds],
            ds,
            [data[ds][f"mu{i}"] for i in range(len(mus))],
            [f"output, N({mu:g}, {cfg.weight_std:g}²)" for mu in mus],
            [f"μ={m:g}" for m in mus],
        )
    fig.suptitle(
        "Fig. 4b: output magnitude maps (log10, DC clipped) and $p_{low}$ (mean ± std over networks) by weight mean μ",
        fontsize=8,
    )
    return {"fig4b_weight_mean": fig}


register(
    Experiment(
        name="decoder-mean",
        description="Decoder paper Fig. 4b: weight mean mu in {0, 0.001, 0.01}, p_low of 5-layer 9x9 ReLU nets",
        config_cls=MeanConfig,
        run=run_mean,
        plot=plot_mean,
        quick={"num_images": 32, "networks": 3},
        needs=("cifar10", "mnist"),
        paper="decoder",
        devices=("cpu",),
        figure="Fig. 4b, Fig. 12",
    )
)
