"""Synthetic datasets with known statistical structure (spec ``linear_cnn_dynamics.md`` §6.1, §7.1).

All generators return ``(x, labels)`` with ``x`` a float tensor ``(N, C, H, W)`` (default float64, so
that theory checks hold to machine precision) and ``labels`` an int64 tensor ``(N,)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validation import check_positive_int
from ..fourier import vec_index

__all__ = [
    "DEFAULT_COSINE_AMPLITUDES",
    "DEFAULT_COSINE_FREQS",
    "SHAPES",
    "geometric_shapes",
    "pure_cosines",
    "sums_of_cosines",
]

#: The paper's pure-cosine classes (App. I.1): frequency pairs and amplitudes.
DEFAULT_COSINE_FREQS: tuple[tuple[int, int], ...] = ((0, 0), (5, 2), (1, 7), (0, 4))
DEFAULT_COSINE_AMPLITUDES: tuple[float, ...] = (1.5, 1.0, 0.5, 0.2)

#: Default sums-of-cosines classes (the paper's Fig. 4 values were lost; spec §9 I.2 [?]).
#: Each class has one dominant frequency and weaker companions, so winner-takes-all is visible.
DEFAULT_SUM_FREQ_SETS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 1), (2, 3), (4, 0)),
    ((1, 1), (3, 5), (0, 6)),
)
DEFAULT_SUM_AMPLITUDES: tuple[tuple[float, ...], ...] = ((1.0, 0.6, 0.3), (0.8, 0.5, 0.25))


def _image_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return i.astype(np.float64), j.astype(np.float64)


def _check_disjoint(n: int, freq_sets: Sequence[Sequence[tuple[int, int]]]) -> None:
    """Raise unless all frequencies, closed under conjugation, are distinct across and within classes."""
    owner: dict[int, tuple[int, tuple[int, int]]] = {}
    for a, fs in enumerate(freq_sets):
        for kl in fs:
            if len(kl) != 2:
                raise ValueError(f"freq_sets[{a}] must hold (k, l) pairs, got {kl!r}")
            k, l = int(kl[0]), int(kl[1])
            m = int(vec_index(k, l, n))
            mbar = int(vec_index(-k, -l, n))
            for idx in {m, mbar}:
                if idx in owner:
                    b, other = owner[idx]
                    raise ValueError(
                        f"frequency {(k, l)} of class {a} coincides (up to sign, mod n={n}) with {other} of class {b}; "
                        "frequency sets must be disjoint, including conjugates"
                    )
            for idx in {m, mbar}:
                owner[idx] = (a, (k, l))


def pure_cosines(
    n: int = 16,
    freqs: Sequence[tuple[int, int]] = DEFAULT_COSINE_FREQS,
    amplitudes: Sequence[float] = DEFAULT_COSINE_AMPLITUDES,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image per class, ``X^α_ij = c_α cos(2π (k_α i + l_α j)/n)`` (spec §6.1, Eq. 21).

    Args:
        n: image side.
        freqs: one ``(k, l)`` pair per class; no two classes may share ``m_α`` or be each other's ``m̄``.
        amplitudes: ``c_α`` per class (non-zero).
    Returns:
        ``x (p, 1, n, n)``, ``labels = arange(p)``.
    """
    n = check_positive_int("n", n, minimum=2)
    if len(freqs) != len(amplitudes):
        raise ValueError(f"freqs and amplitudes must have the same length, got {len(freqs)} and {len(amplitudes)}")
    if len(freqs) == 0:
        raise ValueError("freqs must name at least one class frequency")
    if any(float(c) == 0.0 for c in amplitudes):
        raise ValueError(f"amplitudes must be non-zero, got {list(amplitudes)}")
    _check_disjoint(n, [[kl] for kl in freqs])
    i, j = _image_grid(n)
    imgs = np.stack([float(c) * np.cos(2 * np.pi * (k * i + l * j) / n) for (k, l), c in zip(freqs, amplitudes)])
    x = torch.from_numpy(imgs[:, None]).to(dtype)
    return x, torch.arange(len(freqs), dtype=torch.int64)


