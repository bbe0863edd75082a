"""Matplotlib figures of a :class:`~freqlens.report.core.Report` and of a tracked run (plumbing).

Drawn from the report's arrays only, so a loaded report draws the same figures as a fresh one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .core import Report

__all__ = ["report_figures", "tracker_figures", "uses_figures"]


def _subplots(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    """A figure outside pyplot (no global state, no backend change, nothing to close) and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols, squeeze=False)


def _per_layer_axis(fig: Figure, ax: Any, names: list[str], ylabel: str, title: str, legend: bool = True) -> None:
    """Layer names along x, labels, legend, tight layout (plumbing)."""
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=7)
    fig.tight_layout()


def _label_panels(fig: Figure, axes: Any, names: list[str], ylabel: str, title: str) -> Figure:
    """One panel per layer over training steps: titles, axis labels, suptitle, tight layout (plumbing)."""
    for ax, name in zip(axes[0], names):
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan


def report_figures(report: Report) -> dict[str, Any]:
    """Figures by name: ``operator_norms``, ``radial_energy``, ``p_low``, ``cbn``, ``true_vs_bound`` (when a
    small layer has its true singular values), the tracker's over-time plots and the "uses" figures
    (:func:`uses_figures`) (plumbing)."""
    figs: dict[str, Any] = {}
    rows = report.rows
    if rows:
        idx = np.arange(len(rows))
        fig, axs = _subplots((max(6.0, 0.35 * len(rows)), 3.6))
        ax = axs[0][0]
        bound = np.array([_num(r.get("bound_norm")) for r in rows])
        true = np.array([_num(r.get("operator_norm")) for r in rows])
        ax.plot(idx, bound, "o", mfc="none", label="per-frequency max (circulant; upper bound if not exact)")
        ax.plot(idx, true, "x", color="C3", label="true operator norm")
        for i, r in enumerate(rows):
            if r.get("status") == "skipped":
                ax.axvspan(i - 0.4, i + 0.4, color="0.9", zorder=0)
        names = [r["layer"] for r in rows]
        _per_layer_axis(fig, ax, names, "‖layer‖₂", "operator norm per conv layer (grey: no per-frequency rule)")
        figs["operator_norms"] = fig

    measured = [(i, r) for i, r in enumerate(rows) if f"a{i}_radial_energy" in report.arrays]
    if measured:
        fig, axs = _subplots((6.4, 3.8))
        ax = axs[0][0]
        cmap = matplotlib.colormaps["viridis"]
        for j, (i, r) in enumerate(measured):
            e = report.arrays[f"a{i}_radial_energy"]
            c = report.arrays[f"a{i}_radial_centres"]
            ax.plot(c, e / max(e.sum(), 1e-300), color=cmap(j / max(1, len(measured) - 1)), lw=1, label=r["layer"])
        ax.set_yscale("log")
        ax.set_xlabel("radial frequency |ω| (cycles / pixel)")
        ax.set_ylabel("fraction of activation energy")
        ax.set_title("energy by radial frequency (dark: early layers)")
        if len(measured) <= 12:
            ax.legend(fontsize=6)
        fig.tight_layout()
        figs["radial_energy"] = fig

        fig, axs = _subplots((max(6.0, 0.35 * len(measured)), 3.4))
        ax = axs[0][0]
        ax.bar(np.arange(len(measured)), [_num(r.get("p_low")) for _, r in measured])
        ax.set_ylim(0, 1)
        names = [r["layer"] for _, r in measured]
        title = "share of activation power in Ω_low per layer"
        _per_layer_axis(fig, ax, names, "p_low (pooled over images)", title, legend=False)
        figs["p_low"] = fig

    if rows:
        fig, axs = _subplots((max(6.0, 0.35 * len(rows)), 3.4))
        ax = axs[0][0]
        idx = np.arange(len(rows))
        ax.plot(idx, [_num(r.get("weight_kept")) for r in rows], "o-", label="weights: # s > τ")
        ax.plot(idx, [_num(r.get("act_kept")) for r in rows], "s-", label="activations: # for 1-ε energy")
        ax.set_yscale("log")
        names = [r["layer"] for r in rows]
        _per_layer_axis(fig, ax, names, "kept (frequency, direction) pairs", "bottleneck across depth (CBN counts)")
        figs["cbn"] = fig

    gaps = [(i, r) for i, r in enumerate(rows) if f"w{i}_true_sv" in report.arrays][:4]
    if gaps:
        fig, axes = _subplots((3.2 * len(gaps), 3.0), len(gaps))
        for ax, (i, r) in zip(axes[0], gaps):
            t = report.arrays[f"w{i}_true_sv"]
            ax.plot(t, label=f"true ({t.size})", color="C3")
            if f"w{i}_sv" in report.arrays:
                b = np.sort(report.arrays[f"w{i}_sv"].reshape(-1))[::-1]
                ax.plot(b, "--", label=f"circulant ({b.size})", color="C0")
            ax.set_title(r["layer"], fontsize=8)
            ax.set_xlabel("index")
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("singular value")
        fig.suptitle("true operator vs per-frequency values", fontsize=9)
        fig.tight_layout()
        figs["true_vs_bound"] = fig
    if report.tracker is not None:
        figs.update(tracker_figures(report.tracker, report.arrays))
    figs.update(uses_figures(report))
    return figs


