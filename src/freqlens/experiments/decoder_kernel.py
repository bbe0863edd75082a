"""``decoder-kernel``: the kernel size (decoder paper Fig. 4d; ``spec/decoder_spectra.md`` §4 item 7, Thm 4.2
conclusion 5, App. B.3, and the warning of §7.7).

Five conv layers with 16 kernels (3 in the last), ReLU, zero padding, ``K ∈ {1, 3, 5}``, measured by ``p_low``
of the output (mean over images, then over random networks). Two initialisations:

* ``default``: PyTorch's default init (zero-mean weights), the paper's unstated setting [choice];
* ``normal``: i.i.d. ``N(0.01, 0.01²)`` weights, biases 0: the setting of Thm 4.2, where the paper's own
  single-channel formula predicts (white input, ``L = 5``) ``p_low`` 0.06 / 0.90 / 1.00 for ``K = 1 / 3 / 5``,
  i.e. **larger** K gives **more** low frequencies, contradicting conclusion (5) "small K → fewer high
  frequencies" (§7.7). Both the theory and the measurement are reported; the summary says which way the
  measurement goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..analysis.decoder_metrics import monotone_trend, network_family_statistics
from ..analysis.statistics import Claim
from ..models.decoders import five_layer_network, init_normal_
from ..theory.decoder_som import power_share_low, som_single_channel
from .cells import check_workers
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

INITS = ("default", "normal")


@dataclass(frozen=True)
class KernelConfig:
    """Settings of ``decoder-kernel`` (defaults = full run; [choice] = not fixed by the paper)."""

    datasets: tuple[str, ...] = ("white", "cifar10", "mnist")  # CIFAR-10/MNIST replace Broden/Tiny-ImageNet
    num_images: int = 512  # [choice]
    networks: int = 20  # [choice]
    kernel_sizes: tuple[int, ...] = (1, 3, 5)
    width: int = 16
    padding_mode: str = "zeros"  # [choice]
    inits: tuple[str, ...] = INITS
    normal_mean: float = 0.01  # Thm 4.2 setting of §7.7
    normal_std: float = 0.01
    low_fraction: float = 1 / 8
    workers: int = 1  # processes measuring the (dataset, init, K) cells in parallel (same numbers as 1)

    def validate(self) -> None:
        """Refuse unknown datasets or inits, even or non-positive kernel sizes, empty counts (plumbing)."""
        if not self.datasets or any(d not in DATASET_LABELS for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of {sorted(DATASET_LABELS)}, got {self.datasets}")
        if not self.inits or any(i not in INITS for i in self.inits):
            raise ValueError(f"inits must be a non-empty subset of {INITS}, got {self.inits}")
        if any(k < 1 or k % 2 == 0 for k in self.kernel_sizes) or not self.kernel_sizes:
            raise ValueError(f"kernel_sizes must be odd and >= 1, got {self.kernel_sizes}")
        if self.networks < 1 or self.num_images < 1:
            raise ValueError("networks and num_images must be >= 1")
        check_workers(self.workers)


def _kernel_claims(init_tree: Mapping[str, Any], ds: str, init: str, cfg: KernelConfig) -> list[Claim]:
    """Fig. 4d's claim on one dataset and init: output ``p_low`` at the largest K < at the smallest K, Welch's
    t over networks (each K has its own random networks)."""
    k_small, k_large = min(cfg.kernel_sizes), max(cfg.kernel_sizes)
    if k_small == k_large:
        return []
    return compare_family_p_low(
        f"Fig. 4d, {DATASET_LABELS[ds]}, {init} init: output p_low at K={k_large} < at K={k_small}",
        "a smaller kernel size K gives a higher p_low",
        init_tree[f"K{k_large}"],
        init_tree[f"K{k_small}"],
        "less",
        paired=False,
    )


def _kernel_family(ctx: RunContext, payload: tuple[KernelConfig, FamilyCell]) -> dict[str, np.ndarray]:
    """One cell: ``cfg.networks`` random nets with the cell's kernel size ``K`` and initialisation (plumbing)."""
    cfg, cell = payload
    init, k_name = cell.setting
    k = int(k_name.removeprefix("K"))
    x = torch.from_numpy(cell.images)

    def make_network(s: int) -> nn.Sequential:
        """Random net number ``s`` of this cell, seeded by (run seed, dataset, K, s) (plumbing)."""
        seed = ctx.torch_seed("kernel_network", legacy_offset=1000 * cell.dataset_index + 100 * k + s)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = five_layer_network(k, cfg.padding_mode, x.shape[1], cfg.width, x.shape[1])
        if init == "normal":
            gen = torch.Generator().manual_seed(seed)
            init_normal_(net, cfg.normal_mean, cfg.normal_std, bias=0.0, generator=gen)
        return net

    return network_family_statistics(make_network, cfg.networks, x, cfg.low_fraction)


def _kernel_measured(sweep: FamilySweep, ds: str, cfg: KernelConfig) -> dict[str, Any]:
    """``summary.json`` entry of one dataset: per init and K the family summary (plumbing)."""
    return {
        init: {f"K={k}": family_summary(sweep.families[(ds, (init, f"K{k}"))]) for k in cfg.kernel_sizes}
        for init in cfg.inits
    }


