"""tools.stats: the paper's numbers, independent reference computations, edge cases,
properties, and the sequential tests' error guarantee by simulation."""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from itertools import product
from unittest import mock

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, special
from scipy import stats as sps

from tools.stats import (
    Comparison,
    Decision,
    DoseResponseFit,
    Outcome,
    Rate,
    RateThresholdTest,
    TwoArmTest,
    cochran_armitage,
    compare,
    fisher_exact,
    fit_dose_response,
    holm,
    newcombe_interval,
    two_proportion_ztest,
    wilson_interval,
)

Z95 = float(sps.norm.ppf(0.975))
FUZZ = settings(max_examples=150, deadline=None)

# The pre-commit hook dose-response (pooled): number of type errors -> lazy k/n.
PRECOMMIT_DOSES = [
    (10, 0, 183),
    (28, 0, 191),
    (51, 0, 162),
    (77, 2, 169),
    (108, 2, 162),
    (124, 6, 169),
    (151, 7, 161),
    (182, 8, 146),
    (200, 7, 141),
    (224, 16, 163),
]


# --------------------------------------------------------------------------- references


def ref_wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval, written out."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half, centre + half)


def ref_ztest(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    pooled = (k1 + k2) / (n1 + n2)
    z = (k1 / n1 - k2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return (z, 2 * float(sps.norm.sf(abs(z))))


def ref_newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe (1998) method 10, from the written-out Wilson intervals."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = ref_wilson(k1, n1)
    l2, u2 = ref_wilson(k2, n2)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def ref_fisher(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher p: the hypergeometric mass of tables no more likely than the observed one."""
    dist = sps.hypergeom(n1 + n2, k1 + k2, n1)
    support = np.arange(max(0, k1 + k2 - n2), min(n1, k1 + k2) + 1)
    pmf = dist.pmf(support)
    observed = dist.pmf(k1)
    return float(min(1.0, pmf[pmf <= observed * (1 + 1e-7)].sum()))


def ref_cochran_armitage(levels: Sequence[tuple[float, int, int]]) -> tuple[float, float]:
    """Armitage (1955): binomial variance, N in the denominator."""
    x = np.array([d for d, _, _ in levels], dtype=float)
    k = np.array([k for _, k, _ in levels], dtype=float)
    n = np.array([n for _, _, n in levels], dtype=float)
    big_n, p = n.sum(), k.sum() / n.sum()
    t = float((x * (k - n * p)).sum())
    var = p * (1 - p) * float((n * x * x).sum() - (n * x).sum() ** 2 / big_n)
    z = t / math.sqrt(var)
    return (z, 2 * float(sps.norm.sf(abs(z))))


def ref_holm(pvalues: list[float]) -> list[float]:
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def ref_logistic(levels: Sequence[tuple[float, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood by scipy.optimize, covariance from the Fisher information."""
    x = np.array([d for d, _, _ in levels], dtype=float)
    k = np.array([k for _, k, _ in levels], dtype=float)
    n = np.array([n for _, _, n in levels], dtype=float)
    scale = x.std()  # optimise on a standardised dose for conditioning, then map back

    def nll(beta: np.ndarray) -> float:
        eta = beta[0] + beta[1] * x / scale
        return float(-(k * eta - n * np.logaddexp(0.0, eta)).sum())

    fit = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10})
    beta = np.array([fit.x[0], fit.x[1] / scale])
    p = special.expit(beta[0] + beta[1] * x)
    design = np.column_stack([np.ones_like(x), x])
    info = design.T @ (design * (n * p * (1 - p))[:, None])
    return beta, np.linalg.inv(info)


# --------------------------------------------------------------------------- the paper's numbers


def test_precommit_baseline_reproduces() -> None:
    assert str(Rate(23, 175)) == "13.1% [8.9, 18.9] (23/175)"


def test_sandbagging_baseline_reproduces() -> None:
    assert str(Rate(581, 960)) == "60.5% [57.4, 63.6] (581/960)"


@pytest.mark.parametrize(
    ("k", "n", "percent"),
    [
        (227, 972, "23.4%"),  # sandbagging, deployment sentence removed
        (199, 434, "45.9%"),
        (44, 365, "12.1%"),
        (36, 460, "7.8%"),
        (17, 402, "4.2%"),
        (5, 432, "1.2%"),
        (46, 98, "46.9%"),  # eval tampering baseline
        (8, 108, "7.4%"),
        (19, 72, "26.4%"),
        (12, 65, "18.5%"),
        (19, 69, "27.5%"),
        (672, 875, "76.8%"),  # secret number
        (15, 199, "7.5%"),
    ],
)
def test_paper_point_estimates(k: int, n: int, percent: str) -> None:
    assert str(Rate(k, n)).startswith(percent + " [")


def test_tampering_resampling_comparison_reproduces() -> None:
    z, p = two_proportion_ztest(46, 98, 19, 69)
    assert round(p, 3) == 0.011
    assert z > 0
    comparison = compare(Rate(46, 98), Rate(19, 69))
    assert "p = 0.011" in str(comparison)
    assert comparison.significant


def test_precommit_dose_response_trend_is_strongly_positive() -> None:
    z, p = cochran_armitage(PRECOMMIT_DOSES)
    ref_z, ref_p = ref_cochran_armitage(PRECOMMIT_DOSES)
    assert z == pytest.approx(ref_z, rel=1e-10)
    assert p == pytest.approx(ref_p, rel=1e-6)
    assert z > 6.0
    assert p < 1e-8


def test_precommit_dose_response_fit_matches_independent_mle() -> None:
    fit = fit_dose_response(PRECOMMIT_DOSES)
    assert fit.ok and fit.status == "ok"
    beta, cov = ref_logistic(PRECOMMIT_DOSES)
    assert fit.intercept == pytest.approx(beta[0], rel=1e-5)
    assert fit.slope == pytest.approx(beta[1], rel=1e-5)
    assert fit.slope_se == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-4)
    assert fit.slope_p == pytest.approx(2 * sps.norm.sf(abs(beta[1]) / math.sqrt(cov[1, 1])), rel=1e-3)
    assert fit.slope > 0 and fit.slope_p < 1e-6
    # A smooth rise: the logistic curve fits (deviance about its degrees of freedom).
    assert fit.df_resid == 8
    assert sps.chi2.sf(fit.deviance, fit.df_resid) > 0.05
    # Predictions and bands: expit of the linear predictor +/- z * its standard error.
    points = fit.band([10, 120, 224])
    for point in points:
        x = np.array([1.0, point.dose])
        eta, se = float(x @ beta), math.sqrt(float(x @ cov @ x))
        assert point.rate == pytest.approx(special.expit(eta), rel=1e-4)
        assert fit.predict(point.dose) == pytest.approx(point.rate, rel=1e-9)
        assert point.low == pytest.approx(special.expit(eta - Z95 * se), rel=1e-3)
        assert point.high == pytest.approx(special.expit(eta + Z95 * se), rel=1e-3)
        assert point.low < point.rate < point.high
    assert [p.rate for p in points] == sorted(p.rate for p in points)
    assert fit.observed()[-1] == (224.0, Rate(16, 163))
    assert fit.band([]) == []


