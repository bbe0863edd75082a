"""Statistical structure figures of the linear-CNN paper (Pinson et al. 2023): Fig. 2 and Fig. S.4.

``pinson-fig2``: geometric shapes, one image per class: class images, ``U``, singular values, right
singular vectors as images, the modes ``u_α s_α v_αᵀ`` and the vec-2D spectra ``|v̂_α|``
(spec ``linear_cnn_dynamics.md`` §2, §10 Fig. 2).
``pinson-figS4``: CIFAR-4 (classes 0-3) with the training mean image subtracted: 3 modes remain
(spec §9 I.4, §10 Fig. S.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..datasets import CIFAR10_CLASSES, geometric_shapes, load_cifar10
from ..plots import MODE_COLORS, axes_row, image_row, show_image, show_spectrum, signed_image
from ..structure import DatasetStructure
from .registry import Experiment, ExperimentResult, RunContext, register


def _structure_arrays(st: DatasetStructure, top_k: int) -> dict[str, np.ndarray]:
    """``S, U``, right singular vectors, modes, ``|v̂_α|`` and dominant frequencies for data.npz (spec §2)."""
    dom = st.dominant_frequencies(top_k)
    _, h, w = st.image_shape
    return {
        "S": st.S,
        "U": st.U,
        "v_images": st.v_images,
        "modes": st.modes,
        "v_hat_abs": np.sqrt((np.abs(st.v_hat) ** 2).sum(axis=1)).reshape(st.num_classes, h, w),
        "v_proj_sigma_xx": st.v_proj_sigma_xx,
        "dominant_index": dom.index,
        "dominant_kl": dom.kl,
        "dominant_magnitude": dom.magnitude,
    }


def _structure_summary(st: DatasetStructure, dom_kl: np.ndarray, dom_mag: np.ndarray) -> dict[str, Any]:
    """Singular values, rank, dominant frequencies and Σ_xx diagonality for summary.json (spec §2, §8.1)."""
    p = st.num_classes
    diag = np.diag(st.v_proj_sigma_xx)
    ps2 = p * st.S**2
    return {
        "num_classes": p,
        "singular_values": st.S.tolist(),
        "rank": st.rank(),
        "dominant_frequencies": {
            f"mode_{a}": [
                {"kl": dom_kl[a, j].tolist(), "abs_v_hat": float(dom_mag[a, j])} for j in range(dom_kl.shape[1])
            ]
            for a in range(p)
        },
        "off_diagonal_fraction_VtSxxV": st.off_diagonal_fraction,
        "class_coherence": st.class_coherence,
        "diag_VtSxxV_over_p_s2": (diag / np.where(ps2 > 0, ps2, np.nan)).tolist(),
    }


# ----------------------------------------------------------------------------------- pinson-fig2
@dataclass(frozen=True)
class Fig2Config:
    """Geometric shapes (spec §9 I.3; n and the shape set were lost [?], chosen here)."""

    n: int = 16
    shapes: tuple[str, ...] = ("square", "circle", "triangle", "cross", "bar", "ring")
    supersample: int = 4
    top_k: int = 4


def run_fig2(ctx: RunContext, cfg: Fig2Config) -> ExperimentResult:
    """The SVD of ``Σ_yx`` for the geometric shapes, one image per class (spec §2, §10 Fig. 2)."""
    x, labels = geometric_shapes(cfg.n, cfg.shapes, cfg.supersample)
    st = DatasetStructure.from_data(x, labels)
    data = {"class_images": x[:, 0].numpy(), **_structure_arrays(st, cfg.top_k)}
    summary = _structure_summary(st, data["dominant_kl"], data["dominant_magnitude"])
    summary["shapes"] = list(cfg.shapes)
    return ExperimentResult(data=data, summary=summary)


def _plot_svd_panels(fig: Figure, gs: Any, data: Mapping[str, np.ndarray], class_names: list[str]) -> None:
    """Draw ``U`` (class × mode) and the singular values ``s_α`` side by side (plumbing)."""
    u = data["U"]
    s = data["S"]
    ax_u = fig.add_subplot(gs[0])
    lim = float(np.abs(u).max())
    ax_u.imshow(u, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax_u.set_title("U (class × mode)")
    ax_u.set_xlabel("mode α")
    ax_u.set_yticks(range(len(class_names)))
    ax_u.set_yticklabels(class_names)
    ax_u.set_xticks(range(u.shape[1]))
    ax_s = fig.add_subplot(gs[1])
    ax_s.bar(range(len(s)), s, color=[MODE_COLORS[a % len(MODE_COLORS)] for a in range(len(s))])
    ax_s.set_title("singular values $s_\\alpha$")
    ax_s.set_xlabel("mode α")
    ax_s.set_xticks(range(len(s)))


def plot_fig2(data: Mapping[str, np.ndarray], cfg: Fig2Config, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw pinson-fig2: class images, ``U`` and ``s``, ``v_α`` as images, ``|v̂_α|`` (plumbing)."""
    p = data["S"].shape[0]
    names = list(cfg.shapes)
    fig = Figure(figsize=(1.25 * p + 1.0, 6.8), constrained_layout=True)
    outer = fig.add_gridspec(4, 1, height_ratios=[1, 1.3, 1, 1])
    image_row(axes_row(fig, outer[0], p), data["class_images"], [f"class {i}: {n}" for i, n in enumerate(names)])
    _plot_svd_panels(fig, outer[1].subgridspec(1, 2), data, names)
    image_row(axes_row(fig, outer[2], p), data["v_images"][:, 0], [f"$v_{a}$" for a in range(p)], signed=True)
    for a, ax in enumerate(axes_row(fig, outer[3], p)):
        show_spectrum(ax, data["v_hat_abs"][a], f"$|\\hat v_{a}|$")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle("Geometric shapes: statistical structure of $\\Sigma_{yx}$ (Pinson et al., Fig. 2)")

    # The modes u_α s_α v_αᵀ (a p × n² matrix each: one image per class) and their running sums,
    # which rebuild each class image (times 1/p) from broad to fine distinctions.
    modes = data["modes"][:, :, 0]  # (mode, class, H, W)
    fig_m = Figure(figsize=(2.3 * p * 0.55 + 1.5, 1.05 * p + 0.8), constrained_layout=True)
    grid = fig_m.add_gridspec(p, 2 * p + 1, width_ratios=[1] * p + [0.25] + [1] * p)
    lim_cum = float(np.abs(np.cumsum(modes, axis=0)).max()) or 1.0
    for a in range(p):
        lim = float(np.abs(modes[a]).max()) or 1.0
        cum = modes[: a + 1].sum(axis=0)
        for i in range(p):
            ax = fig_m.add_subplot(grid[a, i])
            show_image(ax, modes[a, i], cmap="RdBu_r", vmin=-lim, vmax=lim)
            if a == 0:
                ax.set_title(names[i])
            if i == 0:
                ax.set_ylabel(f"mode {a}")
            ax2 = fig_m.add_subplot(grid[a, p + 1 + i])
            show_image(ax2, cum[i], cmap="RdBu_r", vmin=-lim_cum, vmax=lim_cum)
            if a == 0:
                ax2.set_title(names[i])
            if i == 0:
                ax2.set_ylabel(f"modes 0..{a}")
    fig_m.suptitle(
        "left: modes $u_{i\\alpha} s_\\alpha v_\\alpha^T$ (rows α, columns class i);  right: running sum over modes"
    )
    return {"fig2_structure": fig, "fig2_modes": fig_m}