def _shifted_panel(fig: Figure, ax: Any, values: np.ndarray, title: str, log: bool = False) -> None:
    """An ``(H, W)`` map in fftshift layout, with signed-frequency axes (plumbing)."""
    h, w = values.shape
    shown = np.log10(np.maximum(values, 1e-300)) if log else values
    extent = (-(w // 2) - 0.5, (w - 1) // 2 + 0.5, (h - 1) // 2 + 0.5, -(h // 2) - 0.5)
    im = ax.imshow(shown, cmap="viridis", extent=extent)
    ax.set_title(title, fontsize=7)
    ax.set_xlabel("l", fontsize=7)
    ax.set_ylabel("k", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def uses_figures(report: Report) -> dict[str, Any]:
    """The "uses" section's figures: each analysis's own ``plot()`` (``uses_fourier_heatmap``,
    ``uses_frequency_sensitivity``, ``uses_first_layer_energy``) and ``uses_beside_spectra``: the heat map,
    the sensitivity and the data power next to the first measured layer's weight spectrum ``σ_max(ω)`` and
    activation power ``Σ_j ς²_{ω,j}``, all with DC at the centre (plumbing)."""
    results = report.uses_results()
    figs: dict[str, Any] = {f"uses_{name}": result.plot() for name, result in results.items()}
    panels: list[tuple[np.ndarray, str, bool]] = []
    if "fourier_heatmap" in results:
        hm = results["fourier_heatmap"]
        panels.append((hm.effect, f"heat map: change of {hm.metric} (eps={hm.eps:g})", False))
    if "frequency_sensitivity" in results:
        fs = results["frequency_sensitivity"]
        panels.append((fs.sensitivity.mean(axis=0), "input sensitivity E|dL/dx̂| (log10, mean over channels)", True))
        panels.append((fs.power.mean(axis=0), "data power E|x̂|² (log10, mean over channels)", True))
    if not panels:
        return figs
    rows = report.rows
    first_w = next((i for i in range(len(rows)) if f"w{i}_sv" in report.arrays), None)
    first_a = next((i for i in range(len(rows)) if f"a{i}_sv" in report.arrays), None)
    if first_w is not None:
        top = np.fft.fftshift(report.arrays[f"w{first_w}_sv"][..., 0])
        panels.append((top, f"weights {rows[first_w]['layer']}: σ_max(ω) ({rows[first_w]['operator']})", False))
    if first_a is not None:
        power = np.fft.fftshift((report.arrays[f"a{first_a}_sv"] ** 2).sum(axis=-1))
        panels.append((power, f"activations {rows[first_a]['layer']}: power (log10)", True))
    fig, axes = _subplots((3.3 * len(panels), 3.2), len(panels))
    for ax, (values, title, log) in zip(axes[0], panels):
        _shifted_panel(fig, ax, values, title, log)
    fig.suptitle("which frequencies the model uses, next to those it keeps (DC at the centre)", fontsize=9)
    fig.tight_layout()
    figs["uses_beside_spectra"] = fig
    return figs


def tracker_figures(track: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Over-time plots of a tracked run (``track_*`` arrays): loss, top singular value by radial frequency
    per layer (which frequencies are learned first), activation energy by radial frequency, CBN counts."""
    figs: dict[str, Any] = {}
    steps = arrays.get("track_steps")
    if steps is None or steps.size == 0:
        return figs
    loss = arrays.get("track_loss")
    if loss is not None and np.isfinite(loss).any():
        fig, axs = _subplots((5.0, 3.0))
        ax = axs[0][0]
        ax.plot(steps, loss)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("training loss")
        fig.tight_layout()
        figs["track_loss"] = fig
    names = track.get("layers", [])
    if names:
        n = len(names)
        fig, axes = _subplots((3.0 * n, 3.0), n)
        for j, ax in enumerate(axes[0]):
            radial = arrays.get(f"track_w{j}_radial_top")  # (T, bins)
            if radial is None:
                continue
            cmap = matplotlib.colormaps["plasma"]
            for b in range(radial.shape[1]):
                ax.plot(steps, radial[:, b], color=cmap(b / max(1, radial.shape[1] - 1)), lw=1)
        title = "weights: which frequencies are learned first (dark: low |ω|, light: high |ω|)"
        ylabel = "largest singular value in radial bin"
        figs["track_weight_frequencies"] = _label_panels(fig, axes, names, ylabel, title)

        fig, axes = _subplots((3.0 * n, 3.0), n)
        for j, ax in enumerate(axes[0]):
            energy = arrays.get(f"track_a{j}_radial_energy")
            if energy is None:
                continue
            frac = energy / np.maximum(energy.sum(axis=1, keepdims=True), 1e-300)
            ax.imshow(np.log10(np.maximum(frac.T, 1e-12)), aspect="auto", origin="lower", cmap="magma",
                      extent=(float(steps[0]), float(steps[-1]), 0, frac.shape[1]))  # fmt: skip
        title = "activations: log10 energy fraction by radial frequency over training"
        figs["track_activation_energy"] = _label_panels(fig, axes, names, "radial bin", title)

    ranks = arrays.get("track_act_kept")  # (T, layers)
    if ranks is not None and ranks.size:
        fig, axs = _subplots((5.0, 3.0))
        ax = axs[0][0]
        for j, name in enumerate(names):
            ax.plot(steps, ranks[:, j], label=name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("kept (ω, j) for 1-ε energy")
        ax.set_title("when the bottleneck forms (activation counts)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        figs["track_bottleneck"] = fig
    return figs