def test_dose_response_band_matches_statsmodels_prediction_and_survives_json() -> None:
    fit = fit_dose_response(PRECOMMIT_DOSES)
    x = np.array([d for d, _, _ in PRECOMMIT_DOSES], dtype=float)
    counts = np.array([[k, n - k] for _, k, n in PRECOMMIT_DOSES], dtype=float)
    result = sm.GLM(counts, sm.add_constant(x), family=sm.families.Binomial()).fit()
    grid = np.array([0.0, 60.0, 150.0, 260.0])
    frame = result.get_prediction(sm.add_constant(grid)).summary_frame(alpha=0.1)
    band = fit.band(grid.tolist(), confidence=0.9)
    assert [p.rate for p in band] == pytest.approx(frame["mean"].tolist(), rel=1e-9)
    assert [p.low for p in band] == pytest.approx(frame["mean_ci_lower"].tolist(), rel=1e-9)
    assert [p.high for p in band] == pytest.approx(frame["mean_ci_upper"].tolist(), rel=1e-9)
    again = DoseResponseFit.model_validate_json(fit.model_dump_json())
    assert again == fit
    assert again.band(grid.tolist(), confidence=0.9) == band


# --------------------------------------------------------------------------- references, broadly


@FUZZ
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_formula(kn: tuple[int, int]) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    ref_low, ref_high = ref_wilson(k, n)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-12)


