"""``uses-sensitivity``: input-frequency sensitivity of a CIFAR-10 CNN beside the dataset's power spectrum
(Godfrey et al. 2023, ``pnnl/frequency_sensitivity``: sensitivity maps next to the data's frequency statistics).

A small CNN is trained inside the experiment; ``input_frequency_sensitivity`` gives per-channel maps of
``E|∂L/∂x̂(ω)|`` (orthonormal DFT) and ``E|x̂(ω)|²`` on test images, before and after training. Read-out: the
Spearman rank correlation over frequencies between log sensitivity and log power (channel mean), and the
sensitivity's radial profile; Godfrey et al. find trained networks most sensitive where the data has power.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from ..analysis.frequency_bands import radial_mean
from ..analysis.frequency_use import input_frequency_sensitivity, shifted_frequencies
from ..analysis.statistics import Claim, no_verdict_claim
from ..plots import show_spectrum
from .registry import Experiment, ExperimentResult, RunContext, register
from .uses_common import TrainedCNNConfig, cifar_subset, cnn_init_seed, small_cifar_cnn, top1_accuracy, trained_cnn


@dataclass(frozen=True)
class SensitivityConfig(TrainedCNNConfig):
    """Settings of ``uses-sensitivity`` (defaults = full run)."""


def _sensitivity_claims(measured: Mapping[str, Mapping[str, float]]) -> list[Claim]:
    """Godfrey et al.'s read-out: the trained CNN's sensitivity rank-correlates with the data power, more than at
    init. One trained network (the frequencies of one network are not independent samples): no verdict."""
    key = "spearman_log_sensitivity_vs_log_power"
    rho_init, rho_trained = measured["init"][key], measured["trained"][key]
    one = "one trained CNN"
    return [
        no_verdict_claim(
            "Godfrey et al. 2023: a trained CNN is most sensitive where the data has the most power",
            "> 0",
            rho_trained,
            1,
            "Spearman rho of log sensitivity vs log power over frequencies (channel mean)",
            note=f"{one}; rho over the frequencies of that network",
        ),
        no_verdict_claim(
            "Godfrey et al. 2023: training aligns the sensitivity with the data's frequency statistics",
            "> 0",
            rho_trained - rho_init,
            1,
            "Spearman rho trained - at init",
            note=f"{one} and its initialisation; rho {rho_init:g} at init, {rho_trained:g} trained",
        ),
    ]


def run_sensitivity(ctx: RunContext, cfg: SensitivityConfig) -> ExperimentResult:
    """Sensitivity and power maps of the CNN at init and after training, with rank correlations (module docstring)."""
    x_train, y_train = cifar_subset(ctx, "train", cfg.train_images, offset=1)
    x_test, y_test = cifar_subset(ctx, "test", cfg.test_images, offset=2)
    xd, yd = x_test.to(ctx.device), y_test.to(ctx.device)
    init = small_cifar_cnn(cfg.width, cfg.first_kernel, 10, seed=cnn_init_seed(ctx)).to(ctx.device)
    trained, hist = trained_cnn(ctx, cfg, x_train, y_train, "cnn_natural")
    init[0].load_state_dict(trained[0].state_dict())  # same input standardisation as the trained model
    # {"frequencies", "train_loss", "power", "power_radial", "init"|"trained": {"sensitivity", "radial"}}
    data: dict[str, Any] = {"frequencies": shifted_frequencies(32), "train_loss": hist["train_loss"]}
    measured: dict[str, Any] = {}
    for name, model in (("init", init), ("trained", trained)):

        def compute(model: Any = model) -> dict[str, Any]:
            """Sensitivity and power maps of ``model`` on the test images (plumbing)."""
            s = input_frequency_sensitivity(model, (xd, yd), progress=ctx.show_progress)
            return {"sensitivity": s.sensitivity, "power": s.power}

        arrays = ctx.stage(f"sensitivity_{name}", compute)
        sens, power = arrays["sensitivity"], arrays["power"]
        data[name] = {"sensitivity": sens, "radial": radial_mean(sens.mean(axis=0))}
        data["power"] = power
        rho = spearmanr(np.log(sens.mean(axis=0)).ravel(), np.log(power.mean(axis=0)).ravel()).statistic
        measured[name] = {"spearman_log_sensitivity_vs_log_power": round(float(rho), 4)}
    data["power_radial"] = radial_mean(data["power"].mean(axis=0))
    measured["trained"]["test_accuracy"] = round(top1_accuracy(trained, xd, yd), 4)
    summary = {
        "paper_claim": (
            "Godfrey et al. 2023: a trained CNN's input-frequency sensitivity E|dL/dx_hat| follows the data's "
            "frequency statistics: largest where the dataset has the most power (low frequencies for CIFAR-10)."
        ),
        "setting": (
            f"small CNN (width {cfg.width}) trained {cfg.epochs} epochs on {cfg.train_images} CIFAR-10 images; "
            f"{cfg.test_images} test images; orthonormal DFT"
        ),
        "measured": measured,
        "claims": _sensitivity_claims(measured),
    }
    return ExperimentResult(data=data, summary=summary)


def plot_sensitivity(data: Mapping[str, Any], cfg: SensitivityConfig, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Sensitivity at init and trained, the data power, and their radial profiles (plumbing)."""
    fig = Figure(figsize=(11.0, 3.2), constrained_layout=True)
    axes = fig.subplots(1, 4)
    panels = (
        (data["init"]["sensitivity"], "E|dL/dx̂| at init (log10)"),
        (data["trained"]["sensitivity"], "E|dL/dx̂| trained (log10)"),
        (data["power"], "E|x̂|² CIFAR-10 (log10)"),
    )
    for ax, (values, title) in zip(axes, panels):
        show_spectrum(ax, np.fft.ifftshift(values.mean(axis=0)), title, log=True)
        fig.colorbar(ax.images[-1], ax=ax, shrink=0.7)
    ax = axes[3]
    for name, label in (("init", "sensitivity, init"), ("trained", "sensitivity, trained")):
        radial = data[name]["radial"]
        ax.semilogy(radial / radial[0], label=label)
    ax.semilogy(data["power_radial"] / data["power_radial"][0], "k--", label="power")
    ax.set_xlabel("max(|k|, |l|)")
    ax.set_ylabel("relative to DC")
    ax.legend(fontsize=6)
    fig.suptitle("Input-frequency sensitivity (channel mean) and data power, DC at centre", fontsize=9)
    return {"frequency_sensitivity": fig}


register(
    Experiment(
        name="uses-sensitivity",
        description="Godfrey et al. 2023: input-frequency sensitivity of a CIFAR-10 CNN beside the data power",
        config_cls=SensitivityConfig,
        run=run_sensitivity,
        plot=plot_sensitivity,
        quick={"train_images": 4000, "test_images": 256, "width": 16, "epochs": 3},
        needs=("cifar10",),
        paper="uses",
        figure="Godfrey et al. 2023 sensitivity vs power",
    )
)
