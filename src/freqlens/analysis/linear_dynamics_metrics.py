"""Measurements of the linear-CNN learning-dynamics paper (Pinson et al. 2023) on recorded trajectories.

NumPy only. Every function reads arrays an experiment recorded (times ``t``, effective singular values
``a_α(t)``, kernel Fourier magnitudes ``|k̂_m(t)|``, ``|W̄_αm(t)|``) and returns the number the paper talks
about: when a mode is discovered (half-time), whether modes come in order of ``s_α``, which frequency follows
a cascaded trajectory, how much kernel energy sits on the winner-takes-all frequencies, when the layers become
balanced, and the loss-curve landmarks of CIFAR-4. Spec: ``linear_cnn_dynamics.md`` §6-§9, §10 Figs. 3-6, S.2,
S.5.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from ..theory.linear_dynamics import half_times  # the one definition of a discovery time (re-exported)
from .statistics import Claim, directional_claim, not_reached_claim

__all__ = [
    "LossStats",
    "balance_ratios",
    "balanced_from",
    "cascade_index",
    "effective_singular_values",
    "energy_on_winners",
    "half_times",
    "kernel_energy_in_top",
    "loss_stats",
    "max_mean_deviation",
    "modes_in_order",
    "overfitting_claim",
    "rises_after_discovery",
    "spectrum_alignment",
]


def effective_singular_values(a: np.ndarray) -> np.ndarray:
    """The effective singular values ``a_α(t) = A_αα(t)``: the diagonal of ``A = Uᵀ Σ_ŷx V`` (spec Eq. 5), as a
    view ``(..., p, p) -> (..., p)``."""
    return np.diagonal(a, axis1=-2, axis2=-1)


def max_mean_deviation(a: np.ndarray, theory: np.ndarray, scale: float) -> float:
    """``max_{t,α} |mean_trials a_α(t) − theory_α(t)| / scale`` (spec §9 I.1: the trial mean against the
    averaged-flow or Eq. 22 prediction, in units of ``scale = s_0``). ``a (R, ...)``, ``theory`` of ``a[0]``'s
    shape."""
    return float(np.abs(a.mean(axis=0) - theory).max() / scale)


def modes_in_order(half: np.ndarray) -> np.ndarray:
    """Per trial (row of ``half (R, p)``, modes ordered by decreasing ``s_α``): are the discovered modes the first
    ones, discovered at strictly increasing times? (spec §9 I.3: modes are learned in order of ``s_α``)."""
    ok = []
    for row in np.asarray(half):
        found = row[np.isfinite(row)]
        ok.append(bool(np.all(np.diff(found) > 0)) and bool(np.all(np.isfinite(row[: len(found)]))))
    return np.asarray(ok)


def cascade_index(t: np.ndarray, khat: np.ndarray, half: np.ndarray) -> int:
    """A frequency whose ``|k̂_m|`` grows in two separate mode discoveries (the paper's "cascaded trajectory",
    §5, spec §10 Fig. 5 i/j).

    ``khat (T, M)``: one trial's ``|k̂_m(t)|``; ``half (p,)``: its discovery times. ``G_α(m)`` is the growth of
    ``log|k̂_m|`` over the window from the previous discovery to the ``α``-th; the index returned maximises
    ``max_{α<β} min(G_α(m), G_β(m))``. With fewer than two discoveries: the largest final ``|k̂_m|``.
    """
    times = [float(h) for h in half if np.isfinite(h)]
    if len(times) < 2:
        return int(np.argmax(khat[-1]))
    logk = np.log(np.maximum(khat, 1e-300))
    growth = []
    start = 0.0
    for tau in times:
        i0 = int(np.searchsorted(t, start))
        i1 = min(int(np.searchsorted(t, tau)), len(t) - 1)
        growth.append(logk[i1] - logk[i0])
        start = tau
    g = np.stack(growth)  # (modes, M)
    best = np.full(g.shape[1], -np.inf)
    for a in range(len(times)):
        for b in range(a + 1, len(times)):
            best = np.maximum(best, np.minimum(g[a], g[b]))
    return int(np.argmax(best))


def energy_on_winners(khat_abs: np.ndarray, supports: np.ndarray, winners: np.ndarray) -> np.ndarray:
    """Share of each mode's kernel energy on its winner-takes-all frequencies (spec §7, Eqs. 23-24):
    ``Σ_{m ∈ winners_α} |k̂_m|² / Σ_{m ∈ M̄_α} |k̂_m|²``.

    ``khat_abs (N, M)`` kernel magnitudes (one row per trial), ``supports`` and ``winners`` ``(p, M)`` masks.
    Returns ``(N, p)``."""
    e = khat_abs**2
    return np.stack([(e * winners[a]).sum(axis=1) / (e * supports[a]).sum(axis=1) for a in range(len(supports))], 1)


def balance_ratios(wbar_abs: np.ndarray, khat_abs: np.ndarray, supports: np.ndarray) -> list[np.ndarray]:
    """Balancedness per mode ``α`` (spec §8.3, Fig. S.2): ``|W̄_αm(t)| / |k̂_m(t)|`` for ``m ∈ M̄_α``.

    ``wbar_abs (N, T, p, M)``, ``khat_abs (N, T, M)``, ``supports (p, M)`` masks. Returns one ``(N, T, |M̄_α|)``
    array per mode."""
    return [wbar_abs[:, :, a, supports[a]] / khat_abs[:, :, supports[a]] for a in range(len(supports))]


def balanced_from(t: np.ndarray, ratios: np.ndarray, tolerance: float = 0.1) -> float:
    """The first recorded time from which every ratio stays within a factor ``1 + tolerance`` of 1 for good
    (spec §8.3, Fig. S.2: ``|log r| < log(1 + tolerance)`` for every trial and frequency at every later record).

    ``ratios (N, T, K)`` as :func:`balance_ratios` returns for one mode; ``nan`` if never."""
    close = np.all(np.abs(np.log(ratios)) < np.log(1.0 + tolerance), axis=(0, 2))
    stays = np.flatnonzero(close[::-1].cumprod()[::-1])  # from then on
    return float(t[stays[0]]) if len(stays) else float("nan")


class LossStats(TypedDict):
    """Landmarks of a trial-mean loss curve (plumbing record of :func:`loss_stats`)."""

    min: float
    argmin_samples: float
    at_18000: float
    final: float
    final_minus_min: float


def loss_stats(t: np.ndarray, loss: np.ndarray, at: float = 18000.0) -> LossStats:
    """Minimum, its time, the value at ``at`` samples (linear interpolation; ``nan`` beyond the run) and the final
    value of the trial-mean loss ``loss (R, T)`` (spec §9 I.4: the FCNN on CIFAR-4 at 18000 samples, overfitting
    after its minimum)."""
    mean = loss.mean(axis=0)
    i = int(np.argmin(mean))
    at_value = float(np.interp(at, t, mean)) if t[-1] >= at else float("nan")
    return {
        "min": float(mean[i]),
        "argmin_samples": float(t[i]),
        "at_18000": at_value,
        "final": float(mean[-1]),
        "final_minus_min": float(mean[-1] - mean[i]),
    }


def spectrum_alignment(v_hat_abs: np.ndarray, khat_mean: np.ndarray, modes: np.ndarray) -> float:
    """Pearson correlation of the trial-averaged kernel spectrum ``|k̂_m|`` with ``max_{α ∈ modes} |v̂_mα|``
    (spec §10 Fig. S.5: large ``|k̂_m|`` sit on large ``|v̂_mα|`` of the discovered modes); ``nan`` without
    modes. ``v_hat_abs (p, M)``, ``khat_mean (M,)``."""
    if not len(modes):
        return float("nan")
    return float(np.corrcoef(v_hat_abs[modes].max(axis=0), khat_mean)[0, 1])


def kernel_energy_in_top(khat_mean: np.ndarray, k: int) -> float:
    """Share of the kernel energy ``Σ |k̂_m|²`` held by its ``k`` largest frequencies (spec §10 Fig. S.5: the
    kernel spectrum is sparse)."""
    order = np.argsort(-khat_mean)[:k]
    return float((khat_mean[order] ** 2).sum() / (khat_mean**2).sum())


def rises_after_discovery(t: np.ndarray, loss_test: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Per trial, ``L_test(final) - L_test(t_all)``, ``t_all`` the trial's last discovery time (``half (T, p)``,
    ``inf`` where a mode was never found: ``nan`` rise); ``loss_test (T, R)`` at the records ``t (R,)``, read at
    the first record at or after ``t_all`` (spec §9 I.4: overfitting after the modes are learned)."""
    rises = np.full(loss_test.shape[0], np.nan)
    for i, h in enumerate(half):
        if np.all(np.isfinite(h)):
            at = int(np.searchsorted(t, h.max()))
            rises[i] = float(loss_test[i, -1] - loss_test[i, at])
    return rises


def overfitting_claim(statement: str, t: np.ndarray, loss_test: np.ndarray, half: np.ndarray) -> Claim:
    """"The test loss rises after all modes are found" (spec §9 I.4): a one-sample t of the per-trial
    :func:`rises_after_discovery` (``df = trials - 1``) over the trials that found every mode; "not reached"
    when fewer than 3 did. The time ``t_all`` is fixed by ``A(t)``, not by the test curve, so the rise is not
    biased upward by picking the test minimum."""
    rises = rises_after_discovery(t, loss_test, half)
    found = np.isfinite(rises)
    if found.sum() < 3:
        reason = f"all modes found in {int(found.sum())} of {rises.size} trials"
        return not_reached_claim(statement, "> 0", None, int(found.sum()), reason)
    return directional_claim(
        statement, "> 0", rises[found], "greater",
        note="rise = L_test(final) - L_test(last discovery time), per trial",
    )  # fmt: skip