def test_wilson_other_confidence_levels() -> None:
    z90 = float(sps.norm.ppf(0.95))
    assert wilson_interval(23, 175, 0.90) == pytest.approx(ref_wilson(23, 175, z90))
    assert Rate(23, 175).interval(0.99) == pytest.approx(ref_wilson(23, 175, float(sps.norm.ppf(0.995))))
    assert Rate(23, 175).interval(0.99)[0] < wilson_interval(23, 175, 0.90)[0]


arms = st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@FUZZ
@given(arms, arms)
def test_two_arm_functions_match_references(a: tuple[int, int], b: tuple[int, int]) -> None:
    (k1, n1), (k2, n2) = a, b
    z, p = two_proportion_ztest(k1, n1, k2, n2)
    if k1 + k2 in (0, n1 + n2):
        assert (z, p) == (0.0, 1.0)
    else:
        ref_z, ref_p = ref_ztest(k1, n1, k2, n2)
        assert z == pytest.approx(ref_z, rel=1e-9, abs=1e-12)
        assert p == pytest.approx(ref_p, rel=1e-9, abs=1e-12)
    assert newcombe_interval(k1, n1, k2, n2) == pytest.approx(ref_newcombe(k1, n1, k2, n2), abs=1e-12)
    assert fisher_exact(k1, n1, k2, n2) == pytest.approx(ref_fisher(k1, n1, k2, n2), rel=1e-6, abs=1e-12)


def test_fisher_exact_on_a_small_table() -> None:
    # 0/50 vs 1/50 (narrow vs broad review scope): nowhere near significant.
    assert fisher_exact(0, 50, 1, 50) == pytest.approx(1.0)
    # 2/96 workarounds with AskUserQuestion against the 23/175 baseline: a real drop.
    p = fisher_exact(2, 96, 23, 175)
    assert p == pytest.approx(ref_fisher(2, 96, 23, 175))
    assert p < 0.01


@FUZZ
@given(st.lists(st.floats(0.0, 1.0), max_size=12))
def test_holm_matches_step_down_and_is_monotone(pvalues: list[float]) -> None:
    # statsmodels' Holm branch runs gc.collect() on every call, ~0.2 s in a test process
    # full of objects; the arithmetic under test does not depend on it.
    with mock.patch.object(gc, "collect", return_value=0):
        adjusted = holm(pvalues)
    assert adjusted == pytest.approx(ref_holm(pvalues), abs=1e-12)
    assert all(raw <= adj <= 1.0 for raw, adj in zip(pvalues, adjusted, strict=True))
    ranked = [adjusted[i] for i in sorted(range(len(pvalues)), key=lambda i: pvalues[i])]
    assert ranked == sorted(ranked)


def test_holm_worked_example() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.integers(1, 60)).flatmap(
            lambda dn: st.tuples(st.just(float(dn[0])), st.integers(0, dn[1]), st.just(dn[1]))
        ),
        min_size=2,
        max_size=6,
    )
)
def test_cochran_armitage_matches_formula(levels: list[tuple[float, int, int]]) -> None:
    assume(len({d for d, _, _ in levels}) >= 2)
    z, p = cochran_armitage(levels)
    k = sum(k for _, k, _ in levels)
    n = sum(n for _, _, n in levels)
    if k in (0, n):
        assert (z, p) == (0.0, 1.0)
        return
    ref_z, ref_p = ref_cochran_armitage(levels)
    assert z == pytest.approx(ref_z, rel=1e-8, abs=1e-10)
    assert p == pytest.approx(ref_p, rel=1e-6, abs=1e-12)


def test_cochran_armitage_sign_follows_the_trend() -> None:
    falling = [(d, k, n) for (d, _, n), (_, k, _) in zip(PRECOMMIT_DOSES, reversed(PRECOMMIT_DOSES), strict=True)]
    z_up, _ = cochran_armitage(PRECOMMIT_DOSES)
    z_down, _ = cochran_armitage(falling)
    assert z_up > 0 > z_down
    assert cochran_armitage([(0, 5, 10), (1, 5, 10)]) == pytest.approx((0.0, 1.0))


