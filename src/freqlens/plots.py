"""Figure style and saving helpers shared by every experiment.

Plotting never recomputes: it only draws arrays that an experiment stored in ``data.npz``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless by default; figures are written to files

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .io import atomic_write_bytes

__all__ = [
    "MODE_COLORS",
    "axes_row",
    "image_row",
    "new_figure",
    "paper_style",
    "save_figure",
    "show_image",
    "show_spectrum",
    "signed_image",
]

#: One colour per mode / curve family, colour-blind safe (Okabe-Ito).
MODE_COLORS: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#999999",
    "#882255",
)

_STYLE: dict[Any, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.3,
    "image.interpolation": "nearest",
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Context manager applying the freqlens figure style."""
    with plt.rc_context(_STYLE):
        yield


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` atomically, then close it."""
    stem = Path(stem)
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        with paper_style():
            fig.savefig(buf, format=fmt)
        out.append(atomic_write_bytes(stem.with_suffix(f".{fmt}"), buf.getvalue()))
    plt.close(fig)
    return out


def show_image(ax: Axes, img: np.ndarray, title: str | None = None, cmap: str = "gray", **kw: Any) -> None:
    """Draw one image without ticks. ``img (H, W)`` or ``(3, H, W)`` (channels first, displayed as RGB)."""
    if img.ndim == 3:
        img = np.moveaxis(img, 0, -1)
        ax.imshow(np.clip(img, 0.0, 1.0), **kw)
    else:
        ax.imshow(img, cmap=cmap, **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def signed_image(v: np.ndarray) -> np.ndarray:
    """Map a signed image (or ``(3, H, W)`` RGB) to [0, 1] with 0 at mid-grey, scaled by its max |v|."""
    scale = float(np.abs(v).max()) or 1.0
    return 0.5 + 0.5 * v / scale


def show_spectrum(ax: Axes, mag: np.ndarray, title: str | None = None, log: bool = False) -> None:
    """Draw an unshifted magnitude spectrum ``(H, W)`` with DC in the centre (fftshift), signed axes."""
    h, w = mag.shape
    shown = np.fft.fftshift(mag)
    if log:
        shown = np.log10(shown + 1e-12 * max(float(shown.max()), 1e-300))
    ext = (-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5)
    ax.imshow(shown, cmap="magma", extent=ext)
    ax.set_xlabel("l")
    ax.set_ylabel("k")
    if title:
        ax.set_title(title)


def image_row(
    axes: Sequence[Axes], images: np.ndarray, titles: Sequence[str] | None = None, signed: bool = False
) -> None:
    """Fill a row of axes with images ``(p, H, W)`` or ``(p, 3, H, W)``."""
    for i, ax in enumerate(axes):
        img = images[i]
        if signed and img.ndim == 3:
            show_image(ax, signed_image(img), titles[i] if titles else None)
        elif signed:
            lim = float(np.abs(img).max()) or 1.0
            show_image(ax, img, titles[i] if titles else None, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            show_image(ax, img, titles[i] if titles else None)


def axes_row(fig: Figure, spec: Any, count: int) -> list[Axes]:
    """``count`` axes side by side in the gridspec cell ``spec`` of ``fig``."""
    sub = spec.subgridspec(1, count)
    return [fig.add_subplot(sub[0, i]) for i in range(count)]


def new_figure(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``plt.subplots`` under the freqlens style (``constrained_layout`` on by default).

    Experiments' ``plot`` functions are called inside :func:`paper_style`, so text created later on
    these axes gets the same style.
    """
    kwargs.setdefault("constrained_layout", True)
    with paper_style():
        return plt.subplots(*args, **kwargs)
