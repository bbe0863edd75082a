"""``cbn-fig2``: autoencoder on the MNIST zeros at 13×13 (Wen & Jacot, Fig. 2; conv_bottleneck §4.2).

(a) singular values of every layer's operator ``MW_ℓ`` coloured by frequency, with the CBN rank read off the
weights and, side by side, off the activations; (b) at layer 5, the effect of multiplying the hidden
representation along each kept singular direction by 2, 0.5 and (non-constant frequencies) ±i, decoded by
layers 6…12. The paper: a few low frequencies in the middle layers; the argument of a non-constant frequency
encodes the x/y position of the digit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from ..analysis.bottleneck_metrics import centroid_shift
from ..analysis.perturbation import kept_directions, perturb_along
from ..datasets.bottleneck_tasks import mnist_digit_downscaled
from ..models.circular_cnn import CircularCNN
from ..plots import show_image
from .cbn_common import (
    CBNConfig,
    analyse_bottleneck,
    build_cnn,
    convergence_summary,
    cpu_threads,
    draw_bottleneck_panels,
    draw_training,
    rank_captions,
    read_layers,
    regression_loss,
    train_in_phases,
)
from .registry import Experiment, ExperimentResult, RunContext, register

PAPER_STATEMENT = (
    "Fig. 2 (L=12, c=50, λ=0.04, β=1): a few singular values ≈ 1 in the middle layers, at the constant "
    "frequency and low frequencies such as (±1,0), (0,±1); the phase of a non-constant frequency encodes "
    "the x/y position of the digit"
)
FACTORS: tuple[complex, ...] = (1.0, 2.0, 0.5, 1j, -1j)


@dataclass(frozen=True)
class Fig2Config(CBNConfig):
    """Defaults = full paper settings where known (L, c, λ, β); everything else was lost and is chosen here
    (see docs/conv_bottleneck.md). ``kernel_size = 0`` means full-size circular kernels."""

    digit: int = 0
    size: int = 13
    resize: str = "area"
    n_train: int = 0  # 0 = every training image of the digit (5923 zeros)
    n_eval: int = 980  # test images of the digit used for activation spectra and perturbations
    width: int = 50
    depth: int = 12
    weight_decay: float = 0.04
    bias_multiplier: float = 1.0
    gd_lr: float = 2e-4
    thresholds: tuple[float, ...] = (0.3, 0.4, 0.6, 0.7)
    eps: float = 1e-2
    perturb_layer: int = 5
    perturb_directions: int = 12
    perturb_examples: int = 2

    def validate(self) -> None:
        """Refuse a perturbation layer outside 1..depth−1, an unknown resize, or a tiny net (plumbing)."""
        if not 1 <= self.perturb_layer < self.depth:
            raise ValueError(f"perturb_layer must be in 1..{self.depth - 1}, got {self.perturb_layer}")
        if self.resize not in ("area", "bilinear"):
            raise ValueError(f"resize must be 'area' or 'bilinear', got {self.resize!r}")
        if self.width < 1 or self.depth < 2:
            raise ValueError("width must be >= 1 and depth >= 2")


def _perturbation_panel(
    model: CircularCNN, examples: torch.Tensor, cfg: Fig2Config, w_sv: np.ndarray
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Decoded outputs for each kept direction (ω, i) of layer ``perturb_layer`` and each factor in FACTORS."""
    layer = cfg.perturb_layer
    conv = model.convs[layer - 1]
    grid = model.grids[layer - 1]
    h, w = w_sv.shape[:2]
    kh = np.fft.fftfreq(h) * h
    kw = np.fft.fftfreq(w) * w
    cands = []
    for row in range(h):
        for col in range(w):
            k, l = int(kh[row]), int(kw[col])
            if (k, l) < (-k if 2 * k % h else k, -l if 2 * l % w else l):
                continue  # one member of each ± pair (the lexicographically larger)
            for idx, value in enumerate(w_sv[row, col]):
                if value > cfg.threshold:
                    cands.append((float(value), (k, l), idx))
    cands.sort(key=lambda c: (abs(c[1][0]) + abs(c[1][1]), -c[0]))  # low frequencies first (paper's panel b)
    cands = cands[: cfg.perturb_directions]
    alpha = model.hidden(examples, layer)
    outputs = np.full((max(1, len(cands)), len(FACTORS), examples.shape[0], h, w), np.nan)
    info = []
    for j, (s, omega, i) in enumerate(cands):
        u, _ = kept_directions(conv, grid, omega)
        self_conj = (2 * omega[0]) % h == 0 and (2 * omega[1]) % w == 0
        shifts = {}
        base = None
        for f, gamma in enumerate(FACTORS):
            if self_conj and complex(gamma).imag != 0:
                continue
            decoded = model.forward_from(perturb_along(alpha, u[:, i], omega, gamma), layer)[:, 0]
            outputs[j, f] = decoded.detach().cpu().numpy()
            if f == 0:
                base = outputs[j, 0]
            elif complex(gamma).imag != 0 and base is not None:
                shifts[str(gamma)] = centroid_shift(base, outputs[j, f])
        info.append(
            {"omega": list(omega), "index": i, "singular_value": round(s, 4), "centroid_shift_rows_cols": shifts}
        )
    data = {
        "perturb_outputs": outputs,
        "perturb_omega": np.array([c[1] for c in cands], dtype=np.int64).reshape(-1, 2),
        "perturb_index": np.array([c[2] for c in cands], dtype=np.int64),
        "perturb_sv": np.array([c[0] for c in cands]),
        "perturb_inputs": examples[:, 0].detach().cpu().numpy(),
    }
    return data, info