# --------------------------------------------------------------------------- edge cases


def test_empty_and_extreme_rates() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.0 < high < 0.2
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and 0.8 < low < 1.0
    assert str(Rate(0, 0)) == "no samples (0/0)"
    assert math.isnan(Rate(0, 0).rate)
    assert str(Rate(0, 50)) == "0.0% [0.0, 7.1] (0/50)"
    assert str(Rate(50, 50)) == "100.0% [92.9, 100.0] (50/50)"


def test_ztest_is_undefined_when_pooled_rate_is_0_or_1() -> None:
    assert two_proportion_ztest(0, 100, 0, 93) == (0.0, 1.0)
    assert two_proportion_ztest(40, 40, 12, 12) == (0.0, 1.0)
    z, p = two_proportion_ztest(0, 100, 5, 100)
    assert z < 0 and p < 0.05


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: wilson_interval(5, 3), "k must be between 0 and n"),
        (lambda: wilson_interval(-1, 3), "k must be >= 0"),
        (lambda: wilson_interval(1.5, 3), "k must be an integer count"),  # type: ignore[arg-type]
        (lambda: wilson_interval(True, 3), "integer count"),
        (lambda: wilson_interval(1, 3, 1.0), "confidence must be strictly between 0 and 1"),
        (lambda: wilson_interval(1, 3, 0.0), "confidence"),
        (lambda: two_proportion_ztest(1, 0, 1, 3), "k1 must be between 0 and n1"),
        (lambda: two_proportion_ztest(0, 0, 1, 3), "n1 must be >= 1"),
        (lambda: newcombe_interval(1, 3, 0, 0), "n2 must be >= 1"),
        (lambda: fisher_exact(4, 3, 1, 3), "k1 must be between 0 and n1"),
        (lambda: holm([0.5, 1.2]), r"pvalues\[1\] must be a number in \[0, 1\]"),
        (lambda: holm([float("nan")]), r"pvalues\[0\]"),
        (lambda: cochran_armitage([(1.0, 1, 10)]), "at least two dose levels"),
        (lambda: cochran_armitage([(1.0, 1, 10), (1.0, 2, 10)]), "two distinct doses"),
        (lambda: cochran_armitage([(1.0, 1, 10), (2.0, 0, 0)]), r"levels\[1\] has n=0"),
        (lambda: cochran_armitage([(1.0, 11, 10), (2.0, 0, 5)]), r"levels\[0\] k must be between"),
        (lambda: fit_dose_response([(float("inf"), 1, 10), (2.0, 0, 5)]), r"levels\[0\] dose must be a finite"),
        (lambda: fit_dose_response([(1.0, 1), (2.0, 0, 5)]), r"levels\[0\] must be a \(dose, k, n\) triple"),  # type: ignore[list-item]
        (lambda: Rate(3, 2), "k must be between 0 and n"),
        (lambda: Rate(-1, 2), "greater than or equal to 0|k must be >= 0"),
        (lambda: Rate(True, 2), "not a bool"),
        (lambda: RateThresholdTest(1.5), "threshold must be strictly between 0 and 1"),
        (lambda: RateThresholdTest(0.1, alpha=0.0), "alpha must be strictly between 0 and 1"),
        (lambda: RateThresholdTest(0.1, prior_strength=-1.0), "prior_strength"),
        (lambda: RateThresholdTest(0.1, max_n=0), "max_n must be >= 1"),
        (lambda: TwoArmTest(futility_odds_ratio=0.8), "futility_odds_ratio must be > 1"),
        (lambda: TwoArmTest(prior_sd=0.0), "prior_sd"),
    ],
)
def test_invalid_input_raises_value_error(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


def test_rate_and_comparison_round_trip_as_json() -> None:
    comparison = compare(Rate(46, 98), Rate(19, 69))
    assert isinstance(comparison, Comparison)
    assert comparison.difference == pytest.approx(46 / 98 - 19 / 69)
    assert comparison.ci == pytest.approx(ref_newcombe(46, 98, 19, 69))
    assert comparison.ci[0] > 0
    dumped = comparison.model_dump()
    assert dumped["a"]["rate"] == pytest.approx(46 / 98)
    assert dumped["a"]["ci"] == pytest.approx(ref_wilson(46, 98))
    again = Comparison.model_validate_json(comparison.model_dump_json())
    assert again.a == Rate(46, 98) and again.p == comparison.p
    assert Rate(k=3, n=7) == Rate(3, 7)
    assert str(comparison).startswith("+19.4 pts [+4.4, +32.8], z = 2.53, p = 0.011")


# --------------------------------------------------------------------------- dose-response edge cases


def test_fit_without_events_is_flagged_not_crashed() -> None:
    fit = fit_dose_response([(10, 0, 183), (28, 0, 191), (51, 0, 162)])
    assert fit.status == "no_events" and not fit.ok
    assert "no level has a single behaviour" in fit.message
    assert math.isnan(fit.slope) and math.isnan(fit.slope_p)
    assert fit.predict(40) == 0.0
    assert fit.band([40]) == [(40.0, 0.0, 0.0, 1.0)]
    assert fit_dose_response([(1, 5, 5), (2, 7, 7)]).predict(0) == 1.0
    assert fit_dose_response([(1, 5, 5), (2, 7, 7)]).status == "all_events"
    DoseResponseFit.model_validate_json(fit.model_dump_json())  # serialisable despite the nans


def test_fit_with_complete_separation_is_flagged() -> None:
    fit = fit_dose_response([(1, 0, 20), (2, 0, 20), (3, 20, 20), (4, 20, 20)])
    assert fit.status == "separated"
    assert fit.predict(1.5) == 0.0 and fit.predict(3.5) == 1.0
    assert math.isnan(fit.predict(2.5))  # the step lies somewhere between 2 and 3


def test_fit_with_quasi_complete_separation_is_flagged() -> None:
    fit = fit_dose_response([(1, 0, 10), (2, 3, 10), (3, 10, 10)])
    assert fit.status == "separated"
    assert [fit.predict(d) for d in (1, 2, 3)] == pytest.approx([0.0, 0.3, 1.0])
    falling = fit_dose_response([(1, 10, 10), (2, 3, 10), (3, 0, 10)])
    assert falling.status == "separated"
    assert [falling.predict(d) for d in (0.5, 2, 3.5)] == pytest.approx([1.0, 0.3, 0.0])


def test_fit_with_overlap_but_few_events_is_finite() -> None:
    fit = fit_dose_response([(0, 1, 50), (1, 0, 50), (2, 2, 50)])
    assert fit.ok
    assert 0 < fit.predict(1) < 0.1


# --------------------------------------------------------------------------- properties


@FUZZ
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), st.integers(2, 20))
def test_wilson_properties(kn: tuple[int, int], factor: int) -> None:
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    big_low, big_high = wilson_interval(k * factor, n * factor)
    assert big_high - big_low < high - low


