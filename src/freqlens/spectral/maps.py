"""Spectrum maps of feature maps and the aggregates the decoder paper reads off them.

Conventions (``spec/decoder_spectra.md`` §2.1, Eq. 2; ``spec/README.md`` shared conventions 3-4): the
spectrum map of channel ``c`` of a feature map ``F (B, C, H, W)`` is the **unnormalised, unshifted**
``torch.fft.fft2`` over the last two axes; low frequencies sit at the corners, ``[H/2, W/2]`` is the
highest frequency. ``fftshift`` is used for display only (:func:`shift_for_display`).

Aggregates:

* magnitude / power maps averaged over channels (the paper's figures average ``|G^{(c)}|`` over ``c``);
* cosine similarity of magnitude maps, ``sim(H*, H) = E_c cos(vec|H*^{(c)}|, vec|H^{(c)}|)`` (§4 item 1);
* radial aggregation of power by ``|ω|`` in cycles per pixel;
* ``Ω_low`` and ``p_low`` of §4 item 7 (``u ∈ [0, M/8) ∪ [7M/8, M)``, same for ``v``).

Every public function validates its input (real, finite, 4-D where a feature map is expected) before
computing, so a complex or non-finite tensor gives a clear ``ValueError``, never a silent number.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import ArrayLike, check_finite, check_ndim, check_real_floating, check_tensor_like, describe
from ..fourier import low_frequency_mask, signed_frequencies

__all__ = [
    "clip_dc_for_display",
    "low_frequency_mask",
    "magnitude_cosine_similarity",
    "mean_magnitude_map",
    "mean_power_map",
    "p_low",
    "radial_bin_scale",
    "radial_frequency",
    "radial_profile",
    "shift_for_display",
    "spectrum_map",
]


def spectrum_map(features: torch.Tensor) -> torch.Tensor:
    """Spectrum map ``G (B, C, H, W)`` of real feature maps ``F (B, C, H, W)`` (spec §2.1, Eq. 2).

    ``G[b, c, u, v] = Σ_{m,n} F[b, c, m, n] e^{-2πi(um/H + vn/W)}`` = ``torch.fft.fft2(F)`` (norm
    ``"backward"``, unshifted). float64 input gives complex128. Complex, integer and non-finite
    tensors are rejected (a spectrum map is defined for real feature maps only).
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor (B, C, H, W), got {describe(features)}")
    check_ndim("features", features, (4,), "(B, C, H, W)")
    check_real_floating("features", features)
    check_finite("features", features)
    return torch.fft.fft2(features)


