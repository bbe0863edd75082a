"""One helper for every verdict an experiment states: tests with the right degrees of freedom and
:class:`Claim` records that never over-claim.

Every experiment summary lists its paper claims as ``claims``: a list of :class:`Claim` (statement, the
paper's number, the measured number with its uncertainty, ``n``, the test statistic with its degrees of
freedom, the p-value or confidence interval, and a verdict). The verdict words are the five of
:data:`VERDICTS`, one set everywhere:

* ``"holds"``: the test rejects the null hypothesis at level ``alpha`` in the paper's direction (or the
  paper's value lies inside the measured confidence interval, for an equality claim);
* ``"contradicted"``: the test rejects it in the opposite direction (or the paper's value lies outside the CI);
* ``"not significant"``: the test does not reject;
* ``"no verdict (n < 3)"``: fewer than :data:`MIN_SAMPLES` independent samples (networks, seeds): no test is run;
* ``"not reached"``: the claim's precondition is unmet (no mode discovered, a kept set far larger than the
  claimed one, ...): a vacuous pass is never reported as ``"holds"``.

All tests go through :mod:`scipy.stats` with the two-sided ``alpha = 0.05`` critical values of Student's t
(so three networks, 2 degrees of freedom, need ``|t| > 4.30``, not ``|t| > 2``). Statistics plumbing of the
experiments (spec: ``DESIGN.md`` "honest statistics"; issue 15 item 4-5, issue 12 item 4, issue 10 item 3).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "ALPHA",
    "CONTRADICTED",
    "HOLDS",
    "MIN_SAMPLES",
    "NOT_REACHED",
    "NOT_SIGNIFICANT",
    "NO_VERDICT",
    "VERDICTS",
    "Claim",
    "Direction",
    "SlopeFit",
    "TestResult",
    "bootstrap_ci",
    "claim_records",
    "directional_claim",
    "equality_claim",
    "exact_claim",
    "mean_ci",
    "no_verdict_claim",
    "not_reached_claim",
    "one_sample_t",
    "paired_t",
    "rank_correlation_claim",
    "regression_slope",
    "slope_equals_claim",
    "t_critical",
    "tolerance_claim",
    "welch_t",
]

HOLDS = "holds"
CONTRADICTED = "contradicted"
NOT_SIGNIFICANT = "not significant"
NO_VERDICT = "no verdict (n < 3)"
NOT_REACHED = "not reached"
#: The only verdict words a summary may use.
VERDICTS = (HOLDS, CONTRADICTED, NOT_SIGNIFICANT, NO_VERDICT, NOT_REACHED)
#: No verdict is computed from fewer samples than this.
MIN_SAMPLES = 3
#: Two-sided significance level of every verdict.
ALPHA = 0.05
#: Up to this many points the Spearman p-value is exact (all n! permutations).
EXACT_SPEARMAN_MAX_N = 8

Direction = Literal["greater", "less"]


@dataclass(frozen=True)
class Claim:
    """One paper claim as a summary states it (plumbing: a record, stored in ``summary.json`` as a dict).

    Attributes:
        statement: the claim in words, with the paper's figure/section.
        paper: the paper's number or condition (e.g. ``"> 0.8"``, ``5``), ``None`` if the paper gives none.
        measured: the measured number (mean difference, slope, count, ...), ``None`` if not measured.
        uncertainty: its standard error (``None`` if undefined, e.g. ``n < 3``).
        n: independent samples behind ``measured`` (networks, seeds, depths).
        statistic: which test (``"paired t"``, ``"Welch t"``, ``"one-sample t"``, ``"regression slope"``...)
            or ``"none"``.
        statistic_value: the value of that statistic (the t value).
        df: its degrees of freedom.
        p_value: two-sided p-value (``None`` where the verdict uses a CI).
        ci: ``(low, high)`` confidence interval of ``measured`` at ``1 - alpha``.
        verdict: one of :data:`VERDICTS`.
        note: why the verdict is what it is (precondition, calibration, ...).
    """

    statement: str
    paper: float | str | None
    measured: float | None
    uncertainty: float | None
    n: int
    statistic: str
    statistic_value: float | None
    df: float | None
    p_value: float | None
    ci: tuple[float, float] | None
    verdict: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict not in (NOT_REACHED, NO_VERDICT) and self.n < MIN_SAMPLES:
            raise ValueError(f"a verdict needs n >= {MIN_SAMPLES} samples, got n={self.n} with {self.verdict!r}")


@dataclass(frozen=True)
class TestResult:
    """Outcome of one t test (plumbing). ``estimate``: mean (difference); ``standard_error``; ``statistic``:
    t; ``df``; ``p_value``: two-sided; ``ci``: ``(1 - alpha)`` t interval of ``estimate``; ``n``: samples (the
    smaller group for Welch); ``name``: which test."""

    name: str
    estimate: float
    standard_error: float
    statistic: float
    df: float
    p_value: float
    ci: tuple[float, float]
    n: int
    sizes: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares line ``y = slope x + intercept`` with the slope's standard error, ``df = n - 2`` and the
    ``(1 - alpha)`` t interval (plumbing record of :func:`regression_slope`)."""

    slope: float
    intercept: float
    standard_error: float
    df: int
    ci: tuple[float, float]
    r_squared: float
    n: int