def _resize(cfg: Fig2Config) -> Literal["area", "bilinear"]:
    """The resize method for ``mnist_digit_downscaled``, typed (plumbing)."""
    return "bilinear" if cfg.resize == "bilinear" else "area"


def run_fig2(ctx: RunContext, cfg: Fig2Config) -> ExperimentResult:
    """Train the MNIST-zeros autoencoder; spectra, CBN rank and perturbations at one layer (conv_bottleneck §4.2)."""
    root = ctx.require_data("MNIST")
    with cpu_threads(cfg.cpu_threads):
        x_train = mnist_digit_downscaled(
            root,
            cfg.digit,
            cfg.size,
            "train",
            method=_resize(cfg),
            limit=cfg.n_train or None,
        )
        x_eval = mnist_digit_downscaled(
            root,
            cfg.digit,
            cfg.size,
            "test",
            method=_resize(cfg),
            limit=cfg.n_eval,
        )
        model = build_cnn(cfg, 1, 1, cfg.depth, cfg.size, ctx)
        history = train_in_phases(
            ctx, model, x_train.to(ctx.device), x_train.to(ctx.device), regression_loss, cfg.train_settings(), "train"
        )
        model = model.cpu().double().eval()
        data, summary, _, _ = analyse_bottleneck(model, x_eval, cfg.threshold, cfg.thresholds, cfg.eps)
        with torch.no_grad():
            recon = float(regression_loss(model, x_eval.double(), x_eval.double()))
            w_sv = read_layers(data["weight_sv"])[cfg.perturb_layer - 1]
            panel, info = _perturbation_panel(model, x_eval[: cfg.perturb_examples].double(), cfg, w_sv)
    data.update(panel)
    data["training"] = history
    summary = {
        "paper": PAPER_STATEMENT,
        "cbn_rank": summary,
        "test_reconstruction_error": round(recon, 5),
        "test_energy_per_image": round(float(x_eval.double().pow(2).flatten(1).sum(1).mean()), 4),
        "op_norm": round(float(model.operator_norm_sq().detach()), 4),
        "convergence": convergence_summary(history),
        "bias_norm": round(float(model.bias_norm_sq().detach()), 4),
        "n_train": int(x_train.shape[0]),
        "perturbations_layer": cfg.perturb_layer,
        "perturbations": info,
    }
    return ExperimentResult(data=data, summary=summary)


