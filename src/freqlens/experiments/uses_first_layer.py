"""``uses-first-layer``: first-layer energy profiles in the patch-PCA basis (Chowers & Weiss 2023, "What do
CNNs learn in the first layer and why?", the energy-profile figure: trained filters against the linear
prediction).

A small CNN with a 5×5 first layer is trained on CIFAR-10 inside the experiment. ``first_layer_energy_profile``
measures the filters' energy along the PCA components of the patches the layer sees, at initialisation and
after training, and fits the closed-form linear prediction ``E_i = α e^{-2λ_i τ} + β (1 - e^{-λ_i τ})²``
(``freqlens.analysis.first_layer_energy``). Read-out: components of high patch variance gain energy, those of low
variance (high spatial frequency) stay near their initial energy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..analysis.first_layer_energy import first_layer_energy_profile, linear_energy_prediction
from ..analysis.statistics import Claim, no_verdict_claim
from .registry import Experiment, ExperimentResult, RunContext, register
from .uses_common import TrainedCNNConfig, cifar_subset, cnn_init_seed, small_cifar_cnn, top1_accuracy, trained_cnn


@dataclass(frozen=True)
class FirstLayerConfig(TrainedCNNConfig):
    """Settings of ``uses-first-layer`` (defaults = full run)."""

    top_components: int = 5  # [choice] read-out: mean energy ratio trained/init on the top and bottom components


def _first_layer_claim(ratio: np.ndarray, k: int) -> Claim:
    """Chowers & Weiss's read-out: the filters gain more energy (trained / init) along the ``k`` highest-variance
    patch-PCA components than along the ``k`` lowest. One trained network: no verdict."""
    top, bottom = float(ratio[:k].mean()), float(ratio[-k:].mean())
    return no_verdict_claim(
        "Chowers & Weiss 2023: first-layer filters gain energy along high-variance patch-PCA components and keep "
        "their initial energy along low-variance ones",
        "top > bottom",
        top - bottom,
        1,
        f"mean energy ratio trained/init, top {k} - bottom {k} components",
        note=f"one trained CNN; ratio {top:.4g} (top), {bottom:.4g} (bottom)",
    )


def run_first_layer(ctx: RunContext, cfg: FirstLayerConfig) -> ExperimentResult:
    """Train the CNN, measure init and trained energy profiles, fit the linear prediction (module docstring)."""
    x_train, y_train = cifar_subset(ctx, "train", cfg.train_images, offset=1)
    x_test, y_test = cifar_subset(ctx, "test", cfg.test_images, offset=2)
    xd, yd = x_test.to(ctx.device), y_test.to(ctx.device)
    init = small_cifar_cnn(cfg.width, cfg.first_kernel, 10, seed=cnn_init_seed(ctx)).to(ctx.device)
    trained, hist = trained_cnn(ctx, cfg, x_train, y_train, "cnn_natural")
    # the trained model standardises with the training statistics; give the init model the same so both see
    # identical patches
    init[0].load_state_dict(trained[0].state_dict())
    profiles = {}
    for name, model in (("init", init), ("trained", trained)):
        profiles[name] = first_layer_energy_profile(model, xd, fit=name == "trained", progress=ctx.show_progress)
    fit = profiles["trained"].fit
    assert fit is not None
    lam = profiles["trained"].eigenvalues
    ratio = profiles["trained"].energy / profiles["init"].energy
    k = cfg.top_components
    data = {
        "eigenvalues": lam,
        "init_energy": profiles["init"].energy,
        "trained_energy": profiles["trained"].energy,
        "predicted": linear_energy_prediction(lam, fit.init_energy, fit.target_energy, fit.time),
        "top_components": profiles["trained"].components[:, :8].T.reshape(8, 3, cfg.first_kernel, cfg.first_kernel),
        "train_loss": hist["train_loss"],
    }
    summary = {
        "paper_claim": (
            "Chowers & Weiss 2023: first-layer filters gain energy along high-variance patch-PCA components; "
            "along low-variance (high-frequency) components they keep their initialisation, as the linear "
            "model predicts."
        ),
        "setting": (
            f"small CNN, first layer {cfg.width} filters {cfg.first_kernel}x{cfg.first_kernel}x3, trained "
            f"{cfg.epochs} epochs on {cfg.train_images} CIFAR-10 images; patches of {cfg.test_images} test images"
        ),
        "measured": {
            "test_accuracy": round(top1_accuracy(trained, xd, yd), 4),
            "fit": {
                "init_energy_alpha": fit.init_energy,
                "target_energy_beta": fit.target_energy,
                "time_tau": fit.time,
                "relative_rms": round(fit.relative_rms, 4),
            },
            f"energy_ratio_trained_over_init_top_{k}": round(float(ratio[:k].mean()), 4),
            f"energy_ratio_trained_over_init_bottom_{k}": round(float(ratio[-k:].mean()), 4),
        },
        "claims": [_first_layer_claim(ratio, k)],
    }
    return ExperimentResult(data=data, summary=summary)


def plot_first_layer(
    data: Mapping[str, np.ndarray], cfg: FirstLayerConfig, summary: Mapping[str, Any]
) -> dict[str, Figure]:
    """Energy profiles with the fitted prediction, and the top patch-PCA components as images (plumbing)."""
    fig = Figure(figsize=(9.0, 3.4), constrained_layout=True)
    grid = fig.add_gridspec(2, 5)
    ax = fig.add_subplot(grid[:, :3])
    idx = np.arange(1, data["eigenvalues"].size + 1)
    ax.semilogy(idx, data["init_energy"], "o", ms=2.5, color="0.6", label="filters at init")
    ax.semilogy(idx, data["trained_energy"], "o", ms=2.5, label="trained filters")
    ax.semilogy(idx, data["predicted"], "-", lw=1.0, label="linear prediction (fit)")
    ax.set_xlabel("patch PCA component (descending variance)")
    ax.set_ylabel("mean filter energy")
    ax.legend(fontsize=7)
    comps = data["top_components"]
    for i in range(min(4, comps.shape[0])):
        sub = fig.add_subplot(grid[i // 2, 3 + i % 2])
        c = comps[i]
        sub.imshow(np.moveaxis(0.5 + 0.5 * c / (np.abs(c).max() or 1.0), 0, -1))
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_title(f"PC {i + 1}", fontsize=7)
    fig.suptitle("First-layer energy profile in the patch-PCA basis", fontsize=9)
    return {"first_layer_energy": fig}


register(
    Experiment(
        name="uses-first-layer",
        description="Chowers & Weiss 2023: first-layer filter energy in the patch-PCA basis vs linear prediction",
        config_cls=FirstLayerConfig,
        run=run_first_layer,
        plot=plot_first_layer,
        quick={"train_images": 4000, "test_images": 200, "width": 16, "epochs": 3},
        needs=("cifar10",),
        paper="uses",
        figure="Chowers & Weiss 2023 energy profile",
    )
)