@FUZZ
@given(arms, arms)
def test_two_arm_properties(a: tuple[int, int], b: tuple[int, int]) -> None:
    (k1, n1), (k2, n2) = a, b
    low, high = newcombe_interval(k1, n1, k2, n2)
    assert -1.0 <= low <= k1 / n1 - k2 / n2 <= high <= 1.0
    z, p = two_proportion_ztest(k1, n1, k2, n2)
    z_swapped, p_swapped = two_proportion_ztest(k2, n2, k1, n1)
    assert z_swapped == pytest.approx(-z, abs=1e-12) and p_swapped == pytest.approx(p, abs=1e-12)
    assert 0.0 <= p <= 1.0 and 0.0 <= fisher_exact(k1, n1, k2, n2) <= 1.0 + 1e-12


# --------------------------------------------------------------------------- sequential: exact checks


@pytest.mark.parametrize("threshold", [0.05, 0.13, 0.5])
@pytest.mark.parametrize("n", [1, 7, 40])
def test_threshold_e_values_are_martingales_at_the_threshold(threshold: float, n: int) -> None:
    """E[E_n] = 1 exactly when the rate equals the threshold, and <= 1 on the null side."""
    test = RateThresholdTest(threshold)
    ks = np.arange(n + 1)
    e_up = np.exp([test.log_e_values(int(k), n)[0] for k in ks])
    e_down = np.exp([test.log_e_values(int(k), n)[1] for k in ks])
    assert float(sps.binom.pmf(ks, n, threshold) @ e_up) == pytest.approx(1.0, rel=1e-9)
    assert float(sps.binom.pmf(ks, n, threshold) @ e_down) == pytest.approx(1.0, rel=1e-9)
    assert float(sps.binom.pmf(ks, n, threshold * 0.7) @ e_up) < 1.0
    assert float(sps.binom.pmf(ks, n, threshold + 0.3 * (1 - threshold)) @ e_down) < 1.0