def plot_fig2(data: Mapping[str, Any], cfg: Fig2Config, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw cbn-fig2: (a) per-layer spectra and kept sets, (b) the decoded perturbations (plumbing)."""
    rank = summary["cbn_rank"]
    fig = Figure(figsize=(11.5, 7.2), constrained_layout=True)
    gs = fig.add_gridspec(2, 2, width_ratios=[1.6, 1.0])
    titles = (
        "(a) singular values of $MW_\\ell$ by layer",
        "activation spectra $\\varsigma_{\\ell,\\omega,j}$ (pre-activations)",
    )
    draw_bottleneck_panels(
        fig, (gs[0, 0], gs[1, 0], gs[0, 1], gs[1, 1]), data, cfg.threshold, cfg.eps, titles, per_layer=True
    )
    fig.suptitle(
        f"cbn-fig2: autoencoder on MNIST zeros {cfg.size}×{cfg.size} (L={cfg.depth}, c={cfg.width}, "
        f"λ={cfg.weight_decay:g}, β={cfg.bias_multiplier:g})\n{rank_captions(rank)}",
        fontsize=8,
    )
    return {
        "fig2a_spectra": fig,
        "fig2b_perturbations": _perturbation_figure(data, cfg),
        "training": draw_training(data["training"], "cbn-fig2 training"),
    }


def _perturbation_figure(data: Mapping[str, Any], cfg: Fig2Config) -> Figure:
    """Fig. 2b: per kept direction, the inputs and their decodings after multiplying the hidden representation
    along it by each factor of :data:`FACTORS` (plumbing)."""
    out = data["perturb_outputs"]
    omegas = data["perturb_omega"]
    inputs = data["perturb_inputs"]
    n_dir = omegas.shape[0]
    n_ex = out.shape[2]
    labels = ["input", "×1", "×2", "×0.5", "×i", "×(−i)"]
    per_ex = len(labels) + 1  # a spacer column between examples
    figp = Figure(figsize=(0.95 * (per_ex * n_ex + 1), 1.0 * max(n_dir, 1) + 0.9), constrained_layout=True)
    ratios = [1.3] + ([1.0] * len(labels) + [0.25]) * n_ex
    grid = figp.add_gridspec(max(n_dir, 1), 1 + per_ex * n_ex, width_ratios=ratios)
    for j in range(n_dir):
        ax = figp.add_subplot(grid[j, 0])
        ax.text(
            0.5,
            0.5,
            f"ω=({omegas[j, 0]},{omegas[j, 1]})\n"
            f"i={int(data['perturb_index'][j])}, s={float(data['perturb_sv'][j]):.2f}",
            ha="center",
            va="center",
            fontsize=7,
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        for e in range(n_ex):
            vmax = max(1.0, float(np.nanmax(out[:, :, e])))
            for f, lab in enumerate(labels):
                axi = figp.add_subplot(grid[j, 1 + e * per_ex + f])
                img = inputs[e] if f == 0 else out[j, f - 1, e]
                if np.isnan(img).all():
                    if j == 0:
                        axi.set_title(lab)
                    axi.set_axis_off()
                    continue
                show_image(axi, img, lab if j == 0 else None, vmin=0.0, vmax=vmax)
    if n_dir == 0:
        figp.add_subplot(grid[0, 0]).text(0.5, 0.5, "no kept direction at this layer", ha="center")
    figp.suptitle(
        f"(b) layer {cfg.perturb_layer}: hidden representation multiplied along each kept singular direction "
        "(and its conjugate at −ω), decoded by the remaining layers; ±i only for non-constant ω",
        fontsize=8,
    )
    return figp


register(
    Experiment(
        name="cbn-fig2",
        description="Bottleneck paper Fig. 2: MNIST-zeros autoencoder, spectra by frequency, layer-5 perturbations",
        config_cls=Fig2Config,
        run=run_fig2,
        plot=plot_fig2,
        quick={
            "n_train": 1000,
            "n_eval": 500,
            "width": 12,
            "adam_lr": 2e-3,
            "adam_steps": 1300,
            "gd_steps": 0,
            "batch_size": 64,
            "record_every": 100,
            "cpu_threads": 1,
        },
        needs=("mnist",),
        paper="cbn",
        figure="Fig. 2",
    )
)