def _as_complex_spectrum(name: str, spectrum: ArrayLike) -> np.ndarray:
    check_tensor_like(name, spectrum)
    arr = spectrum.detach().cpu().numpy() if isinstance(spectrum, torch.Tensor) else np.asarray(spectrum)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (..., H, W), got {describe(spectrum)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def mean_power_map(spectrum: ArrayLike) -> np.ndarray:
    """``E |G|²`` over every leading axis (batch, channels): float64 ``(H, W)`` (spec §4 item 7)."""
    arr = _as_complex_spectrum("spectrum", spectrum)
    return (np.abs(arr).astype(np.float64) ** 2).reshape(-1, *arr.shape[-2:]).mean(axis=0)


def mean_magnitude_map(spectrum: ArrayLike) -> np.ndarray:
    """``E |G|`` over every leading axis (batch, channels): float64 ``(H, W)``, unshifted (spec §2.1:
    "average magnitude maps over channels")."""
    arr = _as_complex_spectrum("spectrum", spectrum)
    return np.abs(arr).astype(np.float64).reshape(-1, *arr.shape[-2:]).mean(axis=0)


def shift_for_display(spectrum_map_2d: np.ndarray) -> np.ndarray:
    """``fftshift`` over the last two axes: DC moves to index ``[H//2, W//2]`` (display only, §2.1)."""
    return np.fft.fftshift(np.asarray(spectrum_map_2d), axes=(-2, -1))


def clip_dc_for_display(magnitude: np.ndarray) -> np.ndarray:
    """Copy of an **unshifted** magnitude map ``(..., H, W)`` with the DC bin clipped to the largest
    non-DC value of the same map, as the paper's figures do (§2.1: "clip the DC magnitude to the
    second-largest magnitude for display"). Used for display only."""
    mag = np.array(magnitude, dtype=np.float64, copy=True)
    if mag.ndim < 2 or mag.shape[-1] * mag.shape[-2] < 2:
        raise ValueError(f"magnitude must have shape (..., H, W) with at least two bins, got {mag.shape}")
    flat = mag.reshape(-1, mag.shape[-2] * mag.shape[-1])
    second = flat[:, 1:].max(axis=1)
    flat[:, 0] = np.minimum(flat[:, 0], second)
    return flat.reshape(mag.shape)


def magnitude_cosine_similarity(measured: ArrayLike, predicted: ArrayLike) -> np.ndarray:
    """Per-sample ``sim(H*, H) = E_c cos(vec mag H*^{(c)}, vec mag H^{(c)})`` (spec §4 item 1).

    ``measured``, ``predicted``: complex spectra ``(B, C, H, W)`` (or magnitudes). Returns float64
    ``(B,)``. A channel whose two maps are both identically zero counts as similarity 1 (they are
    equal); one zero map against a non-zero one counts as 0.
    """
    a = np.abs(_as_complex_spectrum("measured", measured)).astype(np.float64)
    b = np.abs(_as_complex_spectrum("predicted", predicted)).astype(np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"measured and predicted must both be (B, C, H, W) of equal shape, got {a.shape} and {b.shape}"
        )
    a = a.reshape(*a.shape[:2], -1)
    b = b.reshape(*b.shape[:2], -1)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    dot = (a * b).sum(axis=-1)
    both_zero = (na == 0) & (nb == 0)
    denom = np.where(na * nb > 0, na * nb, 1.0)
    cos = np.where(na * nb > 0, dot / denom, np.where(both_zero, 1.0, 0.0))
    return cos.mean(axis=1)


def radial_frequency(grid: tuple[int, int]) -> np.ndarray:
    """``|ω|`` in cycles per pixel for every bin of an unshifted ``H×W`` spectrum: float64 ``(H, W)``,
    ``sqrt((k/H)² + (l/W)²)`` with signed labels ``k, l`` (shared convention 3). DC is 0, the corner
    ``[H/2, W/2]`` is ``√2/2`` for even sides."""
    h, w = int(grid[0]), int(grid[1])
    k = signed_frequencies(h) / h
    l = signed_frequencies(w) / w
    return np.sqrt(k[:, None] ** 2 + l[None, :] ** 2)


def radial_bin_scale(grid: tuple[int, int]) -> int:
    """Radial bins have width ``1/S`` cycles per pixel with ``S = min(H, W)`` over the sides longer than 1:
    a ``1×L`` grid (a 1-D signal, :func:`freqlens.fourier.spatial_grid`) has bins ``1/L``, one per ``|k|``
    (a side of 1 carries no frequency); ``S = 1`` if no side is longer (plumbing)."""
    return min((int(n) for n in grid if int(n) > 1), default=1)


def radial_profile(power: np.ndarray, num_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate an unshifted power map ``(..., H, W)`` by radial frequency.

    Bins have width ``1/min(H, W)`` cycles per pixel (bin ``j`` holds ``round(|ω| min(H, W)) == j``; a side
    of 1, as on the ``1×L`` grid of a 1-D signal, is left out of the min: :func:`radial_bin_scale`), so bin 0
    is DC alone on a square grid. Returns ``(centres (J,), sums (..., J))``: the **sum** of the
    power in each bin (energy by radial frequency); divide by the total for fractions.
    """
    p = np.asarray(power, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError(f"power must have shape (..., H, W), got {p.shape}")
    h, w = p.shape[-2:]
    scale = radial_bin_scale((h, w))
    idx = np.rint(radial_frequency((h, w)) * scale).astype(np.int64)
    bins = int(idx.max()) + 1 if num_bins is None else int(num_bins)
    if bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    idx = np.minimum(idx, bins - 1)
    flat = p.reshape(-1, h * w)
    sums = np.zeros((flat.shape[0], bins))
    for j in range(bins):
        sums[:, j] = flat[:, idx.reshape(-1) == j].sum(axis=1)
    return np.arange(bins) / scale, sums.reshape(*p.shape[:-2], bins)


def p_low(spectrum: ArrayLike, fraction: float = 1 / 8, exclude_dc: bool = False) -> np.ndarray:
    """Share of power in ``Ω_low`` per image (spec §4 item 7):

        ``p_low = Σ_{Ω_low} E_c |H^{(c)}_{uv}|² / Σ_{u,v} E_c |H^{(c)}_{uv}|²``.

    ``spectrum (B, C, H, W)`` complex (an unshifted spectrum map). Returns float64 ``(B,)``; the paper
    averages it over images. ``exclude_dc=True`` drops the DC bin from both sums (used as a second
    read-out because the DC bin of natural images dominates the paper's ratio). An all-zero image gives
    ``nan`` (the ratio is undefined), never a made-up number.
    """
    arr = _as_complex_spectrum("spectrum", spectrum)
    if arr.ndim != 4:
        raise ValueError(f"spectrum must have shape (B, C, H, W), got {describe(spectrum)}")
    power = (np.abs(arr).astype(np.float64) ** 2).mean(axis=1)  # E_c |H|² : (B, H, W)
    mask = low_frequency_mask(arr.shape[-2:], fraction)
    if exclude_dc:
        power = power.copy()
        power[:, 0, 0] = 0.0
    total = power.sum(axis=(-2, -1))
    low = power[:, mask].sum(axis=-1)
    out = np.full(total.shape, np.nan)
    np.divide(low, total, out=out, where=total > 0)
    return out
