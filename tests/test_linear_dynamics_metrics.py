"""The linear-dynamics paper metrics (freqlens.analysis.linear_dynamics_metrics) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freqlens.analysis.linear_dynamics_metrics import (
    balance_ratios,
    balanced_from,
    cascade_index,
    effective_singular_values,
    energy_on_winners,
    half_times,
    kernel_energy_in_top,
    loss_stats,
    max_mean_deviation,
    modes_in_order,
    spectrum_alignment,
)


def test_effective_singular_values_are_the_diagonal() -> None:
    a = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    d = effective_singular_values(a)
    assert d.shape == (2, 3, 2)
    assert np.array_equal(d[..., 0], a[..., 0, 0]) and np.array_equal(d[..., 1], a[..., 1, 1])


def test_half_times_first_record_interpolated_and_never() -> None:
    t = np.array([0, 2, 4, 6])
    # mode 0 crosses s/2 = 0.5 between t=2 (0.4) and t=4 (0.8); mode 1 (s = 2) never reaches 1
    a = np.array([[0.0, 0.1], [0.4, 0.2], [0.8, 0.3], [1.0, 0.4]])
    s = np.array([1.0, 2.0])
    assert half_times(t, a, s).tolist() == [4.0, np.inf]
    interp = half_times(t, a, s, interpolate=True, never=np.nan)
    assert interp[0] == pytest.approx(2.5, abs=1e-15) and np.isnan(interp[1])
    # reached at the first record: t[0], also when interpolating
    assert half_times(t, a + 1.0, s, interpolate=True).tolist() == [0.0, 0.0]


def test_half_times_leading_dimensions_are_trials() -> None:
    t = np.arange(5)
    ramp = np.arange(5, dtype=np.float64)[:, None] * np.array([1.0, 0.5])  # (T, p)
    a = np.stack([ramp, 2 * ramp])  # trial 1 twice as fast
    out = half_times(t, a, np.array([4.0, 4.0]))
    assert out.shape == (2, 2)
    assert out.tolist() == [[2.0, 4.0], [1.0, 2.0]]


def test_half_times_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="a must have shape"):
        half_times(np.arange(4), np.zeros((3, 2)), np.ones(2))


@settings(max_examples=60, deadline=None)
@given(slope=st.floats(0.01, 10.0), s=st.floats(0.1, 5.0))
def test_interpolated_half_time_of_a_line_is_exact(slope: float, s: float) -> None:
    # a(t) = slope * t reaches s/2 at t = s / (2 slope); linear interpolation is exact on a line
    t = np.linspace(0.0, s / slope, 7)
    out = half_times(t, (slope * t)[:, None], np.array([s]), interpolate=True)
    assert out[0] == pytest.approx(s / (2 * slope), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_half_times_match_a_vectorised_route(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.random((3, 9, 4)), axis=1)  # (trials, T, p), increasing
    s = rng.uniform(0.5, 12.0, 4)
    t = np.arange(9) * 10
    reached = a >= s / 2
    expected = np.where(reached.any(axis=1), t[reached.argmax(axis=1)], np.inf)
    assert np.array_equal(half_times(t, a, s), expected)


def test_modes_in_order() -> None:
    half = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, np.inf, 3.0], [1.0, 2.0, np.inf], [np.inf] * 3])
    assert modes_in_order(half).tolist() == [True, False, False, True, True]


def test_cascade_index_finds_the_frequency_growing_in_both_discoveries() -> None:
    t = np.arange(11, dtype=np.float64)
    khat = np.ones((11, 3))
    khat[:4, 0] = np.exp(np.linspace(-4, 0, 4))  # grows a lot before the first discovery only (then stays 1)
    khat[:4, 1] = 1e-3
    khat[4:8, 1] = np.exp(np.linspace(np.log(1e-3), 0, 4))  # grows before the second only
    khat[8:, 1] = 1.0
    khat[:, 2] = np.exp(np.minimum(t, 7.0) * 0.5)  # grows steadily through both windows
    assert cascade_index(t, khat, np.array([3.0, 7.0])) == 2
    # fewer than two discoveries: the largest final coefficient
    assert cascade_index(t, khat, np.array([3.0, np.inf])) == 2
    assert cascade_index(t, khat[:, 1:], np.array([np.inf, np.inf])) == 1


def test_energy_on_winners() -> None:
    khat = np.array([[3.0, 4.0, 1.0, 2.0]])
    supports = np.array([[True, True, False, False], [False, False, True, True]])
    winners = np.array([[True, False, False, False], [False, False, False, True]])
    assert energy_on_winners(khat, supports, winners) == pytest.approx(np.array([[9 / 25, 4 / 5]]), rel=1e-15)


def test_balance_ratios_and_balanced_from() -> None:
    supports = np.array([[True, False, True], [False, True, False]])
    khat = np.full((2, 5, 3), 0.5)
    wbar = np.zeros((2, 5, 2, 3))
    wbar[:, :, 0] = 2 * khat  # mode 0: ratio 2 everywhere
    wbar[:, :, 1] = khat  # mode 1: balanced
    r0, r1 = balance_ratios(wbar, khat, supports)
    assert r0.shape == (2, 5, 2) and r1.shape == (2, 5, 1)
    assert np.all(r0 == 2.0) and np.all(r1 == 1.0)
    t = np.array([0, 10, 20, 30, 40])
    assert balanced_from(t, r1) == 0.0
    assert np.isnan(balanced_from(t, r0))
    ratios = np.ones((1, 5, 1))
    ratios[0, 1, 0] = 1.5  # out of tolerance at t = 10, within from t = 20 on
    assert balanced_from(t, ratios) == 20.0
    ratios[0, 4, 0] = 0.8  # leaves the band again at the last record: never balanced for good
    assert np.isnan(balanced_from(t, ratios))
    assert balanced_from(t, np.full((1, 5, 1), 1.05)) == 0.0 and np.isnan(balanced_from(t, np.full((1, 5, 1), 1.2)))


def test_loss_stats() -> None:
    t = np.array([0.0, 10000.0, 20000.0, 30000.0])
    loss = np.array([[0.3, 0.2, 0.1, 0.2], [0.3, 0.2, 0.1, 0.2]])
    out = loss_stats(t, loss)
    assert out["min"] == pytest.approx(0.1) and out["argmin_samples"] == 20000.0
    assert out["at_18000"] == pytest.approx(0.12) and out["final"] == pytest.approx(0.2)
    assert out["final_minus_min"] == pytest.approx(0.1)
    assert np.isnan(loss_stats(t[:2], loss[:, :2])["at_18000"])  # the run ends before 18000 samples


def test_spectrum_alignment_and_top_energy() -> None:
    v = np.array([[0.1, 0.5, 0.2, 0.0], [0.3, 0.0, 0.0, 0.4]])
    modes = np.array([0, 1])
    khat = 2.0 * v.max(axis=0) + 0.1  # an affine function of max_α |v̂_mα|
    assert spectrum_alignment(v, khat, modes) == pytest.approx(1.0, abs=1e-12)
    assert spectrum_alignment(v, -khat, modes) == pytest.approx(-1.0, abs=1e-12)
    assert np.isnan(spectrum_alignment(v, khat, np.array([], dtype=int)))
    assert kernel_energy_in_top(np.array([3.0, 0.0, 4.0, 0.0]), 1) == pytest.approx(16 / 25)
    assert kernel_energy_in_top(np.array([3.0, 0.0, 4.0, 0.0]), 2) == pytest.approx(1.0)


def test_max_mean_deviation() -> None:
    a = np.array([[[1.0, 2.0]], [[3.0, 2.0]]])  # trial mean [[2, 2]]
    assert max_mean_deviation(a, np.array([[2.0, 1.0]]), 2.0) == 0.5