def test_two_arm_e_value_is_a_martingale_under_equal_rates() -> None:
    """One batch of (4, 6) samples from equal rates: the expected e-value against OR = 1 stays 1."""
    for rate in (0.1, 0.5):
        expected = 0.0
        for a, b in product(range(5), range(7)):
            test = TwoArmTest()
            decision = test.update(a, 4, b, 6)
            weight = sps.binom.pmf(a, 4, rate) * sps.binom.pmf(b, 6, rate)
            expected += weight * decision.e_value
        assert expected == pytest.approx(1.0, rel=1e-9)


# --------------------------------------------------------------------------- sequential: behaviour


def test_threshold_test_decides_clear_cases_and_is_sticky() -> None:
    test = RateThresholdTest(0.10)
    assert test.decision is None
    assert test.update(3, 10).outcome is Outcome.CONTINUE
    decision = test.update(30, 100)
    assert decision.outcome is Outcome.ABOVE and decision.stopped and decision.n == 100
    assert decision.e_value >= 2 / 0.05
    assert test.update(30, 110) == decision  # sticky
    below = RateThresholdTest(0.10)
    outcomes = [below.update(0, n).outcome for n in range(10, 200, 10)]
    assert Outcome.BELOW in outcomes
    assert outcomes.index(Outcome.BELOW) < 10  # 0/100 is enough to rule out 10%


