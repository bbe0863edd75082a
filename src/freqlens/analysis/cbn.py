"""CBN rank: which (frequency, direction) pairs a network keeps, from its weights or its activations
(conv_bottleneck §2.4, §5a, §5b), plus the depth-bound checks of §5c (C9).

The functions take per-layer singular values ``(H, W, r)`` (from :mod:`freqlens.spectral.weights` or
:mod:`freqlens.spectral.activations`) and return plain numbers, so they work on any network.

* A layer *keeps* ``(ω, i)`` when ``s_{ω,i} > τ`` (weights: kept values sit near 1, the rest decay, §3.4;
  τ = 0.3–0.5) or when ``(ω, i)`` is among the fewest largest values holding ``1 − ε`` of the energy
  (activations, §5b.4). The largest log-gap of the sorted spectrum is reported as a threshold-free count.
* Type split (§2.4): kept values at self-conjugate frequencies count 1 each; the others come in equal
  pairs at ``±ω`` (C4) and each pair is one complex direction counting 2.
* The CBN rank is the count on the *plateau*: the longest run of consecutive middle layers with the same
  count (§5a.4), checked for stability over a range of thresholds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fourier import self_conjugate_mask, signed_frequencies
from ..hooks import evaluation_mode
from ..theory.bottleneck import jacobian_lower_bound

__all__ = [
    "CBNRankEstimate",
    "KeptSet",
    "LowerBoundCheck",
    "check_lower_bound",
    "estimate_cbn_rank",
    "jacobian_singular_values",
    "kept_by_energy",
    "kept_by_threshold",
    "largest_log_gap_count",
]


def _check_spectrum(sv: np.ndarray, name: str = "singular_values") -> np.ndarray:
    arr = np.asarray(sv, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W, r), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _signed(value: int, size: int) -> int:
    v = value % size
    return v - size if v > size // 2 else v


def _representative(k: int, l: int, grid: tuple[int, int]) -> tuple[int, int]:
    """The member of ``{ω, −ω}`` listed in reports (signed labels): the lexicographically larger one, so the
    first non-zero coordinate is positive except where a Nyquist label (``+n/2`` only) decides."""
    partner = (_signed(-k, grid[0]), _signed(-l, grid[1]))
    return max((k, l), partner)


@dataclass(frozen=True)
class KeptSet:
    """Kept ``(ω, i)`` of one layer.

    ``count`` = ``self_conjugate + paired`` (the number of kept real directions, §2.4); ``paired`` is even.
    ``frequencies``: one entry per kept frequency class, ``{"omega": [k, l], "pair": bool, "directions": m}``
    with signed labels (a pair listed once, as its representative) — ``count = Σ m·(2 if pair else 1)``.
    """

    count: int
    self_conjugate: int
    paired: int
    frequencies: tuple[tuple[tuple[int, int], bool, int], ...]

    def frequency_list(self) -> list[dict[str, Any]]:
        """The kept frequency classes as JSON-ready ``{omega, pair, directions}`` records (plumbing)."""
        return [{"omega": [k, l], "pair": pair, "directions": m} for (k, l), pair, m in self.frequencies]

    def describe(self) -> str:
        """The kept set as text, e.g. ``(0,0), ±(1,0)×2`` (``∅`` when empty) (plumbing)."""
        parts = []
        for (k, l), pair, m in self.frequencies:
            label = f"±({k},{l})" if pair else f"({k},{l})"
            parts.append(label + (f"×{m}" if m > 1 else ""))
        return ", ".join(parts) if parts else "∅"


def _kept_from_mask(mask: np.ndarray, grid: tuple[int, int]) -> KeptSet:
    per_freq = mask.sum(axis=-1)  # (H, W)
    sc = self_conjugate_mask(grid)
    kh = signed_frequencies(grid[0])
    kw = signed_frequencies(grid[1])
    classes: dict[tuple[int, int], tuple[bool, int]] = {}
    for u, v in zip(*np.nonzero(per_freq)):
        rep = _representative(int(kh[u]), int(kw[v]), grid)
        pair = not bool(sc[u, v])
        m = int(per_freq[u, v])
        if rep in classes:  # the partner of a pair: same count by conjugate symmetry; keep the larger
            classes[rep] = (pair, max(classes[rep][1], m))
        else:
            classes[rep] = (pair, m)
    ordered = sorted(classes.items(), key=lambda it: (abs(it[0][0]) + abs(it[0][1]), it[0]))
    n_sc = int(per_freq[sc].sum())
    n_pair = int(per_freq[~sc].sum())
    return KeptSet(
        count=n_sc + n_pair,
        self_conjugate=n_sc,
        paired=n_pair,
        frequencies=tuple((rep, pair, m) for rep, (pair, m) in ordered),
    )


def kept_by_threshold(singular_values: np.ndarray, threshold: float) -> KeptSet:
    """``{(ω, i): s_{ω,i} > τ}`` of one layer (spec §5a.3). ``singular_values (H, W, r)``."""
    sv = _check_spectrum(singular_values)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold}")
    return _kept_from_mask(sv > threshold, (sv.shape[0], sv.shape[1]))


def kept_by_energy(singular_values: np.ndarray, eps: float) -> KeptSet:
    """The fewest largest ``(ω, j)`` holding at least ``1 − ε`` of ``Σ ς²`` (activations, spec §5b.4).

    Values tied with the last kept one (e.g. the partner at ``−ω``) are kept too, so pairs are never split.
    """
    sv = _check_spectrum(singular_values)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    flat = sv.reshape(-1) ** 2
    total = float(flat.sum())
    if total <= 0:
        return _kept_from_mask(np.zeros_like(sv, dtype=bool), (sv.shape[0], sv.shape[1]))
    order = np.argsort(flat)[::-1]
    cum = np.cumsum(flat[order]) / total
    n = int(min(np.searchsorted(cum, 1.0 - eps - 1e-15) + 1, flat.size))
    cut = flat[order[n - 1]]
    mask = flat >= cut * (1.0 - 1e-9)
    return _kept_from_mask(mask.reshape(sv.shape), (sv.shape[0], sv.shape[1]))


def largest_log_gap_count(singular_values: np.ndarray, floor: float = 1e-4) -> tuple[int, float]:
    """Threshold-free count: position of the largest ratio ``s_(j)/s_(j+1)`` in the sorted spectrum of a layer,
    among values above ``floor × max`` (spec §5a.3). Returns ``(count above the gap, gap ratio)``."""
    sv = np.sort(_check_spectrum(singular_values).reshape(-1))[::-1]
    if sv.size == 0 or sv[0] <= 0:
        return 0, float("nan")
    live = sv[sv > floor * sv[0]]
    if live.size == sv.size:  # nothing below the floor: the gap to the floor is not defined
        if live.size < 2:
            return int(live.size), float("nan")
        ratios = live[:-1] / live[1:]
        j = int(np.argmax(ratios))
        return j + 1, float(ratios[j])
    tail = sv[live.size]
    ratios = np.concatenate([live[:-1] / live[1:], [live[-1] / max(tail, floor * sv[0])]])
    j = int(np.argmax(ratios))
    return j + 1, float(ratios[j])


@dataclass
class CBNRankEstimate:
    """The CBN rank read off a stack of layers (spec §5a.4).

    ``rank`` (on the plateau) with its ``self_conjugate`` / ``paired`` split and ``frequencies``
    (:meth:`KeptSet.frequency_list` of the most common kept set on the plateau); ``plateau`` = first and
    last layer index (0-based, inclusive) of the plateau; ``per_layer`` = every layer's :class:`KeptSet`;
    ``frequency_set_agreement`` = fraction of plateau layers keeping exactly that set;
    ``by_threshold`` = plateau rank for each threshold tried (stability).
    """

    rank: int
    self_conjugate: int
    paired: int
    frequencies: list[dict[str, Any]]
    plateau: tuple[int, int]
    per_layer: list[KeptSet]
    frequency_set_agreement: float
    criterion: str
    by_threshold: dict[str, int] = field(default_factory=dict)

    @property
    def per_layer_counts(self) -> list[int]:
        """The kept-direction count of each layer, in layer order (plumbing)."""
        return [k.count for k in self.per_layer]

    def as_dict(self) -> dict[str, Any]:
        """The estimate as a JSON-ready dict for ``summary.json`` (plumbing)."""
        return {
            "rank": self.rank,
            "self_conjugate": self.self_conjugate,
            "paired": self.paired,
            "pairs": self.paired // 2,
            "frequencies": self.frequencies,
            "frequencies_text": _describe_list(self.frequencies),
            "plateau_layers": [self.plateau[0] + 1, self.plateau[1] + 1],
            "per_layer_counts": self.per_layer_counts,
            "frequency_set_agreement": round(self.frequency_set_agreement, 3),
            "criterion": self.criterion,
            "by_threshold": self.by_threshold,
        }


def _describe_list(freqs: list[dict[str, Any]]) -> str:
    parts = []
    for f in freqs:
        k, l = f["omega"]
        label = f"±({k},{l})" if f["pair"] else f"({k},{l})"
        parts.append(label + (f"×{f['directions']}" if f["directions"] > 1 else ""))
    return ", ".join(parts) if parts else "∅"


def _plateau(counts: Sequence[int], edge: int) -> tuple[int, int]:
    """Longest run of equal counts among layers ``edge .. n-1-edge``, non-zero runs first (ties: nearest the
    middle of the network)."""
    n = len(counts)
    lo, hi = (edge, n - 1 - edge) if n - 2 * edge >= 1 else (0, n - 1)
    mid = (n - 1) / 2
    runs: list[tuple[int, int]] = []
    start = lo
    for i in range(lo + 1, hi + 2):
        if i == hi + 1 or counts[i] != counts[start]:
            runs.append((start, i - 1))
            start = i
    return max(runs, key=lambda r: (counts[r[0]] > 0, r[1] - r[0], -abs((r[0] + r[1]) / 2 - mid)))


def _summarise(per_layer: list[KeptSet], edge: int, criterion: str) -> CBNRankEstimate:
    counts = [k.count for k in per_layer]
    first, last = _plateau(counts, edge)
    run = per_layer[first : last + 1]
    common, times = Counter(k.frequencies for k in run).most_common(1)[0]
    chosen = next(k for k in run if k.frequencies == common)
    return CBNRankEstimate(
        rank=chosen.count,
        self_conjugate=chosen.self_conjugate,
        paired=chosen.paired,
        frequencies=chosen.frequency_list(),
        plateau=(first, last),
        per_layer=per_layer,
        frequency_set_agreement=times / len(run),
        criterion=criterion,
    )


def estimate_cbn_rank(
    spectra: Sequence[np.ndarray],
    threshold: float | None = 0.5,
    eps: float | None = None,
    thresholds: Sequence[float] = (),
    edge: int = 1,
) -> CBNRankEstimate:
    """CBN rank from per-layer singular values (spec §5a.3-4 with ``threshold``, §5b.4 with ``eps``).

    Args:
        spectra: one ``(H, W, r)`` array per layer, in depth order (grids may differ between layers).
        threshold: weight criterion ``s > τ`` (give ``eps=None``).
        eps: activation criterion, ``1 − ε`` of the energy (give ``threshold=None``).
        thresholds: further τ (or ε) values to report the plateau rank for (stability, §5a.4).
        edge: layers excluded at each end when looking for the plateau.
    """
    if (threshold is None) == (eps is None):
        raise ValueError("give exactly one of threshold (weights) or eps (activations)")
    if len(spectra) == 0:
        raise ValueError("spectra must hold at least one layer")
    if edge < 0:
        raise ValueError(f"edge must be >= 0, got {edge}")

    def kept_all(value: float) -> list[KeptSet]:
        if threshold is not None:
            return [kept_by_threshold(sv, value) for sv in spectra]
        return [kept_by_energy(sv, value) for sv in spectra]

    main_value = threshold if threshold is not None else eps
    assert main_value is not None
    crit = f"s > {main_value:g}" if threshold is not None else f"1 - {main_value:g} of the energy"
    est = _summarise(kept_all(main_value), edge, crit)
    for value in thresholds:
        est.by_threshold[f"{value:g}"] = _summarise(kept_all(value), edge, crit).rank
    return est


# --------------------------------------------------------------------------------------------
# Lower bound of §2.6 on a trained network (C9)
# --------------------------------------------------------------------------------------------
def jacobian_singular_values(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Singular values of ``Jf_θ(x)`` for one input ``x (C, H, W)`` (float64, via ``torch.func.jacrev``)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise ValueError(f"x must be one input of shape (C, H, W), got {getattr(x, 'shape', type(x))}")
    param = next(iter(model.parameters()))
    xin = x.to(dtype=param.dtype, device=param.device)

    def f(z: torch.Tensor) -> torch.Tensor:
        return model(z[None]).reshape(-1)

    with evaluation_mode(model):
        jac = torch.func.jacrev(f)(xin).reshape(-1, xin.numel())
    return torch.linalg.svdvals(jac.detach().to(torch.float64)).cpu().numpy()


@dataclass(frozen=True)
class LowerBoundCheck:
    """C9 on one network: ``norm_op = ‖θ‖²_op`` against ``L Σ s_i(Jf(x))^{2/L}`` at each input checked."""

    norm_op: float
    depth: int
    bounds: np.ndarray
    holds: bool

    @property
    def max_ratio(self) -> float:
        """``max_x bound(x) / ‖θ‖²_op`` (≤ 1 when C9 holds)."""
        return float(self.bounds.max() / self.norm_op) if self.norm_op > 0 else float("inf")


def check_lower_bound(model: nn.Module, inputs: torch.Tensor, depth: int, norm_op: float) -> LowerBoundCheck:
    """Evaluate C9 at every input in ``inputs (N, C, H, W)``: ``norm_op ≥ L Σ s_i(Jf(x))^{2/L}``.

    ``norm_op`` must be the operator-normalised weight norm (e.g. ``CircularCNN.operator_norm_sq()``); biases
    may be left out (they do not enter the Jacobian). A relative slack of 1e-9 absorbs rounding.
    """
    if inputs.ndim != 4 or inputs.shape[0] < 1:
        raise ValueError(f"inputs must have shape (N, C, H, W) with N >= 1, got {tuple(inputs.shape)}")
    bounds = np.array([jacobian_lower_bound(jacobian_singular_values(model, x), depth) for x in inputs])
    holds = bool((bounds <= norm_op * (1.0 + 1e-9)).all())
    return LowerBoundCheck(norm_op=float(norm_op), depth=int(depth), bounds=bounds, holds=holds)