register(
    Experiment(
        name="pinson-fig2",
        description="Linear-CNN paper Fig. 2: SVD of Σ_yx for geometric shapes (U, s, v as images, modes, |v̂|)",
        config_cls=Fig2Config,
        run=run_fig2,
        plot=plot_fig2,
        quick={},
        paper="pinson",
        devices=("cpu",),
        figure="Fig. 2",
    )
)


# ---------------------------------------------------------------------------------- pinson-figS4
@dataclass(frozen=True)
class FigS4Config:
    """CIFAR-4 structure after subtracting the training mean image (spec §9 I.4)."""

    classes: tuple[int, ...] = (0, 1, 2, 3)
    subtract_mean: bool = True
    max_per_class: int = 0  # 0 = all training images (5000 per class)
    top_k: int = 6

    def validate(self) -> None:
        """Refuse a negative ``max_per_class`` (plumbing)."""
        if self.max_per_class < 0:
            raise ValueError(f"max_per_class must be >= 0, got {self.max_per_class}")


def _first_per_class(labels: np.ndarray, k: int) -> np.ndarray:
    """Mask keeping the first ``k`` images of every class, in data order (plumbing)."""
    keep = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:k]] = True
    return keep


def run_figS4(ctx: RunContext, cfg: FigS4Config) -> ExperimentResult:
    """The SVD of ``Σ_yx`` for CIFAR-4 with the mean image subtracted: 3 modes remain (spec §9 I.4, Fig. S.4)."""
    root = ctx.require_data("CIFAR-10")
    x, labels = load_cifar10(root, "train", classes=cfg.classes, dtype=torch.float64)
    if cfg.max_per_class:
        keep = _first_per_class(labels.numpy(), cfg.max_per_class)
        x, labels = x[keep], labels[keep]
    if cfg.subtract_mean:
        # Mean of the images used (= the training mean for the full set, as load_cifar10 does):
        # with balanced classes the class means then sum to zero and mode 0 disappears.
        x = x - x.mean(dim=0)
    st = DatasetStructure.from_data(x, labels, num_classes=len(cfg.classes))
    data = _structure_arrays(st, cfg.top_k)
    data["class_means"] = st.class_means.reshape(st.num_classes, *st.image_shape)
    summary = _structure_summary(st, data["dominant_kl"], data["dominant_magnitude"])
    summary["num_images"] = int(st.num_samples)
    summary["classes"] = [CIFAR10_CLASSES[c] for c in cfg.classes]
    summary["s_last_over_s0"] = float(st.S[-1] / st.S[0])
    return ExperimentResult(data=data, summary=summary)


