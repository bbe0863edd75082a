"""``decoder-position``: where the large-mean layer sits (decoder paper App. C.8, Fig. 13;
``spec/decoder_spectra.md`` §4 item 8).

Five-layer ReLU networks of Fig. 4's architecture (``decoder-padding``: 16 kernels of 7×7, 3 in the last,
zero padding, biases 0). In network ``l`` (``l = 1..5``) layer ``l`` has weights ``N(0.1, 0.1²)`` and the other
layers ``N(0, 0.1²)``; a sixth network has every layer ``N(0, 0.1²)``. The same standard normal draws are used
in all six (only the mean of one layer moves), so every comparison is paired over random networks. Read-out:
output ``p_low`` (with and without DC) per position. The paper's two claims: *any* large-mean layer weakens the
high frequencies (output ``p_low`` above the zero-mean network's, for every position), with "no significant
difference" between positions (judged here by the slope of ``p_low`` over the position, which should be 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..analysis.decoder_metrics import network_family_statistics
from ..analysis.statistics import Claim, slope_equals_claim
from ..models.decoders import five_layer_network, init_normal_
from .decoder_common import (
    DATASET_LABELS,
    FamilyCell,
    compare_family_p_low,
    draw_family_row,
    family_summary,
    sweep_network_families,
)
from .registry import Experiment, ExperimentResult, RunContext, register

LAYERS = 5


@dataclass(frozen=True)
class PositionConfig:
    """Settings of ``decoder-position`` (defaults = full run; [choice] = not fixed by the paper)."""

    datasets: tuple[str, ...] = ("white", "cifar10", "mnist")  # CIFAR-10/MNIST replace Broden
    num_images: int = 512  # [choice]
    networks: int = 20  # [choice] random networks (paired across positions)
    kernel_size: int = 7  # [choice] Fig. 4's architecture (the appendix does not restate K)
    width: int = 16
    large_mean: float = 0.1
    weight_std: float = 0.1
    low_fraction: float = 1 / 8

    def validate(self) -> None:
        """Refuse unknown datasets, a negative std or empty counts (plumbing)."""
        if not self.datasets or any(d not in DATASET_LABELS for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of {sorted(DATASET_LABELS)}, got {self.datasets}")
        if self.weight_std < 0 or self.networks < 1 or self.num_images < 1:
            raise ValueError("need weight_std >= 0, networks >= 1, num_images >= 1")


def _settings() -> list[tuple[str]]:
    """``pos0`` = no large-mean layer, ``pos<l>`` = layer ``l`` (1-based) has the large mean (plumbing)."""
    return [(f"pos{p}",) for p in range(LAYERS + 1)]


def _position_family(ctx: RunContext, payload: tuple[PositionConfig, FamilyCell]) -> dict[str, np.ndarray]:
    """One cell: ``cfg.networks`` random nets, the large mean on the cell's layer (none for ``pos0``)."""
    cfg, cell = payload
    position = int(cell.setting[0].removeprefix("pos"))
    x = torch.from_numpy(cell.images)

    def make_network(s: int) -> nn.Sequential:
        """Random net ``s``: draws shared by all positions, then ``large_mean`` added to one layer (plumbing)."""
        net = five_layer_network(cfg.kernel_size, "zeros", x.shape[1], cfg.width, x.shape[1])
        init_normal_(net, 0.0, cfg.weight_std, bias=0.0, generator=ctx.generator("position_network", s))
        if position:
            convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
            with torch.no_grad():
                convs[position - 1].weight.add_(cfg.large_mean)
        return net

    return network_family_statistics(make_network, cfg.networks, x, cfg.low_fraction)


