"""Read-outs of fftshift-ed frequency maps (heat maps, sensitivity and power maps) by the Chebyshev radius
``max(|k|, |l|)`` of each frequency: low and high bands (Yin et al. 2019's band comparison) and the radial
mean profile (Godfrey et al. 2023's sensitivity against power). Used by the ``uses-*`` experiments."""

from __future__ import annotations

import numpy as np

from .frequency_use import shifted_frequencies

__all__ = ["band_masks", "chebyshev_radius", "radial_mean"]


def chebyshev_radius(n: int) -> np.ndarray:
    """``max(|k|, |l|)`` of every frequency of a shifted ``n×n`` map (DC at the centre): ``(n, n)`` integers."""
    f = np.abs(shifted_frequencies(n))
    return np.maximum(f[:, None], f[None, :])


def band_masks(n: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """The low band ``max(|k|, |l|) <= low`` and the high band ``max(|k|, |l|) >= high`` of a shifted ``n×n``
    map, as boolean masks (the read-out bands of a Fourier heat map)."""
    radius = chebyshev_radius(n)
    return radius <= low, radius >= high


def radial_mean(values: np.ndarray) -> np.ndarray:
    """Mean of a shifted square map over the frequencies of equal ``max(|k|, |l|)``, for radius ``0..n//2``."""
    radius = chebyshev_radius(values.shape[-1])
    return np.array([values[radius == r].mean() for r in range(int(radius.max()) + 1)])