def _kernel_trends(sweep: FamilySweep, cfg: KernelConfig) -> dict[str, dict[str, str]]:
    """Per dataset and init: the trend in K of the mean output ``p_low`` with and without DC (Fig. 4d read-out)."""
    trends = {}
    for ds in cfg.datasets:
        for init in cfg.inits:
            fams = [sweep.families[(ds, (init, f"K{k}"))] for k in cfg.kernel_sizes]
            trends[f"{DATASET_LABELS[ds]}, {init} init"] = {
                key: monotone_trend([float(np.nanmean(f[name][:, -1])) for f in fams])
                for key, name in (("p_low_with_dc", "p_low"), ("p_low_without_dc", "p_low_no_dc"))
            }
    return trends


def _kernel_theory(cfg: KernelConfig) -> dict[str, Any]:
    """Thm 4.2's single-channel ``p_low`` per K on a white 64×64 input, and its trend in K (spec §7.7)."""
    grid = (64, 64)
    theory = {
        f"K={k}": round(power_share_low(som_single_channel([cfg.normal_mean] * 5, [cfg.normal_std] * 5, k, grid)), 4)
        for k in cfg.kernel_sizes
    }
    return {
        "setting": f"linear, circular, white input 64x64, L=5, weights N({cfg.normal_mean:g}, {cfg.normal_std:g}^2)",
        "p_low": theory,
        "trend": monotone_trend(list(theory.values())),
        "note": (
            "the paper's own formula contradicts conclusion (5) at fixed (mu, sigma): K=1 gives a frequency-flat "
            "SOM (R = 1) and p_low grows with K (spec §7.7)"
        ),
    }


def run_kernel(ctx: RunContext, cfg: KernelConfig) -> ExperimentResult:
    """``p_low`` of 5-layer ReLU outputs per dataset, init and kernel size K, next to Thm 4.2 (decoder §4 item 7)."""
    settings = [(init, f"K{k}") for init in cfg.inits for k in cfg.kernel_sizes]
    sweep = sweep_network_families(ctx, cfg, "kernel", 30, settings, _kernel_family, workers=cfg.workers)
    data: dict[str, Any] = {"kernel_sizes": np.array(cfg.kernel_sizes)}
    data.update(sweep.tree())  # {dataset: {"input_magnitude", init: {"K<k>": {p_low, p_low_no_dc, magnitude}}}}
    summary = {
        "paper_claim": (
            "Fig. 4d / Thm 4.2 conclusion (5) / App. B.3: a smaller kernel size K gives a higher p_low (the decoder is "
            "less likely to learn high frequencies)."
        ),
        "theory_thm_4_2_single_channel": _kernel_theory(cfg),
        "setup": (
            f"5 conv layers, {cfg.width} kernels (3 in the last), ReLU, {cfg.padding_mode} padding; "
            f"inits {list(cfg.inits)}; {cfg.networks} networks x {cfg.num_images} images"
        ),
        "datasets": [DATASET_LABELS[d] for d in cfg.datasets],
        "datasets_note": "CIFAR-10 and MNIST replace Broden/Tiny-ImageNet; white noise (64x64) isolates the network",
        "measured": {DATASET_LABELS[ds]: _kernel_measured(sweep, ds, cfg) for ds in cfg.datasets},
        "trend_of_mean_p_low_in_K": _kernel_trends(sweep, cfg),
        "claims": [
            c for ds in cfg.datasets for init in cfg.inits for c in _kernel_claims(data[ds][init], ds, init, cfg)
        ],
        "claims_note": (
            "p_low with DC is the paper's definition; with random networks it is dominated by the DC bin (input "
            "mean and biases), so the version without DC is judged next to it"
        ),
    }
    return ExperimentResult(data=data, summary=summary)


def plot_kernel(data: Mapping[str, Any], cfg: KernelConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw decoder-kernel: input and output magnitude maps per K and the ``p_low`` bars (plumbing)."""
    ks = list(cfg.kernel_sizes)
    rows = [(ds, init) for ds in cfg.datasets for init in cfg.inits]
    ncol = 1 + len(ks) + 1
    fig = Figure(figsize=(2.0 * ncol + 0.5, 2.1 * len(rows) + 0.4), constrained_layout=True)
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    init_label = {"default": "default init", "normal": f"N({cfg.normal_mean:g}, {cfg.normal_std:g}²)"}
    for r, (ds, init) in enumerate(rows):
        draw_family_row(
            axes[r],
            data[ds],
            ds,
            [data[ds][init][f"K{k}"] for k in ks],
            [f"output K={k}, {init_label[init]}" for k in ks],
            [f"K={k}" for k in ks],
        )
    theory = summary.get("theory_thm_4_2_single_channel", {}).get("p_low", {})
    note = ", ".join(f"{k}: {v}" for k, v in theory.items())
    fig.suptitle(
        f"Fig. 4d: output magnitude maps (log10, DC clipped) and $p_{{low}}$ by kernel size "
        f"(Thm 4.2 single-channel theory, white input: {note})",
        fontsize=8,
    )
    return {"fig4d_kernel_size": fig}


register(
    Experiment(
        name="decoder-kernel",
        description="Decoder paper Fig. 4d: kernel size K in {1, 3, 5}, p_low, measured vs Thm 4.2 (spec §7.7)",
        config_cls=KernelConfig,
        run=run_kernel,
        plot=plot_kernel,
        quick={"num_images": 32, "networks": 3},
        needs=("cifar10", "mnist"),
        paper="decoder",
        devices=("cpu",),
        figure="Fig. 4d",
    )
)
