"""Measurements of the convolutional-bottleneck paper (Wen & Jacot) that the ``cbn-*`` figures report besides the
CBN rank itself (:mod:`freqlens.analysis.cbn`): the ``R⁽¹⁾`` Jacobian bound, the claimed kept set of Fig. 3 and
its match with a measured one, and the torus centroid shift of decoded images (Fig. 2b).

NumPy only. Spec: ``conv_bottleneck.md`` §2.4-§2.5, §4.2-§4.3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PLATEAU_TOLERANCE",
    "TailTrend",
    "centroid_shift",
    "circular_centroid",
    "claimed_directions",
    "expected_kept_frequencies",
    "match_kept_frequencies",
    "r1_jacobian_bound",
    "tail_trend",
]

#: A quantity is on a plateau when its least-squares line over the last 10 % of training changes it by at most
#: this fraction of its mean there (the "converged" of the ``cbn-*`` summaries).
PLATEAU_TOLERANCE = 0.02


@dataclass(frozen=True)
class TailTrend:
    """Least-squares line of a training curve over its last ``fraction`` of steps (see :func:`tail_trend`)."""

    first_step: int
    last_step: int
    points: int
    mean: float
    slope_per_1000_steps: float
    relative_change: float  # (line at last_step − line at first_step) / |mean|

    @property
    def on_plateau(self) -> bool:
        """``|relative_change| ≤`` :data:`PLATEAU_TOLERANCE` (and at least 3 records in the window)."""
        return self.points >= 3 and abs(self.relative_change) <= PLATEAU_TOLERANCE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``on_plateau`` (plumbing)."""
        return {
            "window_steps": [self.first_step, self.last_step],
            "records": self.points,
            "mean": round(self.mean, 6),
            "slope_per_1000_steps": float(f"{self.slope_per_1000_steps:.6g}"),
            "relative_change": round(self.relative_change, 5),
            "on_plateau": self.on_plateau,
        }


def tail_trend(
    steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, fraction: float = 0.1
) -> TailTrend:
    """Fit ``v ≈ a + b·step`` to the records with ``step ≥ (1 − fraction)·last_step`` and report the change of the
    line across that window relative to the window's mean: the convergence read-out of issue 12 ("parameter
    norm and loss on a plateau, with the last 10 % slope")."""
    st = np.asarray(steps, dtype=np.float64)
    va = np.asarray(values, dtype=np.float64)
    if st.shape != va.shape or st.ndim != 1 or st.size == 0:
        raise ValueError(f"steps and values must be 1-D of the same non-zero length, got {st.shape} and {va.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = st >= (1.0 - fraction) * st.max()
    s, v = st[keep], va[keep]
    mean = float(v.mean())
    slope = float(np.polyfit(s, v, 1)[0]) if s.size >= 2 and np.ptp(s) > 0 else 0.0
    change = slope * float(np.ptp(s)) / max(abs(mean), 1e-300)
    return TailTrend(int(s.min()), int(s.max()), int(s.size), mean, 1000.0 * slope, change)


def r1_jacobian_bound(sv: np.ndarray, rank: int) -> float:
    """``2 Σ_{i ≤ R⁽⁰⁾} log s_i(Jf(x))``: a lower bound on ``R⁽¹⁾`` when ``rank Jf = R⁽⁰⁾`` (spec §2.5, [FC-mem]),
    from the Jacobian's singular values ``sv`` and ``rank = R⁽⁰⁾``."""
    top = np.sort(sv)[::-1][:rank]
    return float(2.0 * np.log(np.clip(top, 1e-300, None)).sum())


def expected_kept_frequencies(max_l1: int, carrier: Sequence[int]) -> list[list[int]]:
    """Fig. 3's claimed kept set (spec §4.3): one representative ``ω ≥ −ω`` (lexicographic) of every frequency
    with ``‖ω‖₁ ≤ max_l1``, then the ``carrier``."""
    out = []
    for k in range(-max_l1, max_l1 + 1):
        for l in range(-max_l1, max_l1 + 1):
            if abs(k) + abs(l) <= max_l1 and (k, l) >= (-k, -l):
                out.append([k, l])
    return [*out, list(carrier)]


def claimed_directions(frequencies: Sequence[Sequence[int]], n: int) -> int:
    """Directions a kept set of representatives carries on an ``n×n`` grid (spec §2.4): 1 per self-conjugate
    frequency (``2ω ≡ 0 mod n``), 2 per conjugate pair."""
    return sum(1 if (2 * k) % n == 0 and (2 * l) % n == 0 else 2 for k, l in frequencies)


def match_kept_frequencies(found: Sequence[Mapping[str, Any]], expected: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Which ``expected`` frequencies a measured kept set (records with ``"omega"``) found, missed, or added
    (spec §4.3), each sorted."""
    got = {tuple(f["omega"]) for f in found}
    exp = {tuple(e) for e in expected}
    return {
        "expected_found": sorted(list(e) for e in exp & got),
        "expected_missing": sorted(list(e) for e in exp - got),
        "unexpected": sorted(list(g) for g in got - exp),
    }


def circular_centroid(img: np.ndarray) -> np.ndarray:
    """Centre of mass on the torus of the positive part of ``img (..., H, W)``: per axis the circular mean
    ``arg Σ_p m_p e^{2πi p/n} · n / 2π`` in pixels. Returns ``(..., 2)`` (row, column)."""
    mass = np.clip(img, 0.0, None)
    out = []
    for axis, n in ((0, img.shape[-2]), (1, img.shape[-1])):
        coords = np.exp(2j * np.pi * np.arange(n) / n)
        weights = mass.sum(axis=-1 if axis == 0 else -2)
        out.append(np.angle((weights * coords).sum(axis=-1)) * n / (2 * np.pi))
    return np.stack(out, axis=-1)


def centroid_shift(before: np.ndarray, after: np.ndarray) -> list[float]:
    """Mean torus shift (rows, cols) in pixels, wrapped to ``[−n/2, n/2)``, of the :func:`circular_centroid` from
    ``before`` to ``after`` over the examples ``(E, H, W)``, rounded to 3 decimals (spec §4.2: the phase of a
    non-constant frequency moves the decoded digit)."""
    n = np.array(before.shape[-2:], dtype=np.float64)
    d = circular_centroid(after) - circular_centroid(before)
    d = (d + n / 2) % n - n / 2
    return [round(float(v), 3) for v in d.mean(axis=0)]
