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


# ------------------------------------------------------------------ the experiments' claim builders


def test_cbn_fig3_unformed_bottleneck_is_not_reached() -> None:
    from freqlens.experiments.cbn_fig3 import Fig3Config, _claimed_directions, _fig3_claims

    cfg = Fig3Config()
    assert _claimed_directions(cfg) == 15  # (0,0) + 6 pairs + the (5,5) pair
    everything = {"expected_found": [[0, 0]] * 7, "expected_missing": [], "unexpected": [[1, 1]] * 500}
    rank = {"weights": {"rank": 1608}, "activations": {"rank": 20}}
    weights, activations = _fig3_claims(rank, {"weights": everything, "activations": everything}, cfg)
    assert weights.verdict == NOT_REACHED and "1608" in weights.note
    assert activations.verdict == NO_VERDICT  # 20 <= 2 x 15, but one seed


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
    from freqlens.experiments.decoder_common import compare_output_p_low

    base = np.linspace(0.2, 0.3, 3)[:, None] * np.ones((3, 5))
    data = {"a_p_low": base + _samples_with_t(2.65, 3)[:, None], "a_p_low_no_dc": base + 1.0}
    data.update({"b_p_low": base, "b_p_low_no_dc": base})
    paired = compare_output_p_low("zero > circular", "higher", data, "a", "b", "greater", paired=True)
    assert [c.statistic for c in paired] == ["paired t", "paired t"]
    assert paired[0].df == 2 and paired[0].verdict == NOT_SIGNIFICANT  # t = 2.65 on 2 df
    welch = compare_output_p_low("K", "lower", data, "a", "b", "less", paired=False)
    assert welch[0].statistic == "Welch t"
