"""Decoder SOM theory: Dirichlet kernel (A12), Monte Carlo checks of Eq. 27 / Thm 4.2 (A13), Thm 4.3 (A14),
and the caveats of A15 (spec decoder_spectra §3, §5.8-5.10, §6).

Monte Carlo tolerances are ``Z`` standard errors of the estimator (estimated from the same samples), with
fixed seeds; ``Z = 5`` keeps the false-failure probability negligible even over a few hundred bins.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from freqlens.theory.decoder_som import (
    dc_replica_positions,
    dirichlet_R,
    dirichlet_sum,
    log_som_per_layer,
    log_som_slope,
    monte_carlo_padding_som_gain,
    monte_carlo_som_single_channel,
    monte_carlo_transfer_moments,
    multichannel_transfer_mean,
    power_share_low,
    som_multichannel_eq32,
    som_single_channel,
    transfer_moments,
    zero_padding_som_gain,
    zero_padding_tau,
)

Z = 5.0


def within_sampling_error(estimate: np.ndarray, se: np.ndarray, theory: np.ndarray, z: float = Z) -> bool:
    """|estimate - theory| <= z·SE in every bin (a tiny absolute floor covers bins with SE = 0)."""
    floor = 1e-12 * max(float(np.abs(theory).max()), 1.0)
    return bool(np.all(np.abs(estimate - theory) <= z * se + floor))


# ----------------------------------------------------------------------------------- A12
@given(m=st.integers(4, 20), n=st.integers(4, 20), k=st.integers(1, 4))
def test_A12_dirichlet_closed_form_matches_direct_sum(m: int, n: int, k: int) -> None:
    r = dirichlet_R(k, (m, n))
    t = np.arange(k)
    direct = (
        np.exp(2j * np.pi * np.arange(m)[:, None] * t[None, :] / m).sum(1)[:, None]
        * np.exp(2j * np.pi * np.arange(n)[:, None] * t[None, :] / n).sum(1)[None, :]
    )
    assert np.allclose(r, direct, atol=1e-12)
    assert np.all(np.abs(r) <= k * k + 1e-12)
    assert abs(r[0, 0]) == pytest.approx(k * k)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_A12_nyquist_value(k: int) -> None:
    r = dirichlet_R(k, (16, 12))
    assert abs(r[8, 6]) == pytest.approx(1.0 if k % 2 else 0.0, abs=1e-12)


def test_dirichlet_sum_periodic_and_limit() -> None:
    assert dirichlet_sum(np.array([0, 7, 14]), 3, 7) == pytest.approx(np.array([3, 3, 3]))
    assert dirichlet_sum(np.array([2 + 7 * 1000]), 3, 7)[0] == pytest.approx(dirichlet_sum(np.array([2]), 3, 7)[0])


# ----------------------------------------------------------------------------------- A13
def test_A13_monte_carlo_transfer_moments_eq27() -> None:
    mu, sigma, k, grid = 0.3, 0.5, 3, (8, 6)
    mc = monte_carlo_transfer_moments(mu, sigma, k, grid, n=40_000, rng=np.random.default_rng(11))
    mean, var, pvar = transfer_moments(mu, sigma, k, grid)
    for key, theory in (("mean", mean), ("variance", var), ("pseudo_variance", pvar)):
        est = mc[key]
        assert est.n == 40_000
        assert within_sampling_error(est.value, est.standard_error, theory), key
    # the estimator resolves the frequency dependence it is checking
    assert float(np.abs(mean).max() - np.abs(mean).min()) > 50 * float(mc["mean"].standard_error.max())


def test_A13_monte_carlo_single_channel_som_product() -> None:
    mus, sigmas, k, grid = [0.3, -0.2, 0.25, 0.1], [0.2, 0.3, 0.15, 0.25], 3, (8, 8)
    mc = monte_carlo_som_single_channel(mus, sigmas, k, grid, n=60_000, rng=np.random.default_rng(5))
    theory = np.exp(log_som_per_layer(mus, sigmas, k, grid))
    assert mc.value.shape == (4, 8, 8)
    assert within_sampling_error(mc.value, mc.standard_error, theory)
    assert np.allclose(theory[-1], som_single_channel(mus, sigmas, k, grid))


def test_A13_zero_mean_weights_give_flat_som() -> None:
    sig = [0.3, 0.2, 0.4]
    theory = som_single_channel([0.0, 0.0, 0.0], sig, 3, (8, 8))
    assert np.allclose(theory, np.prod([9 * s**2 for s in sig]), rtol=1e-12)
    mc = monte_carlo_som_single_channel([0.0] * 3, sig, 3, (8, 8), n=40_000, rng=np.random.default_rng(2))
    assert within_sampling_error(mc.value[-1], mc.standard_error[-1], theory)


def test_A13_multichannel_mean_eq31_exact() -> None:
    mus, chans, k, grid = [0.2, -0.1, 0.3], [2, 3, 4, 2], 3, (6, 6)
    rng = np.random.default_rng(8)
    n = 20_000
    acc = np.zeros((6, 6, chans[-1], chans[0]), dtype=np.complex128)
    acc2 = np.zeros((6, 6, chans[-1], chans[0]))
    for _ in range(n // 2000):
        prod = None
        for l, mu in enumerate(mus):
            w = mu + 0.3 * rng.standard_normal((2000, chans[l + 1], chans[l], k, k))
            t = np.conj(np.fft.fft2(w, s=grid)).transpose(0, 3, 4, 1, 2)
            prod = t if prod is None else t @ prod
        assert prod is not None
        acc += prod.sum(0)
        acc2 += (np.abs(prod) ** 2).sum(0)
    mean = acc / n
    se = np.sqrt((acc2 / n - np.abs(mean) ** 2) / n)
    theory = multichannel_transfer_mean(mus, chans, k, grid)[:, :, None, None] * np.ones_like(mean)
    assert within_sampling_error(mean, se, theory)


# ----------------------------------------------------------------------------------- A14
def test_A14_zero_padding_som_gain_theorem_4_3() -> None:
    a, size, padded = 0.8, (16, 12), (18, 14)
    mc = monte_carlo_padding_som_gain(a, 1.0, size, padded, n=60_000, rng=np.random.default_rng(4))
    theory = zero_padding_som_gain(a, size, padded)
    assert within_sampling_error(mc.value, mc.standard_error, theory)
    assert mc.value[0, 0] == pytest.approx(0.0, abs=1e-8)  # DC: H_00 = G_00 sample by sample
    # spec §3 numbers: ΔSOM 357.6 at (1,0), 622.1 at (0,1), 9.4 at (1,1)
    assert theory[1, 0] == pytest.approx(357.6, abs=0.1)
    assert theory[0, 1] == pytest.approx(622.1, abs=1.0)
    assert theory[1, 1] == pytest.approx(9.4, abs=0.1)


def test_A14_one_sided_and_symmetric_padding_equal_som() -> None:
    args = (0.5, 1.0, (10, 8), (14, 12))
    one = monte_carlo_padding_som_gain(*args, n=5_000, rng=np.random.default_rng(9))
    sym = monte_carlo_padding_som_gain(*args, n=5_000, rng=np.random.default_rng(9), symmetric=True)
    # same samples, padding differs by a shift: magnitudes (hence the statistic) agree sample by sample
    assert np.allclose(one.value, sym.value, rtol=1e-9, atol=1e-9)


def test_tau_limits() -> None:
    tau = zero_padding_tau((16, 12), (18, 14))
    assert tau[0, 0] == pytest.approx(16 * 12)
    assert tau[0, 3] == pytest.approx(16 * np.sin(12 * 3 * np.pi / 14) / np.sin(3 * np.pi / 14))
    with pytest.raises(ValueError, match="at least"):
        zero_padding_tau((8, 8), (6, 8))


# ----------------------------------------------------------------------------------- A15 caveats
def test_A15_depth_trend_depends_on_the_per_layer_factor() -> None:
    # Spec §5.10: K=3, μ=σ=0.01, M=64: SOM(0,0)/SOM(32,32) = 9^L exactly.
    logs = log_som_per_layer([0.01] * 6, [0.01] * 6, 3, (64, 64))
    ratio = np.exp(logs[:, 0, 0] - logs[:, 32, 32])
    assert np.allclose(ratio, 9.0 ** np.arange(1, 7), rtol=1e-10)
    # ... but both decrease with depth here (factor < 1): "SOM increases with depth" is NOT unconditional
    assert np.all(np.diff(logs[:, 0, 0]) < 0) and np.all(np.diff(logs[:, 32, 32]) < 0)
    slope = log_som_slope(0.2, 0.2, 3, (64, 64))
    assert slope[0, 0] > 0 > slope[32, 32]  # grows at DC, shrinks at the highest frequency


def test_A15_eq32_is_only_approximate() -> None:
    """Eq. 32 is about 10% off (spec §3, A15): checked loosely (30%), and shown not to be exact."""
    mus, sigmas, chans, k, grid = [0.2, 0.2, 0.2], [0.2, 0.2, 0.2], [3, 4, 4, 4], 3, (6, 6)
    eq32 = som_multichannel_eq32(mus, sigmas, chans, k, grid)[-1]
    rng = np.random.default_rng(21)
    n, acc, acc2 = 40_000, np.zeros(grid), np.zeros(grid)
    for _ in range(n // 4000):
        prod = None
        for l in range(3):
            w = mus[l] + sigmas[l] * rng.standard_normal((4000, chans[l + 1], chans[l], k, k))
            t = np.conj(np.fft.fft2(w, s=grid)).transpose(0, 3, 4, 1, 2)
            prod = t if prod is None else t @ prod
        assert prod is not None
        q = (np.abs(prod) ** 2).mean(axis=(-2, -1))  # entry-averaged SOM per sample
        acc += q.sum(0)
        acc2 += (q**2).sum(0)
    mc = acc / n
    se = np.sqrt((acc2 / n - mc**2) / n)
    assert np.all(np.abs(mc - eq32) <= 0.3 * mc)
    assert np.any(np.abs(mc - eq32) > Z * se)  # a real bias, not sampling noise


# ----------------------------------------------------------------------------------- repetition, p_low
def test_dc_replica_positions_theorem_4_4() -> None:
    pos = dc_replica_positions((4, 5), (8, 15))
    assert sorted(map(tuple, pos.tolist())) == [(0, 0), (0, 5), (0, 10), (4, 0), (4, 5), (4, 10)]
    # cascades compose: 32 -> 64 -> 128 puts replicas at multiples of 32
    assert {tuple(p) for p in dc_replica_positions(32, 128).tolist()} == {
        (a, b) for a in range(0, 128, 32) for b in range(0, 128, 32)
    }
    with pytest.raises(ValueError, match="integer multiple"):
        dc_replica_positions(4, 10)


def test_kernel_size_p_low_contradiction_spec_7_7() -> None:
    """Spec §7.7: with white input, μ=σ=0.01, L=5 the single-channel formula gives p_low 0.06/0.90/1.00/1.00
    for K=1/3/5/9, i.e. *larger* K gives more low frequencies, contradicting conclusion (5)."""
    p = [power_share_low(som_single_channel([0.01] * 5, [0.01] * 5, k, (64, 64))) for k in (1, 3, 5, 9)]
    assert p == pytest.approx([0.0625, 0.90, 1.00, 1.00], abs=0.01)