def claim_records(claims: Sequence[Claim | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plumbing: claims as plain dicts, whether fresh :class:`Claim` records (``run``) or already read back from
    ``summary.json`` (``replot``), so a plot reads them one way."""
    return [dataclasses.asdict(c) if isinstance(c, Claim) else dict(c) for c in claims]


def _finite_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


def t_critical(df: float, alpha: float = ALPHA) -> float:
    """Two-sided critical value ``t_{1-alpha/2, df}`` of Student's t (``scipy.stats.t.ppf``); ``df > 0``."""
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return float(stats.t.ppf(1.0 - alpha / 2.0, df))


def _t_result(
    name: str, estimate: float, se: float, df: float, n: int, alpha: float, sizes: tuple[int, ...]
) -> TestResult:
    null_se = se if se > 0 else float("nan")
    t = estimate / null_se if se > 0 else (float("inf") * np.sign(estimate) if estimate != 0 else float("nan"))
    p = float(2.0 * stats.t.sf(abs(t), df)) if np.isfinite(t) else (0.0 if np.isinf(t) else float("nan"))
    half = t_critical(df, alpha) * se
    return TestResult(name, estimate, se, float(t), float(df), p, (estimate - half, estimate + half), n, sizes)


def one_sample_t(values: Sequence[float] | np.ndarray, null: float = 0.0, alpha: float = ALPHA) -> TestResult:
    """One-sample t test of ``mean(values) = null``: ``t = (x̄ - null) / (s / √n)`` with ``df = n - 1``;
    two-sided p-value and the t interval ``x̄ ± t_{1-α/2, n-1} s/√n`` (``estimate`` is ``x̄ - null``).

    Non-finite values are left out. Needs at least 2 finite values (a verdict needs 3, see :class:`Claim`)."""
    x = _finite_1d(values, "values")
    if x.size < 2:
        raise ValueError(f"values must hold at least 2 finite numbers for a t test, got {x.size}")
    se = float(x.std(ddof=1) / np.sqrt(x.size))
    return _t_result("one-sample t", float(x.mean()) - null, se, x.size - 1, x.size, alpha, (x.size,))


def paired_t(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> TestResult:
    """Paired t test of ``mean(a - b) = 0`` (same networks measured twice): the one-sample t of the
    differences, ``df = n - 1`` (pairs with a non-finite member are left out)."""
    aa = np.asarray(a, dtype=np.float64)
    bb = np.asarray(b, dtype=np.float64)
    if aa.shape != bb.shape or aa.ndim != 1:
        raise ValueError(f"a and b must be 1-d of the same length, got shapes {aa.shape} and {bb.shape}")
    res = one_sample_t(aa - bb, 0.0, alpha)
    return TestResult(
        "paired t", res.estimate, res.standard_error, res.statistic, res.df, res.p_value, res.ci, res.n, res.sizes
    )


def welch_t(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> TestResult:
    """Welch's two-sample t test of ``mean(a) = mean(b)`` (independent samples, unequal variances):
    ``t = (ā - b̄) / √(s_a²/n_a + s_b²/n_b)`` with the Welch-Satterthwaite
    ``df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``. ``n`` of the result is the
    smaller group size (the one a verdict's ``n >= 3`` rule applies to)."""
    x = _finite_1d(a, "a")
    y = _finite_1d(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError(f"a and b must each hold at least 2 finite numbers, got {x.size} and {y.size}")
    va, vb = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    se = float(np.sqrt(va + vb))
    denom = va**2 / (x.size - 1) + vb**2 / (y.size - 1)
    df = (va + vb) ** 2 / denom if denom > 0 else float(x.size + y.size - 2)
    return _t_result("Welch t", float(x.mean() - y.mean()), se, df, min(x.size, y.size), alpha, (x.size, y.size))


def mean_ci(values: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """t interval of the mean: ``x̄ ± t_{1-α/2, n-1} s/√n`` (``df = n - 1``; non-finite values left out)."""
    return one_sample_t(values, 0.0, alpha).ci


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, seed: int, alpha: float = ALPHA, resamples: int = 9999
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, BCa), seeded for determinism; for
    skewed samples where the t interval's normality is doubtful. Needs at least 3 finite values."""
    x = _finite_1d(values, "values")
    if x.size < MIN_SAMPLES:
        raise ValueError(f"values must hold at least {MIN_SAMPLES} finite numbers for a bootstrap CI, got {x.size}")
    res = stats.bootstrap(
        (x,), np.mean, confidence_level=1 - alpha, n_resamples=resamples, method="BCa", rng=np.random.default_rng(seed)
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def regression_slope(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, alpha: float = ALPHA
) -> SlopeFit:
    """Ordinary least-squares slope of ``y`` on ``x`` (``scipy.stats.linregress``) with its standard error
    ``s / √Σ(x-x̄)²`` and the t interval ``slope ± t_{1-α/2, n-2} se`` (``df = n - 2``). Needs 3 points."""
    xx = np.asarray(x, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if xx.shape != yy.shape or xx.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length, got shapes {xx.shape} and {yy.shape}")
    if xx.size < 3 or not (np.isfinite(xx).all() and np.isfinite(yy).all()):
        raise ValueError(f"x and y must hold at least 3 finite points for a slope CI, got {xx.size}")
    if np.ptp(xx) == 0:
        raise ValueError("x must not be constant")
    fit = stats.linregress(xx, yy)
    df = xx.size - 2
    half = t_critical(df, alpha) * float(fit.stderr)
    slope = float(fit.slope)
    return SlopeFit(
        slope,
        float(fit.intercept),
        float(fit.stderr),
        df,
        (slope - half, slope + half),
        float(fit.rvalue) ** 2,
        int(xx.size),
    )


def _rounded(v: float | None, digits: int = 6) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def no_verdict_claim(
    statement: str, paper: float | str | None, measured: float | None, n: int, statistic: str, note: str = ""
) -> Claim:
    """A claim measured on fewer than :data:`MIN_SAMPLES` samples: no test, verdict ``"no verdict (n < 3)"``."""
    why = f"too few networks for a verdict: n = {n} < {MIN_SAMPLES}"
    return Claim(
        statement,
        paper,
        _rounded(measured),
        None,
        n,
        statistic,
        None,
        None,
        None,
        None,
        NO_VERDICT,
        f"{why}; {note}" if note else why,
    )


def not_reached_claim(statement: str, paper: float | str | None, measured: float | None, n: int, reason: str) -> Claim:
    """A claim whose precondition is unmet (``reason`` says which): verdict ``"not reached"``, never a pass."""
    if not reason:
        raise ValueError("reason must say which precondition is unmet")
    return Claim(statement, paper, _rounded(measured), None, n, "none", None, None, None, None, NOT_REACHED, reason)


def directional_claim(
    statement: str,
    paper: float | str | None,
    samples: Sequence[float] | np.ndarray,
    expected: Direction,
    null: float = 0.0,
    other: Sequence[float] | np.ndarray | None = None,
    paired: bool = True,
    alpha: float = ALPHA,
    note: str = "",
) -> Claim:
    """The paper says a quantity is larger (``expected="greater"``) or smaller than ``null`` (or than
    ``other``). Test: one-sample t of ``samples`` against ``null`` (``df = n - 1``); with ``other``, the
    paired t of ``samples - other`` (``df = n - 1``) or, with ``paired=False``, Welch's t (Welch-Satterthwaite
    df). Verdict at two-sided level ``alpha``: ``"holds"`` if ``p < alpha`` with the sign of ``expected``,
    ``"contradicted"`` if ``p < alpha`` with the other sign, else ``"not significant"``; ``n < 3``: no verdict.
    ``measured`` is the mean (difference) minus ``null``."""
    if expected not in ("greater", "less"):
        raise ValueError(f"expected must be 'greater' or 'less', got {expected!r}")
    x = np.asarray(samples, dtype=np.float64)
    if other is None:
        name = "one-sample t"
        n = int(np.isfinite(x).sum())
        estimate = float(np.nanmean(x)) - null if n else None
    else:
        y = np.asarray(other, dtype=np.float64)
        name = "paired t" if paired else "Welch t"
        if paired:
            diff = x - y
            n = int(np.isfinite(diff).sum())
            estimate = float(np.nanmean(diff)) if n else None
        else:
            n = int(min(np.isfinite(x).sum(), np.isfinite(y).sum()))
            estimate = float(np.nanmean(x) - np.nanmean(y)) if n else None
    if n < MIN_SAMPLES:
        return no_verdict_claim(statement, paper, estimate, n, name, note)
    res = one_sample_t(x, null, alpha) if other is None else paired_t(x, y, alpha) if paired else welch_t(x, y, alpha)
    sign = 1.0 if expected == "greater" else -1.0
    verdict = (HOLDS if sign * res.estimate > 0 else CONTRADICTED) if res.p_value < alpha else NOT_SIGNIFICANT
    crit = t_critical(res.df, alpha)
    why = f"two-sided {name}, |t| = {abs(res.statistic):.2f} vs critical {crit:.2f} at df = {res.df:.3g}"
    return _claim_from_test(statement, paper, res, name, verdict, f"{why}; {note}" if note else why)


def _claim_from_test(
    statement: str, paper: float | str | None, res: TestResult, statistic: str, verdict: str, note: str, t: bool = True
) -> Claim:
    """Plumbing: a :class:`Claim` from a t test's result (``t=False``: a CI verdict, no t value or p-value)."""
    return Claim(
        statement=statement,
        paper=paper,
        measured=_rounded(res.estimate),
        uncertainty=_rounded(res.standard_error),
        n=res.n,
        statistic=statistic,
        statistic_value=_rounded(res.statistic, 3) if t else None,
        df=_rounded(res.df, 3),
        p_value=_rounded(res.p_value, 6) if t else None,
        ci=(round(res.ci[0], 6), round(res.ci[1], 6)),
        verdict=verdict,
        note=note,
    )


def equality_claim(
    statement: str,
    paper: float,
    samples: Sequence[float] | np.ndarray,
    alpha: float = ALPHA,
    note: str = "",
    resolution: float | None = None,
) -> Claim:
    """The paper says the mean of a quantity equals ``paper``. Verdict from the t interval of the mean
    (``df = n - 1``): ``"contradicted"`` if ``paper`` lies outside it; ``n < 3``: no verdict. Inside it,
    ``"holds"``, except that with a ``resolution`` (the nearest value that would be a different claim: 1 for a
    count of kept directions) an interval that reaches ``paper ± resolution`` cannot tell the paper's value from
    its neighbours, and the verdict is ``"not significant"`` rather than a vacuous pass."""
    if resolution is not None and not resolution > 0:
        raise ValueError(f"resolution must be a positive number or None, got {resolution!r}")
    x = _finite_1d(samples, "samples")
    if x.size < MIN_SAMPLES:
        return no_verdict_claim(statement, paper, float(x.mean()) if x.size else None, x.size, "t interval", note)
    res = one_sample_t(x, 0.0, alpha)
    lo, hi = res.ci
    why = f"{1 - alpha:.0%} t interval [{lo:.4g}, {hi:.4g}] (df = {res.df:g}) vs the paper's {paper:g}"
    if not lo <= paper <= hi:
        verdict = CONTRADICTED
    elif resolution is not None and (lo <= paper - resolution or hi >= paper + resolution):
        verdict = NOT_SIGNIFICANT
        why += f": too wide to tell it from {paper - resolution:g} or {paper + resolution:g}"
    else:
        verdict = HOLDS
    return _claim_from_test(statement, paper, res, "t interval", verdict, f"{why}; {note}" if note else why, t=False)


def slope_equals_claim(
    statement: str,
    expected_slope: float,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    alpha: float = ALPHA,
    note: str = "",
) -> Claim:
    """The paper says ``y`` grows with ``x`` at slope ``expected_slope``. Least-squares slope with its t
    interval (``df = n - 2``, :func:`regression_slope`): ``"holds"`` if ``expected_slope`` lies inside,
    ``"contradicted"`` if outside; fewer than 3 points: no verdict. The statistic reported is
    ``t = (slope - expected) / se``."""
    xx = np.asarray(x, dtype=np.float64)
    if xx.size < MIN_SAMPLES:
        return no_verdict_claim(statement, expected_slope, None, int(xx.size), "regression slope", note)
    fit = regression_slope(xx, y, alpha)
    lo, hi = fit.ci
    verdict = HOLDS if lo <= expected_slope <= hi else CONTRADICTED
    t = (fit.slope - expected_slope) / fit.standard_error if fit.standard_error > 0 else float("nan")
    p = float(2.0 * stats.t.sf(abs(t), fit.df)) if np.isfinite(t) else None
    why = f"{1 - alpha:.0%} slope interval [{lo:.4g}, {hi:.4g}] (df = {fit.df}) vs expected {expected_slope:.4g}"
    return Claim(
        statement,
        round(float(expected_slope), 6),
        _rounded(fit.slope),
        _rounded(fit.standard_error),
        fit.n,
        "regression slope",
        _rounded(t, 3),
        fit.df,
        _rounded(p, 6),
        (round(lo, 6), round(hi, 6)),
        verdict,
        f"{why}; {note}" if note else why,
    )


def exact_claim(
    statement: str,
    paper: float | str | None,
    measured: float,
    n: int,
    agrees: bool,
    check: str,
    note: str = "",
) -> Claim:
    """A deterministic claim (a theorem or an algebraic identity evaluated on fixed data, no sampling noise):
    ``"holds"`` if ``agrees`` else ``"contradicted"``; ``check`` says what was compared and at which tolerance.
    ``n`` counts what it was evaluated on (images, classes); below 3 there is no verdict."""
    if n < MIN_SAMPLES:
        return no_verdict_claim(statement, paper, measured, n, check, note)
    return Claim(
        statement, paper, _rounded(measured, 12), None, n, check, None, None, None, None,
        HOLDS if agrees else CONTRADICTED, note,
    )  # fmt: skip


def tolerance_claim(
    statement: str,
    error: float,
    tolerance: float,
    n: int,
    statistic: str = "max abs error",
    note: str = "",
) -> Claim:
    """A deterministic identity (or bound) checked to a tolerance, not a significance test: ``error`` is the
    largest deviation over everything compared (``statistic`` says which, by default ``"max abs error"``), and
    the claim ``"holds"`` if ``error <= tolerance``, else ``"contradicted"``. ``paper`` records the condition
    ``"<= tolerance"``; ``measured`` and ``statistic_value`` the error to 6 significant digits (a
    machine-precision error stays visible). A NaN error (nothing compared) is ``"not reached"``; ``n`` counts
    what it was evaluated on (images, trials), below 3 there is no verdict."""
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    condition = f"<= {tolerance:g}"
    if np.isnan(error):
        return not_reached_claim(statement, condition, None, n, f"{statistic} is NaN: nothing was compared")
    measured = float(f"{float(error):.6g}")
    if n < MIN_SAMPLES:  # keep the significant digits that no_verdict_claim's 6 decimals would drop
        return dataclasses.replace(no_verdict_claim(statement, condition, None, n, statistic, note), measured=measured)
    verdict = HOLDS if error <= tolerance else CONTRADICTED
    return Claim(statement, condition, measured, None, n, statistic, measured, None, None, None, verdict, note)


def rank_correlation_claim(
    statement: str,
    paper: float | str | None,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    expected: Direction,
    alpha: float = ALPHA,
    note: str = "",
) -> Claim:
    """The paper says ``y`` increases (``expected="greater"``) or decreases with ``x``. Spearman's rank
    correlation ``ρ`` (``scipy.stats.spearmanr``) with its two-sided p-value: exact over all ``n!`` rank
    permutations for ``n <= 8`` (the t approximation is badly wrong there: three points in order would give
    ``p = 0``), else from ``t = ρ √((n-2)/(1-ρ²))`` with ``df = n - 2``. Verdict as :func:`directional_claim`
    (``n < 3``: no verdict)."""
    xx = np.asarray(x, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if xx.shape != yy.shape or xx.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length, got shapes {xx.shape} and {yy.shape}")
    keep = np.isfinite(xx) & np.isfinite(yy)
    n = int(keep.sum())
    if n < MIN_SAMPLES:
        return no_verdict_claim(statement, paper, None, n, "Spearman rho", note)
    res = stats.spearmanr(xx[keep], yy[keep])
    rho, p = float(res.statistic), float(res.pvalue)
    if n <= EXACT_SPEARMAN_MAX_N:
        rx, ry = stats.rankdata(xx[keep]), stats.rankdata(yy[keep])
        perms = np.array(list(itertools.permutations(ry)))
        rhos = np.array([np.corrcoef(rx, q)[0, 1] for q in perms])
        p = float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))
    sign = 1.0 if expected == "greater" else -1.0
    verdict = (HOLDS if sign * rho > 0 else CONTRADICTED) if p < alpha else NOT_SIGNIFICANT
    route = "exact permutation" if n <= EXACT_SPEARMAN_MAX_N else f"t approximation, df = {n - 2}"
    why = f"Spearman rho = {rho:.3f}, two-sided p = {p:.3g} ({route})"
    return Claim(
        statement, paper, _rounded(rho), None, n, "Spearman rho", _rounded(rho), n - 2, _rounded(p),
        None, verdict, f"{why}; {note}" if note else why,
    )  # fmt: skip