def sums_of_cosines(
    n: int = 16,
    freq_sets: Sequence[Sequence[tuple[int, int]]] = DEFAULT_SUM_FREQ_SETS,
    amplitudes: Sequence[Sequence[float]] = DEFAULT_SUM_AMPLITUDES,
    phases: Sequence[Sequence[float]] | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image per class, ``X^α = Σ_{m∈M_α} c_m cos(2π (k_m i + l_m j)/n + φ_m)`` (spec §7.1, S.66).

    The sets ``M̄_α`` (frequencies with their conjugates) must be pairwise disjoint, which is what makes
    the reduced winner-takes-all dynamics (Eqs. 23-24) exact. ``phases`` defaults to all zeros.
    Returns ``x (p, 1, n, n)`` and ``labels = arange(p)``.
    """
    n = check_positive_int("n", n, minimum=2)
    p = len(freq_sets)
    if p == 0:
        raise ValueError("freq_sets must hold at least one class")
    if len(amplitudes) != p:
        raise ValueError(f"amplitudes must have one entry per class ({p}), got {len(amplitudes)}")
    if phases is None:
        phases = [[0.0] * len(fs) for fs in freq_sets]
    if len(phases) != p:
        raise ValueError(f"phases must have one entry per class ({p}), got {len(phases)}")
    for a in range(p):
        if len(freq_sets[a]) == 0:
            raise ValueError(f"freq_sets[{a}] is empty: every class needs at least one frequency")
        if len(amplitudes[a]) != len(freq_sets[a]) or len(phases[a]) != len(freq_sets[a]):
            raise ValueError(
                f"class {a}: freq_sets, amplitudes and phases must have equal lengths, got "
                f"{len(freq_sets[a])}, {len(amplitudes[a])}, {len(phases[a])}"
            )
    _check_disjoint(n, freq_sets)
    i, j = _image_grid(n)
    imgs = np.zeros((p, n, n))
    for a in range(p):
        for (k, l), c, phi in zip(freq_sets[a], amplitudes[a], phases[a]):
            wave = np.cos(2 * np.pi * (k * i + l * j) / n + float(phi))
            if float(c) == 0.0 or np.abs(wave).max() < 1e-12:
                raise ValueError(f"class {a}, frequency {(k, l)}: the component vanishes (amplitude {c}, phase {phi})")
            imgs[a] += float(c) * wave
    return torch.from_numpy(imgs[:, None]).to(dtype), torch.arange(p, dtype=torch.int64)


def _shape_masks(u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Indicator functions on centred coordinates ``u`` (row, downwards) and ``v`` (column), in [-1, 1]."""
    r = np.hypot(u, v)
    return {
        "square": (np.abs(u) <= 0.5) & (np.abs(v) <= 0.5),
        "circle": r <= 0.6,
        "triangle": (u >= -0.6) & (u <= 0.55) & (np.abs(v) <= 0.62 * (u + 0.6) / 1.15),
        "cross": ((np.abs(u) <= 0.18) & (np.abs(v) <= 0.75)) | ((np.abs(v) <= 0.18) & (np.abs(u) <= 0.75)),
        "bar": (np.abs(u) <= 0.22) & (np.abs(v) <= 0.8),
        "ring": (r >= 0.45) & (r <= 0.75),
        "diamond": np.abs(u) + np.abs(v) <= 0.7,
        "vbar": (np.abs(v) <= 0.22) & (np.abs(u) <= 0.8),
    }


#: Shapes available to :func:`geometric_shapes`.
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "bar", "ring", "diamond", "vbar")


def geometric_shapes(
    n: int = 16,
    shapes: Sequence[str] = ("square", "circle", "triangle", "cross", "bar", "ring"),
    supersample: int = 4,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One centred, anti-aliased shape per class on an ``n×n`` grid (spec §9 I.3, Fig. 2).

    Shapes overlap around the centre, so the SVD of ``Σ_yx`` runs from broad distinctions (mode 0 ≈ the
    average image) to fine ones. Pixel values are the covered area fraction in ``[0, 1]``
    (``supersample²`` sub-pixel samples per pixel). Choose from :data:`SHAPES`.
    Returns ``x (p, 1, n, n)`` and ``labels = arange(p)``.
    """
    n = check_positive_int("n", n, minimum=4)
    supersample = check_positive_int("supersample", supersample)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"shapes must be chosen from {list(SHAPES)}, got unknown {unknown}")
    if len(set(shapes)) != len(shapes) or len(shapes) == 0:
        raise ValueError(f"shapes must be a non-empty list of distinct names, got {list(shapes)}")
    m = n * supersample
    c = (np.arange(m) + 0.5) / m * 2.0 - 1.0  # sub-pixel centres in [-1, 1]
    u, v = np.meshgrid(c, c, indexing="ij")
    masks = _shape_masks(u, v)
    imgs = np.stack([masks[s].astype(np.float64) for s in shapes])
    imgs = imgs.reshape(len(shapes), n, supersample, n, supersample).mean(axis=(2, 4))
    return torch.from_numpy(imgs[:, None]).to(dtype), torch.arange(len(shapes), dtype=torch.int64)