def plot_figS4(data: Mapping[str, np.ndarray], cfg: FigS4Config, summary: Mapping[str, Any]) -> dict[str, Figure]:
    """Draw pinson-figS4: class means minus the train mean, ``U`` and ``s``, ``v_α``, ``|v̂_α|`` (plumbing)."""
    p = data["S"].shape[0]
    names = [CIFAR10_CLASSES[c] for c in cfg.classes]
    fig = Figure(figsize=(1.6 * p + 1.2, 7.0), constrained_layout=True)
    outer = fig.add_gridspec(4, 1, height_ratios=[1, 1.3, 1, 1])
    means = data["class_means"]
    row = axes_row(fig, outer[0], p)
    for i, ax in enumerate(row):
        show_image(ax, signed_image(means[i]), f"mean − train mean:\n{names[i]}")
    _plot_svd_panels(fig, outer[1].subgridspec(1, 2), data, names)
    rank = int(summary.get("rank", p))
    row = axes_row(fig, outer[2], p)
    for a, ax in enumerate(row):
        title = f"$v_{a}$ (RGB)" if a < rank else f"$v_{a}$: s≈0, arbitrary"
        show_image(ax, signed_image(data["v_images"][a]), title)
    for a, ax in enumerate(axes_row(fig, outer[3], p)):
        show_spectrum(ax, data["v_hat_abs"][a], f"$|\\hat v_{a}|$ (log)", log=True)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle(f"CIFAR-4, mean subtracted: {rank} modes (Pinson et al., Fig. S.4)")
    return {"figS4_cifar4_structure": fig}


register(
    Experiment(
        name="pinson-figS4",
        description="Linear-CNN paper Fig. S.4: SVD of Σ_yx for CIFAR-4 with the mean subtracted (3 modes)",
        config_cls=FigS4Config,
        run=run_figS4,
        plot=plot_figS4,
        quick={"max_per_class": 1000},
        needs=("cifar10",),
        paper="pinson",
        devices=("cpu",),
        figure="Fig. S.4",
    )
)
