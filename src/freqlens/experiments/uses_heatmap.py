"""``uses-heatmap``: Fourier heat maps of CIFAR-10 CNNs (Yin et al. 2019, "A Fourier perspective on model
robustness", the CIFAR-10 heat-map figure: natural training against Gaussian data augmentation).

Two small CNNs (``uses_common.small_cifar_cnn``) are trained inside the experiment, one naturally and one with
Gaussian data augmentation; ``freqlens.analysis.frequency_use.fourier_heatmap`` then measures the test error
under a Fourier-basis perturbation of L2 norm ``eps`` at every frequency (pixel units, images in [0, 1]).
Yin et al.'s read-out: the naturally trained model is sensitive to high-frequency perturbations, Gaussian
augmentation makes it robust there (and relatively more sensitive at low frequencies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..analysis.frequency_bands import band_masks
from ..analysis.frequency_use import fourier_heatmap, shifted_frequencies
from ..analysis.statistics import Claim, no_verdict_claim
from ..plots import show_spectrum
from .registry import Experiment, ExperimentResult, RunContext, register
from .uses_common import TrainedCNNConfig, cifar_subset, top1_accuracy, trained_cnn

MODELS = ("natural", "gaussian")


@dataclass(frozen=True)
class HeatmapConfig(TrainedCNNConfig):
    """Settings of ``uses-heatmap`` (defaults = full run; [choice] = not fixed by the paper)."""

    eps: float = 4.0  # Yin et al. use eps = 4 for CIFAR-10
    heatmap_images: int = 1000  # [choice] test images per frequency
    noise_std: float = 0.1  # [choice] Gaussian augmentation std in pixel units
    low_radius: int = 4  # [choice] read-out bands: max(|k|,|l|) <= 4 and >= 12
    high_radius: int = 12

    def validate(self) -> None:
        """Also require ``eps > 0`` and ``heatmap_images <= test_images`` (plumbing)."""
        super().validate()
        if not self.eps > 0 or not 1 <= self.heatmap_images <= self.test_images:
            raise ValueError("eps must be > 0 and heatmap_images in [1, test_images]")


def _heatmap_claims(nat: Mapping[str, float], gau: Mapping[str, float]) -> list[Claim]:
    """Yin et al.'s two read-outs of the band means (``measured`` entries of the natural and the Gaussian
    model): one trained network per training scheme, so no verdict (statistics: fewer than 3 networks)."""
    one = "one trained CNN per training scheme"
    return [
        no_verdict_claim(
            "Yin et al. 2019: Gaussian data augmentation lowers the test error under high-frequency Fourier "
            "perturbations",
            "lower",
            gau["mean_error_high_band"] - nat["mean_error_high_band"],
            1,
            "difference of mean high-band error, Gaussian - natural",
            note=f"{one}; binomial s.e. per frequency {nat['standard_error_per_frequency']:g} (natural), "
            f"{gau['standard_error_per_frequency']:g} (Gaussian)",
        ),
        no_verdict_claim(
            "Yin et al. 2019: a naturally trained model is sensitive to high-frequency Fourier perturbations",
            "higher",
            nat["mean_error_high_band"] - nat["unperturbed_error"],
            1,
            "mean high-band error - unperturbed error (natural model)",
            note=one,
        ),
    ]


def run_heatmap(ctx: RunContext, cfg: HeatmapConfig) -> ExperimentResult:
    """Train the natural and Gaussian-augmented CNNs and measure their Fourier heat maps (module docstring)."""
    x_train, y_train = cifar_subset(ctx, "train", cfg.train_images, offset=1)
    x_test, y_test = cifar_subset(ctx, "test", cfg.test_images, offset=2)
    low, high = band_masks(32, cfg.low_radius, cfg.high_radius)
    data: dict[str, Any] = {"frequencies": shifted_frequencies(32)}  # and {model: {"heatmap", "train_loss"}}
    measured: dict[str, Any] = {}
    for name in MODELS:
        noise = cfg.noise_std if name == "gaussian" else 0.0
        model, hist = trained_cnn(ctx, cfg, x_train, y_train, f"cnn_{name}", noise_std=noise)
        xd, yd = x_test.to(ctx.device), y_test.to(ctx.device)

        def compute(model: Any = model, xd: Any = xd, yd: Any = yd) -> dict[str, Any]:
            """The Fourier heat map of ``model`` on the first ``heatmap_images`` test images (plumbing)."""
            hm = fourier_heatmap(
                model, (xd[: cfg.heatmap_images], yd[: cfg.heatmap_images]), eps=cfg.eps, progress=ctx.show_progress
            )
            return {"values": hm.values, "baseline": hm.baseline}

        hm_arrays = ctx.stage(f"heatmap_{name}", compute)
        n = min(cfg.heatmap_images, cfg.test_images)
        values = hm_arrays["values"]
        data[name] = {"heatmap": values, "train_loss": hist["train_loss"]}
        measured[name] = {
            "test_accuracy": round(top1_accuracy(model, xd, yd), 4),
            "unperturbed_error": round(float(hm_arrays["baseline"]), 4),
            "mean_error_low_band": round(float(values[low].mean()), 4),
            "mean_error_high_band": round(float(values[high].mean()), 4),
            # binomial standard error of one map entry: differences below it are noise
            "standard_error_per_frequency": round(float(np.sqrt(values * (1 - values)).mean() / np.sqrt(n)), 4),
        }
    nat, gau = measured["natural"], measured["gaussian"]
    summary = {
        "paper_claim": (
            "Yin et al. 2019: a naturally trained CIFAR-10 model is sensitive to Fourier perturbations at high "
            "frequencies; Gaussian data augmentation makes it robust there (and shifts the sensitivity to low "
            "frequencies)."
        ),
        "setting": (
            f"small CNN (width {cfg.width}, first kernel {cfg.first_kernel}) trained {cfg.epochs} epochs on "
            f"{cfg.train_images} CIFAR-10 images; eps = {cfg.eps:g} (L2, pixel units in [0, 1]); "
            f"{cfg.heatmap_images} test images; Gaussian augmentation std {cfg.noise_std:g}"
        ),
        "bands": f"low: max(|k|,|l|) <= {cfg.low_radius}; high: max(|k|,|l|) >= {cfg.high_radius}",
        "measured": measured,
        "note": "band differences smaller than a few standard errors are not resolved by this run",
        "claims": _heatmap_claims(nat, gau),
    }
    return ExperimentResult(data=data, summary=summary)


def plot_heatmap(data: Mapping[str, Any], cfg: HeatmapConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """The two heat maps side by side on one colour scale (plumbing)."""
    fig = Figure(figsize=(8.0, 3.6), constrained_layout=True)
    axes = fig.subplots(1, len(MODELS))
    vmin = min(float(data[m]["heatmap"].min()) for m in MODELS)
    vmax = max(float(data[m]["heatmap"].max()) for m in MODELS)
    for ax, name in zip(axes, MODELS):
        show_spectrum(ax, np.fft.ifftshift(data[name]["heatmap"]), f"{name} training")
        ax.images[-1].set_clim(vmin, vmax)
    fig.colorbar(axes[-1].images[-1], ax=list(axes), shrink=0.8, label="test error")
    fig.suptitle(f"Fourier heat maps, eps = {cfg.eps:g} (DC at centre)", fontsize=9)
    return {"fourier_heatmaps": fig}


register(
    Experiment(
        name="uses-heatmap",
        description="Yin et al. 2019: CIFAR-10 Fourier heat maps, natural vs Gaussian-augmented small CNN",
        config_cls=HeatmapConfig,
        run=run_heatmap,
        plot=plot_heatmap,
        quick={"train_images": 4000, "test_images": 500, "width": 16, "epochs": 3, "heatmap_images": 32},
        needs=("cifar10",),
        paper="uses",
        figure="Yin et al. 2019 CIFAR-10 heat maps",
    )
)
