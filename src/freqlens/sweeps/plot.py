"""Each headline number of a sweep against each swept key: mean over seeds with a 95 % Student-t interval."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_write_bytes
from .table import mean_ci95

__all__ = ["plot_sweep"]


def _axis_positions(values: Sequence[str | float]) -> tuple[np.ndarray, list[str] | None]:
    """Numeric values on a numeric axis, anything else at 0, 1, 2 ... with labels (plumbing)."""
    if all(isinstance(v, int | float) for v in values):
        return np.asarray(values, dtype=float), None
    return np.arange(len(values), dtype=float), [str(v) for v in values]


def plot_sweep(
    arrays: Mapping[str, np.ndarray], keys: Sequence[str], metrics: Sequence[str], folder: Path, experiment: str
) -> list[Path]:
    """One figure per swept key (``sweep_<key>.png``/``.pdf``), one panel per headline number: the mean over
    seeds and its 95 % interval (``t_{0.975,n-1} s/√n``; none for ``n < 2``) per value of the key, one line
    per combination of the other swept keys (plumbing)."""
    written: list[Path] = []
    if not metrics or not len(arrays.get("seed", ())):
        return written
    for key in keys:
        others = [k for k in keys if k != key]
        xs = list(dict.fromkeys(arrays[key].tolist()))
        pos, labels = _axis_positions(xs)
        combos = list(itertools.product(*[list(dict.fromkeys(arrays[o].tolist())) for o in others]))
        ncol = min(4, len(metrics))
        nrow = math.ceil(len(metrics) / ncol)
        fig = Figure(figsize=(3.2 * ncol, 2.4 * nrow + 0.4), constrained_layout=True)
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            for combo in combos:
                mask = np.ones(len(arrays[key]), dtype=bool)
                for o, v in zip(others, combo):
                    mask &= arrays[o] == v
                stats = [mean_ci95(arrays[metric][mask & (arrays[key] == x)]) for x in xs]
                mean = np.array([m for m, _ in stats])
                half = np.array([math.nan if h is None else h for _, h in stats])
                label = ", ".join(f"{o}={v}" for o, v in zip(others, combo)) or None
                line = ax.plot(pos, mean, marker="o", ms=3, lw=1, label=label)[0]
                ok = np.isfinite(half)
                if ok.any():
                    ax.errorbar(pos[ok], mean[ok], yerr=half[ok], fmt="none", ecolor=line.get_color(), capsize=2)
            ax.set_title(metric, fontsize=7)
            ax.set_xlabel(key, fontsize=7)
            if labels is not None:
                ax.set_xticks(pos, labels, fontsize=6)
            if len(combos) > 1 and ax is axes[0]:
                ax.legend(fontsize=6, frameon=False)
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        n_seeds = len(set(arrays["seed"].tolist()))
        fig.suptitle(f"{experiment}: headline numbers against {key} (mean, 95 % t-interval over {n_seeds} seeds)")
        for fmt in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=150)
            written.append(atomic_write_bytes(folder / f"sweep_{_safe(key)}.{fmt}", buf.getvalue()))
    return written


def _safe(text: str) -> str:
    """``text`` with characters unsafe in file names replaced by ``_`` (plumbing)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