def _position_claims(tree: Mapping[str, Any], ds: str, cfg: PositionConfig) -> list[Claim]:
    """App. C.8 on one dataset: each position's ``p_low`` > the zero-mean network's (paired), and the slope of
    ``p_low`` over the position equals 0 (every (network, position) pair a point, ``df = n - 2``)."""
    label = DATASET_LABELS[ds]
    claims: list[Claim] = []
    for p in range(1, LAYERS + 1):
        claims += compare_family_p_low(
            f"App. C.8, {label}: output p_low with the large mean in layer {p} > with no large-mean layer",
            "any large-mean layer weakens the high frequencies",
            tree[f"pos{p}"],
            tree["pos0"],
            "greater",
            paired=True,
        )
    values = np.stack([np.asarray(tree[f"pos{p}"]["p_low"])[:, -1] for p in range(1, LAYERS + 1)])  # (5, nets)
    positions = np.repeat(np.arange(1, LAYERS + 1, dtype=float), values.shape[1])
    claims.append(
        slope_equals_claim(
            f"App. C.8, {label}: output p_low does not depend on the position of the large-mean layer (slope 0)",
            0.0,
            positions,
            values.reshape(-1),
            note="least-squares slope of p_low over the layer index, every network at every position a point "
            "(the pairing over networks is not used, which makes the interval wider, not narrower)",
        )
    )
    return claims


def run_position(ctx: RunContext, cfg: PositionConfig) -> ExperimentResult:
    """Output ``p_low`` of 5-layer ReLU nets with the large-mean layer at each position (App. C.8)."""
    sweep = sweep_network_families(ctx, cfg, "position", 30, _settings(), _position_family)
    data: dict[str, Any] = sweep.tree()  # {dataset: {"input_magnitude", "pos<l>": {p_low, p_low_no_dc, magnitude}}}
    summary = {
        "paper_claim": "App. C.8 / Fig. 13: a large-mean layer weakens the high frequencies wherever it is, with no "
        "significant difference between positions",
        "setup": (
            f"5 conv layers, {cfg.width} kernels of {cfg.kernel_size}x{cfg.kernel_size} (3 in the last), ReLU, zero "
            f"padding, weights N(0, {cfg.weight_std:g}^2) plus {cfg.large_mean:g} on the weights of one layer; the "
            f"same normal draws at every position; {cfg.networks} networks x {cfg.num_images} images"
        ),
        "datasets": [DATASET_LABELS[d] for d in cfg.datasets],
        "datasets_note": "CIFAR-10 and MNIST replace Broden; white noise (64x64) isolates the network",
        "measured": {
            DATASET_LABELS[ds]: {
                ("no large-mean layer" if p == 0 else f"large mean in layer {p}"): family_summary(
                    sweep.families[(ds, (f"pos{p}",))]
                )
                for p in range(LAYERS + 1)
            }
            for ds in cfg.datasets
        },
        "claims": [c for ds in cfg.datasets for c in _position_claims(data[ds], ds, cfg)],
    }
    return ExperimentResult(data=data, summary=summary)


def plot_position(data: Mapping[str, Any], cfg: PositionConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw decoder-position: input and output magnitude maps per position and the ``p_low`` bars (plumbing)."""
    ncol = 1 + LAYERS + 1 + 1
    fig = Figure(figsize=(1.9 * ncol + 0.5, 2.2 * len(cfg.datasets) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(cfg.datasets), ncol, squeeze=False)
    titles = ["output, no large mean"] + [f"output, large mean in layer {p}" for p in range(1, LAYERS + 1)]
    for r, ds in enumerate(cfg.datasets):
        draw_family_row(
            axes[r],
            data[ds],
            ds,
            [data[ds][f"pos{p}"] for p in range(LAYERS + 1)],
            titles,
            ["none"] + [f"L{p}" for p in range(1, LAYERS + 1)],
        )
    fig.suptitle(
        "App. C.8: output magnitude maps (log10, DC clipped) and $p_{low}$ (mean ± std over networks) by the "
        f"layer whose weights have mean {cfg.large_mean:g}",
        fontsize=8,
    )
    return {"fig13_large_mean_position": fig}


register(
    Experiment(
        name="decoder-position",
        description="Decoder paper App. C.8: position of the large-mean layer, p_low of 5-layer ReLU nets",
        config_cls=PositionConfig,
        run=run_position,
        plot=plot_position,
        quick={"num_images": 32, "networks": 3},
        needs=("cifar10", "mnist"),
        paper="decoder",
        devices=("cpu",),
        figure="App. C.8, Fig. 13",
    )
)
