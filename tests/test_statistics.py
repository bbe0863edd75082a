"""The verdict helper: right degrees of freedom, no verdict from n < 3, no vacuous pass."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from freqlens.analysis.statistics import (
    CONTRADICTED,
    HOLDS,
    NO_VERDICT,
    NOT_REACHED,
    NOT_SIGNIFICANT,
    VERDICTS,
    Claim,
    bootstrap_ci,
    directional_claim,
    equality_claim,
    exact_claim,
    mean_ci,
    not_reached_claim,
    one_sample_t,
    paired_t,
    rank_correlation_claim,
    regression_slope,
    slope_equals_claim,
    t_critical,
    tolerance_claim,
    welch_t,
)
from freqlens.io import to_jsonable


def _samples_with_t(t: float, n: int) -> np.ndarray:
    """n values whose one-sample t statistic is exactly ``t`` (unit sample std)."""
    z = np.linspace(-1.0, 1.0, n)
    z = z / z.std(ddof=1)
    return t / np.sqrt(n) + z


def test_three_networks_with_t_2_65_are_not_significant() -> None:
    diff = _samples_with_t(2.65, 3)
    res = one_sample_t(diff)
    assert res.statistic == pytest.approx(2.65, abs=1e-12)
    assert res.df == 2
    claim = directional_claim("x > 0", None, diff, "greater")
    assert claim.verdict == NOT_SIGNIFICANT
    assert claim.verdict != HOLDS and "significant" not in claim.verdict.replace("not significant", "")
    assert claim.p_value is not None and claim.p_value > 0.05
    # the same t with many networks is significant: the df, not |t| > 2, decides
    assert directional_claim("x > 0", None, _samples_with_t(2.65, 30), "greater").verdict == HOLDS


def test_paired_difference_with_t_2_65_over_three_networks() -> None:
    b = np.array([0.3, 0.5, 0.4])
    a = b + _samples_with_t(2.65, 3)
    claim = directional_claim("a > b", None, a, "greater", other=b)
    assert claim.statistic == "paired t" and claim.df == 2
    assert claim.statistic_value == pytest.approx(2.65, abs=1e-3)
    assert claim.verdict == NOT_SIGNIFICANT


def test_critical_values_equal_scipy_and_the_table() -> None:
    for df in (1, 2, 3, 4, 9, 19, 100):
        assert t_critical(df) == stats.t.ppf(0.975, df)
    # printed t tables: 12.706, 4.303, 3.182, 2.776, 2.262, 2.093
    for df, table in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (19, 2.093)):
        assert t_critical(df) == pytest.approx(table, abs=5e-4)
    with pytest.raises(ValueError, match="df must be > 0"):
        t_critical(0)


def test_welch_df_against_hand_computed_case() -> None:
    a = [1.0, 2.0, 3.0, 4.0]  # s² = 5/3, n = 4
    b = [2.0, 4.0, 6.0]  # s² = 4, n = 3
    va, vb = Fraction(5, 3) / 4, Fraction(4, 1) / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert df == Fraction(1323, 409)
    res = welch_t(a, b)
    assert res.df == pytest.approx(float(df), rel=1e-14)
    assert res.statistic == pytest.approx(-1.5 / np.sqrt(1.75), rel=1e-14)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert res.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res.n == 3 and res.sizes == (4, 3)


def test_paired_t_equals_scipy_and_drops_nan_pairs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    res = paired_t(a, b)
    ref = stats.ttest_rel(a, b)
    assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
    assert res.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res.df == 7
    a[2] = np.nan
    assert paired_t(a, b).df == 6


def test_fewer_than_three_samples_give_no_verdict() -> None:
    for n in (0, 1, 2):
        values = np.arange(n, dtype=float) + 10.0
        assert directional_claim("x > 0", None, values, "greater").verdict == NO_VERDICT
        assert equality_claim("x = 1", 1.0, values).verdict == NO_VERDICT
        assert slope_equals_claim("slope 1", 1.0, np.arange(n), values).verdict == NO_VERDICT
    # NaN samples do not count
    claim = directional_claim("x > 0", None, [1.0, 2.0, np.nan], "greater")
    assert claim.verdict == NO_VERDICT and claim.n == 2 and "too few networks" in claim.note
    with pytest.raises(ValueError, match="n >= 3"):
        Claim("x", None, 1.0, 0.1, 2, "paired t", 9.0, 1, 0.01, None, HOLDS)


def test_vacuous_cases_are_not_reached() -> None:
    claim = not_reached_claim("modes discovered in order", True, 0, 3, "no mode reached its plateau")
    assert claim.verdict == NOT_REACHED and claim.statistic == "none"
    with pytest.raises(ValueError, match="reason"):
        not_reached_claim("x", None, None, 3, "")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("x", None, None, None, 5, "none", None, None, None, None, "significant")


def test_directions_and_json() -> None:
    up = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    assert directional_claim("up", None, up, "greater").verdict == HOLDS
    assert directional_claim("down", None, up, "less").verdict == CONTRADICTED
    assert directional_claim("above 2", "> 2", up, "greater", null=2.0).verdict == CONTRADICTED
    welch = directional_claim("a > b", None, up + 1, "greater", other=up, paired=False)
    assert welch.statistic == "Welch t" and welch.verdict == HOLDS
    record = to_jsonable(welch)
    assert set(record) == {f.name for f in dataclasses.fields(Claim)}
    assert record["verdict"] in VERDICTS


def test_equality_and_slope_claims() -> None:
    assert equality_claim("mean 1", 1.0, [0.9, 1.1, 1.0, 1.05]).verdict == HOLDS
    assert equality_claim("mean 2", 2.0, [0.9, 1.1, 1.0, 1.05]).verdict == CONTRADICTED


def test_equality_claim_with_a_resolution_refuses_a_vacuous_pass() -> None:
    # cbn-fig1 medium's kept counts: the interval [-0.5, 9.8] contains 6, and 5 and 7 as well
    wide = equality_claim("six kept", 6.0, [4, 3, 7])
    assert wide.verdict == HOLDS  # without a resolution: inside the interval
    judged = equality_claim("six kept", 6.0, [4, 3, 7], resolution=1.0)
    assert judged.verdict == NOT_SIGNIFICANT and "too wide to tell it from 5 or 7" in judged.note
    assert equality_claim("six kept", 6.0, [6, 6, 6], resolution=1.0).verdict == HOLDS  # no spread: [6, 6]
    assert equality_claim("six kept", 6.0, [6, 6.2, 5.9, 6.1, 6.0], resolution=1.0).verdict == HOLDS
    assert equality_claim("six kept", 6.0, [9, 9, 10], resolution=1.0).verdict == CONTRADICTED
    assert equality_claim("six kept", 6.0, [6, 7], resolution=1.0).verdict == NO_VERDICT
    with pytest.raises(ValueError, match="resolution must be a positive number"):
        equality_claim("six kept", 6.0, [6, 6, 6], resolution=0.0)
    depth = np.array([2.0, 3.0, 4.0, 5.0, 6.0])
    norm = 5.0 * depth + np.array([0.1, -0.2, 0.15, -0.05, 0.0])
    assert slope_equals_claim("slope = rank 5", 5.0, depth, norm).verdict == HOLDS
    c = slope_equals_claim("slope = rank 6", 6.0, depth, norm)
    assert c.verdict == CONTRADICTED and c.df == 3 and c.ci is not None and c.ci[1] < 6.0


def test_regression_slope_against_normal_equations() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(7, dtype=np.float64)
    y = 2.0 * x + rng.normal(size=7)
    fit = regression_slope(x, y)
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, ssr, *_ = np.linalg.lstsq(design, y, rcond=None)
    cov = float(ssr[0]) / (x.size - 2) * np.linalg.inv(design.T @ design)
    assert fit.slope == pytest.approx(coef[0], rel=1e-12)
    assert fit.standard_error == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-10)
    assert fit.df == 5
    assert fit.ci[1] - fit.slope == pytest.approx(stats.t.ppf(0.975, 5) * np.sqrt(cov[0, 0]), rel=1e-10)
    with pytest.raises(ValueError, match="at least 3"):
        regression_slope([0.0, 1.0], [0.0, 1.0])


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=3, max_size=30).filter(lambda v: np.std(v) > 1e-6))
def test_ci_contains_the_mean_and_shrinks_with_n(values: list[float]) -> None:
    x = np.array(values)
    lo, hi = mean_ci(x)
    assert lo < x.mean() < hi
    lo2, hi2 = mean_ci(np.concatenate([x, x]))  # same spread, twice the samples
    assert hi2 - lo2 < hi - lo


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=2, max_size=20).filter(lambda v: np.std(v) > 1e-6), finite)
def test_one_sample_t_equals_scipy(values: list[float], null: float) -> None:
    res = one_sample_t(values, null)
    ref = stats.ttest_1samp(values, null)
    assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-9, abs=1e-9)
    assert res.df == len(values) - 1


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean() -> None:
    x = np.random.default_rng(2).exponential(size=20)
    lo, hi = bootstrap_ci(x, seed=3)
    assert (lo, hi) == bootstrap_ci(x, seed=3)
    assert lo < x.mean() < hi
    with pytest.raises(ValueError, match="at least 3"):
        bootstrap_ci([1.0, 2.0], seed=0)


def test_rank_correlation_small_n_is_exact_not_t_approximated() -> None:
    # three points in order: rho = 1, the t approximation says p = 0; exactly it is 2/6 (both orders)
    claim = rank_correlation_claim("increases", None, [0, 1, 2], [1.0, 2.0, 3.0], "greater")
    assert claim.measured == pytest.approx(1.0)
    assert claim.p_value == pytest.approx(2 / 6)
    assert claim.verdict == NOT_SIGNIFICANT
    six = rank_correlation_claim("increases", None, np.arange(6), np.arange(6) ** 2.0, "greater")
    assert six.p_value == pytest.approx(2 / 720, abs=1e-6) and six.verdict == HOLDS
    down = rank_correlation_claim("increases", None, np.arange(6), -np.arange(6.0), "greater")
    assert down.verdict == CONTRADICTED
    big = rank_correlation_claim("x", None, np.arange(20), np.arange(20.0), "greater")
    assert big.verdict == HOLDS and "t approximation" in big.note


def test_exact_claims() -> None:
    assert exact_claim("rank 3", 3, 3, 4000, True, "numerical rank").verdict == HOLDS
    assert exact_claim("rank 3", 3, 4, 4000, False, "numerical rank").verdict == CONTRADICTED
    assert exact_claim("rank 3", 3, 3, 2, True, "numerical rank").verdict == NO_VERDICT


def test_tolerance_claims_keep_machine_precision_and_never_over_claim() -> None:
    x = np.random.default_rng(0).standard_normal((8, 16, 16))
    err = float(np.abs(np.fft.ifft2(np.fft.fft2(x)).real - x).max())  # a float64 identity: error ~1e-16, not 0
    assert 0 < err < 1e-14
    ok = tolerance_claim("ifft2(fft2(x)) = x", err, 1e-12, 8)
    assert ok.verdict == HOLDS and ok.statistic == "max abs error" and ok.paper == "<= 1e-12"
    assert ok.measured == ok.statistic_value == float(f"{err:.6g}") and ok.measured > 0  # not rounded to 0
    assert ok.p_value is None and ok.ci is None and ok.df is None  # a check, not a test
    assert tolerance_claim("x", 0.02, 0.02, 3).verdict == HOLDS  # the bound itself passes
    bad = tolerance_claim("x", 0.0300001, 0.02, 3, statistic="max |a - theory| / s_0")
    assert bad.verdict == CONTRADICTED and bad.statistic == "max |a - theory| / s_0" and bad.measured == 0.0300001
    few = tolerance_claim("x", 3e-17, 1e-12, 2)
    assert few.verdict == NO_VERDICT and few.measured == 3e-17 and few.paper == "<= 1e-12"
    assert tolerance_claim("x", float("nan"), 1e-12, 8).verdict == NOT_REACHED
    assert tolerance_claim("x", float("inf"), 1e-12, 8).verdict == CONTRADICTED
    for tol in (-1e-12, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tolerance"):
            tolerance_claim("x", 0.0, tol, 8)


# ------------------------------------------------------------------ the experiments' claim builders
def test_uses_claims_from_one_network_give_no_verdict() -> None:
    from freqlens.experiments.uses_first_layer import _first_layer_claim
    from freqlens.experiments.uses_heatmap import _heatmap_claims
    from freqlens.experiments.uses_sensitivity import _sensitivity_claims

    nat = {"unperturbed_error": 0.69, "mean_error_high_band": 0.728, "standard_error_per_frequency": 0.08}
    gau = {"unperturbed_error": 0.75, "mean_error_high_band": 0.721, "standard_error_per_frequency": 0.08}
    lower, sensitive = _heatmap_claims(nat, gau)
    assert lower.measured == pytest.approx(-0.007, abs=1e-12) and sensitive.measured == pytest.approx(0.038)
    key = "spearman_log_sensitivity_vs_log_power"
    rho, gain = _sensitivity_claims({"init": {key: 0.68}, "trained": {key: 0.84}})
    assert rho.measured == 0.84 and gain.measured == pytest.approx(0.16)
    ratio = np.array([4.0, 3.0, 3.5, 1.2, 1.0, 0.9, 1.1])
    first = _first_layer_claim(ratio, 3)
    assert first.measured == pytest.approx(3.5 - 1.0)
    for claim in (lower, sensitive, rho, gain, first):
        assert claim.verdict == NO_VERDICT and claim.n == 1 and "one trained CNN" in claim.note


def test_pinson_fig3_and_fig4_tolerances_take_the_worse_network_and_trial() -> None:
    from freqlens.experiments.pinson_dynamics import _fig3_claims, _fig4_claim

    measured = {
        "cnn_mean_vs_theory_max_abs_over_s0": 0.0102,
        "fcnn_mean_vs_theory_max_abs_over_s0": 0.0059,
        "cnn_final_max_abs_A_minus_S_over_s0": 1.7e-5,
        "fcnn_final_max_abs_A_minus_S_over_s0": 2.8e-8,
    }
    theory, final = _fig3_claims(measured, 10)
    assert theory.verdict == final.verdict == HOLDS and theory.measured == 0.0102 and final.measured == 1.7e-5
    theory, final = _fig3_claims({**measured, "fcnn_mean_vs_theory_max_abs_over_s0": 0.021}, 10)
    assert theory.verdict == CONTRADICTED and theory.measured == 0.021 and final.verdict == HOLDS
    assert {c.verdict for c in _fig3_claims(measured, 2)} == {NO_VERDICT}
    frac = np.array([[0.971, 0.995], [0.99, 0.999], [0.98, 0.997]])  # (trials, modes)
    assert _fig4_claim(frac).verdict == HOLDS and _fig4_claim(frac).measured == pytest.approx(0.029)
    frac[2, 1] = 0.94  # one mode of one trial keeps 6% off its winners
    assert _fig4_claim(frac).verdict == CONTRADICTED and _fig4_claim(frac).n == 3
    assert _fig4_claim(frac[:1]).verdict == NO_VERDICT


def _balance_ratios(t_size: int, from_index: list[int]) -> np.ndarray:
    """(trials, T, 2) ratios that are 2 before record ``from_index[trial]`` and 1.05 from it on."""
    r = np.full((len(from_index), t_size, 2), 2.0)
    for trial, start in enumerate(from_index):
        r[trial, start:] = 1.05
    return r


def test_pinson_figS2_cascade_is_a_paired_test_over_trials() -> None:
    from freqlens.experiments.pinson_dynamics import _figS2_claims

    t = np.arange(0.0, 200.0, 10.0)
    mode0, mode1 = _balance_ratios(20, [1, 2, 1]), _balance_ratios(20, [5, 7, 6])
    (claim,) = _figS2_claims(t, [mode0, mode1])
    diff = np.array([50.0, 70.0, 60.0]) - np.array([10.0, 20.0, 10.0])  # balance times mode 1 - mode 0 per trial
    expected = stats.ttest_1samp(diff, 0.0)
    assert claim.statistic == "paired t" and claim.n == 3 and claim.df == 2 and claim.verdict == HOLDS
    assert claim.measured == pytest.approx(diff.mean()) and claim.p_value == pytest.approx(expected.pvalue, abs=1e-6)
    (reverse,) = _figS2_claims(t, [mode1, mode0])
    assert reverse.verdict == CONTRADICTED
    never = np.full((3, 20, 2), 2.0)
    (unreached,) = _figS2_claims(t, [mode0, never])
    assert unreached.verdict == NOT_REACHED and "no trial balanced both modes" in unreached.note
    (one,) = _figS2_claims(t, [mode0[:1], mode1[:1]])
    assert one.verdict == NO_VERDICT and one.n == 1


def _fig3_row(weights: int, activations: int, settled: bool = True, found: int = 8, unexpected: int = 0) -> dict:
    return {"weight_rank": weights, "activation_rank": activations, "converged": 0, "settled": int(settled),
            "weights_found": found, "weights_unexpected": unexpected, "activations_found": found,
            "activations_unexpected": unexpected}  # fmt: skip


def test_cbn_fig3_unformed_bottleneck_is_not_reached() -> None:
    from freqlens.experiments.cbn_fig3 import Fig3Config, _claimed_directions, _fig3_claims

    cfg = Fig3Config()
    assert _claimed_directions(cfg) == 15  # (0,0) + 6 pairs + the (5,5) pair
    weights, activations = _fig3_claims([_fig3_row(1608, 20, settled=False, unexpected=500)], cfg)
    assert weights.verdict == NOT_REACHED and "1608" in weights.note and "not formed" in weights.note
    assert activations.verdict == NOT_REACHED and "not settled" in activations.note  # 20 <= 2 x 15, still moving
    weights, activations = _fig3_claims([_fig3_row(15, 20)], cfg)
    assert weights.verdict == activations.verdict == NO_VERDICT  # settled, but one network
    spread = [_fig3_row(14, 27), _fig3_row(15, 28), _fig3_row(16, 29)]
    weights, _ = _fig3_claims(spread, cfg)  # 15 +- 2.5: the interval also holds 14 and 16
    assert weights.verdict == NOT_SIGNIFICANT and "too wide to tell it from 14 or 16" in weights.note
    three = [_fig3_row(15, 27), _fig3_row(15, 28), _fig3_row(15, 29)]
    weights, activations = _fig3_claims(three, cfg)
    assert weights.verdict == HOLDS and weights.n == 3 and "3 of 3 networks keep exactly" in weights.note
    assert activations.verdict == CONTRADICTED  # 28 +- 1 directions: the claimed 15 is outside the interval
    weights, _ = _fig3_claims([*three, _fig3_row(0, 1)], cfg)  # a collapsed fourth network is left out, named
    assert weights.verdict == HOLDS and weights.n == 3 and "1 of 4 networks collapsed" in weights.note
    assert _fig3_claims([_fig3_row(0, 1)] * 3, cfg)[0].verdict == NOT_REACHED
    weights, _ = _fig3_claims([*three[:2], _fig3_row(15, 28, settled=False)], cfg)
    assert weights.verdict == NOT_REACHED and "1 of 3 networks have not settled" in weights.note


def test_pinson_fig6_without_modes_is_not_reached() -> None:
    from freqlens.experiments.pinson_deep import _fig6_claims

    inf = np.full((3, 10), np.inf)
    one_mode = inf.copy()
    one_mode[:, 0] = [500.0, 600.0, 550.0]
    claims = _fig6_claims({"linear": one_mode, "relu": inf}, np.ones(3), np.ones(3) * 0.5)
    assert [c.verdict for c in claims] == [NOT_REACHED] * 4  # stages x2, delay, loss: nothing vacuous passes
    ordered = np.tile(np.array([100.0, 300.0, 900.0, *[np.inf] * 7]), (3, 1)) * np.array([[1.0], [1.1], [0.9]])
    claims = _fig6_claims({"linear": ordered, "relu": ordered * 2}, np.ones(3), np.ones(3) * 0.5)
    stages, delay = claims[0], claims[2]
    assert stages.verdict == HOLDS  # rho = 1 in all three trials (chance (1/6)^3 under no order)
    assert delay.statistic == "Welch t" and delay.n == 3 and delay.verdict == HOLDS  # twice as slow in every trial


def test_decoder_comparison_uses_paired_or_welch() -> None:
    from freqlens.experiments.decoder_common import compare_family_p_low

    base = np.linspace(0.2, 0.3, 3)[:, None] * np.ones((3, 5))
    a = {"p_low": base + _samples_with_t(2.65, 3)[:, None], "p_low_no_dc": base + 1.0}
    b = {"p_low": base, "p_low_no_dc": base}
    paired = compare_family_p_low("zero > circular", "higher", a, b, "greater", paired=True)
    assert [c.statistic for c in paired] == ["paired t", "paired t"]
    assert paired[0].df == 2 and paired[0].verdict == NOT_SIGNIFICANT  # t = 2.65 on 2 df
    welch = compare_family_p_low("K", "lower", a, b, "less", paired=False)
    assert welch[0].statistic == "Welch t"