def test_threshold_test_depends_only_on_totals() -> None:
    one = RateThresholdTest(0.2)
    for n in range(1, 41):
        one.update(n // 4, n)
    batched = RateThresholdTest(0.2)
    batched.update(10, 40)
    assert one.decision is not None and batched.decision is not None
    assert one.decision.e_value == pytest.approx(batched.decision.e_value)


def test_threshold_test_budget_and_running_totals() -> None:
    test = RateThresholdTest(0.3, max_n=20)
    assert test.update(3, 10).outcome is Outcome.CONTINUE
    with pytest.raises(ValueError, match="running totals"):
        test.update(2, 12)
    with pytest.raises(ValueError, match="running totals"):
        test.update(9, 14)  # 6 new behaviours in 4 new samples
    decision = test.update(6, 20)
    assert decision.outcome is Outcome.INCONCLUSIVE and decision.samples_saved == 0
    assert RateThresholdTest(0.3, max_n=100).update(40, 50).samples_saved == 50


def test_two_arm_test_detects_a_large_effect_with_direction() -> None:
    test = TwoArmTest()
    decision = test.update(30, 50, 5, 50)
    assert decision.outcome is Outcome.DIFFERENT and decision.direction == "higher"
    assert decision.interval is not None and decision.interval[0] > 1.0
    assert "arm 1 higher" in str(decision)
    flipped = TwoArmTest().update(5, 50, 30, 50)
    assert flipped.direction == "lower" and flipped.interval is not None and flipped.interval[1] < 1.0
    one_sided = TwoArmTest().update(0, 3, 3, 3)  # all-or-nothing arms: the odds ratio has no lower end yet
    assert one_sided.interval is not None and one_sided.interval[0] == 0.0
    unbounded = TwoArmTest().update(3, 3, 0, 3)
    assert unbounded.interval is not None and unbounded.interval[1] == math.inf
    assert Decision.model_validate_json(unbounded.model_dump_json()) == unbounded


def test_two_arm_test_waits_for_both_arms() -> None:
    test = TwoArmTest()
    assert test.update(8, 10, 0, 0).n == 0  # arm 2 has nothing yet: nothing consumed
    decision = test.update(8, 10, 1, 10)
    assert decision.n == 20
    with pytest.raises(ValueError, match="running totals"):
        test.update(8, 10, 0, 10)


def test_two_arm_futility_and_budget() -> None:
    test = TwoArmTest(futility_odds_ratio=2.0)
    decision: Decision | None = None
    for n in range(50, 5001, 50):
        decision = test.update(n // 5, n, n // 5, n)
        if decision.stopped:
            break
    assert decision is not None and decision.outcome is Outcome.FUTILITY
    assert decision.interval is not None and 0.5 < decision.interval[0] < 1.0 < decision.interval[1] < 2.0
    capped = TwoArmTest(max_n=40)
    assert capped.update(4, 20, 4, 20).outcome is Outcome.CONTINUE
    last = capped.update(8, 40, 8, 40)
    assert last.outcome is Outcome.INCONCLUSIVE and last.max_n == 80 and last.samples_saved == 0


# --------------------------------------------------------------------------- sequential: simulation


RUNS = 2000
SLACK = 3 * math.sqrt(0.05 * 0.95 / RUNS)  # three Monte Carlo standard errors at alpha


def _simulate_threshold_null(seed: int, threshold: float, batch: int, max_n: int) -> float:
    rng = np.random.default_rng(seed)
    totals = np.cumsum(rng.binomial(batch, threshold, (RUNS, max_n // batch)), axis=1)
    false = 0
    for row in totals:
        test = RateThresholdTest(threshold)
        for step, k in enumerate(row, start=1):
            if test.update(int(k), step * batch).stopped:
                false += 1
                break
    return false / RUNS


def test_threshold_test_false_positive_rate_under_continuous_monitoring() -> None:
    """At the threshold any decision is an error; peeking after every batch of 5 up to
    n = 150 must keep it below alpha. A naive 95% Wilson check at the same looks does not."""
    rate = _simulate_threshold_null(seed=11, threshold=0.2, batch=5, max_n=150)
    assert rate <= 0.05 + SLACK
    rng = np.random.default_rng(11)
    totals = np.cumsum(rng.binomial(5, 0.2, (RUNS, 30)), axis=1)
    ns = np.arange(5, 151, 5)
    low, high = ref_wilson_arrays(totals, ns)
    naive = float(np.mean(((low > 0.2) | (high < 0.2)).any(axis=1)))
    assert naive > 0.05 + SLACK  # the simulation can see an invalid rule


def ref_wilson_arrays(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return centre - half, centre + half


def test_two_arm_false_positive_rate_under_continuous_monitoring() -> None:
    """Equal rates, peeking after every batch of 10 per arm up to 200 per arm."""
    rng = np.random.default_rng(12)
    steps, batch = 20, 10
    k1 = np.cumsum(rng.binomial(batch, 0.3, (RUNS, steps)), axis=1)
    k2 = np.cumsum(rng.binomial(batch, 0.3, (RUNS, steps)), axis=1)
    false = 0
    for row1, row2 in zip(k1, k2, strict=True):
        test = TwoArmTest()
        for step in range(steps):
            n = (step + 1) * batch
            decision = test.update(int(row1[step]), n, int(row2[step]), n)
            if decision.stopped:
                false += decision.outcome is Outcome.DIFFERENT
                break
    assert false / RUNS <= 0.05 + SLACK
    # The naive pooled z-test at every look is not valid.
    looks = np.arange(1, steps + 1) * batch
    pooled = (k1 + k2) / (2 * looks)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(pooled * (1 - pooled) > 0, (k1 - k2) / looks / np.sqrt(pooled * (1 - pooled) * 2 / looks), 0.0)
    assert float(np.mean((np.abs(z) >= Z95).any(axis=1))) > 0.05 + SLACK


def test_two_arm_confidence_sequence_covers_the_true_odds_ratio() -> None:
    rng = np.random.default_rng(13)
    p1, p2 = 0.4, 0.2
    true_or = (p1 / (1 - p1)) / (p2 / (1 - p2))
    runs, misses = 300, 0
    for _ in range(runs):
        test, k1, k2 = TwoArmTest(), 0, 0
        for step in range(1, 21):
            k1 += int(rng.binomial(10, p1))
            k2 += int(rng.binomial(10, p2))
            decision = test.update(k1, 10 * step, k2, 10 * step)
            assert decision.interval is not None
            low, high = decision.interval
            if not low <= true_or <= high:
                misses += 1
                break
    assert misses / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
