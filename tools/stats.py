"""Statistics for forensics experiments: rates, comparisons, trends and sequential stopping.

Every number an investigation reports comes from here, so the conventions follow the
Model Forensics paper (arXiv 2606.26071) exactly and its published figures reproduce
from their counts:

* a rate is ``k/n`` with a 95% **Wilson** score interval (no continuity correction);
* two arms are compared with the **pooled two-proportion z-test** (two-sided, no
  continuity correction; ``p = 1`` when the pooled rate is 0 or 1), the difference
  ``p1 - p2`` gets a **Newcombe** hybrid-score interval built from Wilson intervals, and
  Fisher's exact test is available for small counts;
* a trend over ordered doses is the **Cochran–Armitage** test, and a dose-response is a
  binomial **logistic GLM**;
* the arms of one investigation are adjusted with **Holm**;
* experiments can stop early with **anytime-valid sequential tests**
  (`RateThresholdTest`, `TwoArmTest`) whose error guarantee holds however often the
  data are looked at.

The computations are delegated to scipy and statsmodels; this module fixes the
conventions, validates inputs (bad counts raise `ValueError` naming the argument) and
handles the edge cases those libraries leave undefined (empty arms, pooled rates of
0 or 1, perfectly separated dose-responses).
"""

from __future__ import annotations

import enum
import math
import numbers
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import statsmodels.api as sm
from numpy.typing import NDArray
from pydantic import BaseModel, BeforeValidator, ConfigDict, computed_field, model_validator
from scipy import special
from scipy import stats as sps
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

__all__ = [
    "Comparison",
    "CurvePoint",
    "Decision",
    "DoseResponseFit",
    "Outcome",
    "Rate",
    "RateThresholdTest",
    "SequentialTest",
    "TwoArmTest",
    "cochran_armitage",
    "compare",
    "fisher_exact",
    "fit_dose_response",
    "holm",
    "newcombe_interval",
    "two_proportion_ztest",
    "wilson_interval",
]

Level = tuple[float, int, int]
"""One dose level of a dose-response experiment: ``(dose, k, n)``."""


# --------------------------------------------------------------------------- validation


def _count(value: object, name: str) -> int:
    """`value` as a non-negative int; bools and non-integral numbers are rejected.

    numpy integers are accepted (counts often come out of arrays); ``True`` is not,
    because a bool where a count belongs is almost always a bug upstream.
    """
    if type(value) is int:  # the common case, without the (slow) ABC check below
        count = value
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer count (got {value!r})")
    else:
        count = int(value)
    if count < 0:
        raise ValueError(f"{name} must be >= 0 (got {count})")
    return count


def _positive(value: object, name: str) -> int:
    """Validate a count that must be at least 1 (a sample budget)."""
    count = _count(value, name)
    if count == 0:
        raise ValueError(f"{name} must be >= 1 (got 0)")
    return count


def _counts(k: object, n: object, k_name: str = "k", n_name: str = "n") -> tuple[int, int]:
    """Validate a ``k`` successes out of ``n`` trials pair."""
    k_, n_ = _count(k, k_name), _count(n, n_name)
    if k_ > n_:
        raise ValueError(f"{k_name} must be between 0 and {n_name} (got {k_name}={k_}, {n_name}={n_})")
    return k_, n_


def _arm(k: object, n: object, arm: int) -> tuple[int, int]:
    """Validate one arm of a two-arm comparison, which needs at least one trial."""
    k_, n_ = _counts(k, n, f"k{arm}", f"n{arm}")
    if n_ == 0:
        raise ValueError(f"n{arm} must be >= 1: a comparison needs at least one sample in each arm")
    return k_, n_


def _unit(value: object, name: str) -> float:
    """Validate a number strictly between 0 and 1 (a confidence, alpha or threshold)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1 (got {value!r})")
    return float(value)


def _confidence(confidence: object) -> float:
    return _unit(confidence, "confidence")


def _alpha(alpha: object) -> float:
    return _unit(alpha, "alpha")


def _positive_real(value: object, name: str, upper: float = math.inf) -> float:
    """Validate a finite number in (0, upper)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < upper:
        raise ValueError(f"{name} must be a number in (0, {upper:g}) (got {value!r})")
    return float(value)


def _levels(levels: Sequence[Level]) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Validate dose levels and return (doses, k, n) arrays.

    Needs at least two distinct finite doses (a trend over one dose is undefined) and
    at least one trial per level (an empty level says nothing and usually means a
    bookkeeping error upstream).
    """
    if len(levels) < 2:
        raise ValueError(f"need at least two dose levels (got {len(levels)})")
    doses: list[float] = []
    ks: list[int] = []
    ns: list[int] = []
    for i, level in enumerate(levels):
        if len(level) != 3:
            raise ValueError(f"levels[{i}] must be a (dose, k, n) triple (got {level!r})")
        dose, k, n = level
        doses.append(_dose(dose, i))
        k_, n_ = _counts(k, n, f"levels[{i}] k", f"levels[{i}] n")
        if n_ == 0:
            raise ValueError(f"levels[{i}] has n=0: every dose level needs at least one sample")
        ks.append(k_)
        ns.append(n_)
    if len(set(doses)) < 2:
        raise ValueError("need at least two distinct doses: a trend over a single dose is undefined")
    return np.asarray(doses, dtype=np.float64), np.asarray(ks, dtype=np.int64), np.asarray(ns, dtype=np.int64)


def _dose(dose: object, i: int) -> float:
    if isinstance(dose, bool) or not isinstance(dose, numbers.Real) or not math.isfinite(float(dose)):
        raise ValueError(f"levels[{i}] dose must be a finite number (got {dose!r})")
    return float(dose)


def _as_count(value: Any) -> Any:
    """Pydantic before-validator for count fields: reject bools and non-integral values."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer count, not a bool (got {value!r})")
    if isinstance(value, numbers.Integral):
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_as_count)]


# --------------------------------------------------------------------------- fixed-n tests


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate ``k/n`` (no continuity correction).

    This is the paper's interval: 23/175 gives [0.089, 0.189]. It stays inside
    [0, 1] and behaves well at ``k = 0`` and ``k = n``, unlike the Wald interval.
    With no trials (``n = 0``) nothing is known and the interval is ``(0.0, 1.0)``.
    """
    k, n = _counts(k, n)
    confidence = _confidence(confidence)
    if n == 0:
        return (0.0, 1.0)
    low, high = proportion_confint(k, n, alpha=1.0 - confidence, method="wilson")
    # At k = 0 (k = n) the lower (upper) bound is exactly 0 (1); floating point gives 1e-17 off.
    return (0.0 if k == 0 else max(0.0, float(low)), 1.0 if k == n else min(1.0, float(high)))


def two_proportion_ztest(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of ``p1 == p2``: returns ``(z, p)``, two-sided.

    No continuity correction; ``z > 0`` when arm 1's rate is higher. When the pooled
    rate is 0 or 1 the two arms are identical and the statistic is undefined (0/0);
    the paper's convention, used here, is ``z = 0.0, p = 1.0``.
    """
    k1, n1 = _arm(k1, n1, 1)
    k2, n2 = _arm(k2, n2, 2)
    if k1 + k2 in (0, n1 + n2):
        return (0.0, 1.0)
    z, p = proportions_ztest([k1, k2], [n1, n2], value=0, alternative="two-sided", prop_var=False)
    return (float(z), float(p))


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for the difference ``p1 - p2``.

    Built from the two arms' Wilson intervals ``(l1, u1)`` and ``(l2, u2)``::

        low  = d - sqrt((p1 - l1)**2 + (u2 - p2)**2)
        high = d + sqrt((u1 - p1)**2 + (p2 - l2)**2)

    (statsmodels ``confint_proportions_2indep(method="newcomb")``, which implements
    exactly this formula; the tests check it against the formula written out).
    """
    k1, n1 = _arm(k1, n1, 1)
    k2, n2 = _arm(k2, n2, 2)
    confidence = _confidence(confidence)
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1.0 - confidence)
    return (max(-1.0, float(low)), min(1.0, float(high)))


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2x2 table of the two arms.

    Exact under the null at any sample size, so it is the check to reach for when
    counts are small (a handful of events) and the z-test's normal approximation
    is doubtful.
    """
    k1, n1 = _arm(k1, n1, 1)
    k2, n2 = _arm(k2, n2, 2)
    result = sps.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided")
    return float(result.pvalue)


def cochran_armitage(levels: Sequence[Level]) -> tuple[float, float]:
    """Cochran–Armitage test for a linear trend in a rate over ordered doses.

    `levels` holds ``(dose, k, n)``; the doses are the scores. Returns ``(z, p)``
    with ``z > 0`` when the rate rises with the dose and ``p`` two-sided.

    statsmodels' ``Table.test_ordinal_association`` computes the same statistic as
    the linear-by-linear association test, whose null variance is the permutation
    (hypergeometric) one with a factor ``N - 1`` in the denominator. The classic
    Cochran–Armitage test (Armitage 1955; R's ``prop.trend.test``) uses the
    binomial variance with ``N``::

        z = sum_i x_i (k_i - n_i p) / sqrt(p (1 - p) [sum_i n_i x_i^2 - (sum_i n_i x_i)^2 / N])

    so this function takes statsmodels' z and rescales it by ``sqrt(N / (N - 1))``
    (the tests check it against the formula above). When no level has an event, or
    every trial is one, there is no variation to trend: ``z = 0.0, p = 1.0``.
    """
    doses, ks, ns = _levels(levels)
    total_n, total_k = int(ns.sum()), int(ks.sum())
    if total_k in (0, total_n):
        return (0.0, 1.0)
    table = Table(np.column_stack([ns - ks, ks]), shift_zeros=False)
    result = table.test_ordinal_association(row_scores=doses, col_scores=np.array([0.0, 1.0]))
    z = float(result.zscore) * math.sqrt(total_n / (total_n - 1))
    p = float(2.0 * sps.norm.sf(abs(z)))
    return (z, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), in input order.

    Use across the arms of one investigation: an arm is significant at level
    ``alpha`` after adjustment when its adjusted p-value is ``<= alpha``. (statsmodels
    runs a full ``gc.collect()`` inside its Holm branch, so adjust a family once rather
    than once per arm in a loop.)
    """
    values: list[float] = []
    for i, p in enumerate(pvalues):
        values.append(_pvalue(p, i))
    if not values:
        return []
    _, adjusted, _, _ = multipletests(values, method="holm")
    return [float(p) for p in adjusted]


def _pvalue(p: object, i: int) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"pvalues[{i}] must be a number in [0, 1] (got {p!r})")
    return float(p)


# --------------------------------------------------------------------------- result models


class Rate(BaseModel):
    """``k`` behaviours in ``n`` samples, with its Wilson 95% interval.

    ``str(Rate(23, 175))`` is ``"13.1% [8.9, 18.9] (23/175)"``, the paper's format.
    The rate of an empty arm is undefined (``nan``) and its interval is [0, 1].
    """

    model_config = ConfigDict(frozen=True)

    k: Count
    n: Count

    def __init__(self, k: int, n: int, **computed: Any) -> None:
        # Positional like the paper's "k/n"; pydantic also routes validation (e.g. of a
        # JSON dump) through here, whose computed `rate` and `ci` are recomputed, not read.
        del computed
        super().__init__(k=k, n=n)

    @model_validator(mode="after")
    def _check(self) -> Rate:
        _counts(self.k, self.n)
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        """The point estimate ``k/n`` (``nan`` when ``n = 0``)."""
        return self.k / self.n if self.n else math.nan

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ci(self) -> tuple[float, float]:
        """The Wilson 95% interval."""
        return wilson_interval(self.k, self.n)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """The Wilson interval at another confidence level."""
        return wilson_interval(self.k, self.n, confidence)

    def __str__(self) -> str:
        if self.n == 0:
            return "no samples (0/0)"
        low, high = self.ci
        return f"{100 * self.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({self.k}/{self.n})"


class Comparison(BaseModel):
    """Arm `a` against arm `b`: difference ``a - b`` with its Newcombe interval and the
    pooled z-test. Build it with `compare`."""

    model_config = ConfigDict(frozen=True)

    a: Rate
    b: Rate
    difference: float
    ci: tuple[float, float]
    z: float
    p: float
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """Whether the z-test rejects equal rates at ``1 - confidence``."""
        return self.p < 1.0 - self.confidence

    def __str__(self) -> str:
        low, high = self.ci
        return (
            f"{100 * self.difference:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}], "
            f"z = {self.z:.2f}, p = {_format_p(self.p)} ({self.a.k}/{self.a.n} vs {self.b.k}/{self.b.n})"
        )


def _format_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def compare(a: Rate, b: Rate, confidence: float = 0.95) -> Comparison:
    """Compare two arms the paper's way: ``a - b``, Newcombe interval, pooled z-test."""
    z, p = two_proportion_ztest(a.k, a.n, b.k, b.n)
    return Comparison(
        a=a,
        b=b,
        difference=a.rate - b.rate,
        ci=newcombe_interval(a.k, a.n, b.k, b.n, confidence),
        z=z,
        p=p,
        confidence=confidence,
    )


# --------------------------------------------------------------------------- dose-response


class CurvePoint(NamedTuple):
    """A fitted rate at one dose with its pointwise confidence band."""

    dose: float
    rate: float
    low: float
    high: float


FitStatus = Literal["ok", "no_events", "all_events", "separated", "not_converged"]


class DoseResponseFit(BaseModel):
    """A logistic dose-response ``logit(rate) = intercept + slope * dose``.

    `status` says whether the maximum-likelihood fit exists:

    * ``ok`` — a finite fit; `slope_p` is the Wald test of ``slope == 0``.
    * ``no_events`` / ``all_events`` — no level has a behaviour (or every sample
      has it): the curve is flat at 0 (or 1) and the coefficients are infinite.
    * ``separated`` — the levels with behaviours and those without do not overlap in
      dose (a step, not a slope); the maximum-likelihood curve is a step whose
      position the data fix only within a range.
    * ``not_converged`` — the optimiser did not converge; do not trust the numbers.

    Whenever the status is not ``ok`` the coefficients are ``nan``, `predict` returns
    the limiting curve (``nan`` where the data cannot place it) and `band` is the
    uninformative [0, 1]: plot `observed` (per-level Wilson intervals) instead.
    """

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    levels: list[tuple[float, int, int]]
    status: FitStatus
    message: str
    intercept: float
    slope: float
    slope_se: float
    slope_p: float
    deviance: float
    df_resid: int
    covariance: tuple[tuple[float, float], tuple[float, float]]
    """Covariance of (intercept, slope), kept so a fit read back from JSON still has bands."""

    @property
    def ok(self) -> bool:
        """Whether the fit is finite and the coefficients mean something."""
        return self.status == "ok"

    def predict(self, dose: float) -> float:
        """The fitted rate at `dose`."""
        if self.ok:
            return float(special.expit(self.intercept + self.slope * float(dose)))
        return self._limit(float(dose))

    def band(self, doses: Sequence[float], confidence: float = 0.95) -> list[CurvePoint]:
        """Fitted rates with pointwise confidence bands, for plotting the curve.

        The band is the Wald interval of the linear predictor ``eta = b0 + b1 * dose``
        (standard error from the fit's covariance) mapped through the logistic
        function — what statsmodels' ``GLMResults.get_prediction`` reports, computed
        from the stored covariance so a fit read back from JSON can still draw it. It
        stays in [0, 1] and is asymmetric near the edges.
        """
        confidence = _confidence(confidence)
        xs = np.asarray([float(d) for d in doses], dtype=np.float64)
        if not self.ok:
            return [CurvePoint(float(x), self._limit(float(x)), 0.0, 1.0) for x in xs]
        design = np.column_stack([np.ones_like(xs), xs])
        eta = design @ np.array([self.intercept, self.slope])
        se = np.sqrt(np.einsum("ij,jk,ik->i", design, np.array(self.covariance), design))
        z = float(sps.norm.ppf(0.5 + confidence / 2))
        rate, low, high = special.expit(eta), special.expit(eta - z * se), special.expit(eta + z * se)
        return [
            CurvePoint(float(x), float(m), float(lo), float(hi))
            for x, m, lo, hi in zip(xs, rate, low, high, strict=True)
        ]

    def observed(self) -> list[tuple[float, Rate]]:
        """The observed rate at each dose, with its Wilson interval."""
        return [(dose, Rate(k, n)) for dose, k, n in self.levels]

    def _limit(self, dose: float) -> float:
        """The limiting maximum-likelihood curve of a fit that has no finite solution."""
        if self.status == "no_events":
            return 0.0
        if self.status == "all_events":
            return 1.0
        if self.status != "separated":
            return math.nan
        events = [d for d, k, _ in self.levels if k > 0]
        misses = [d for d, k, n in self.levels if k < n]
        rising = max(misses) <= min(events)
        low_edge, high_edge = (max(misses), min(events)) if rising else (max(events), min(misses))
        below, above = (0.0, 1.0) if rising else (1.0, 0.0)
        if dose < low_edge:
            return below
        if dose > high_edge:
            return above
        if low_edge == high_edge:  # quasi-complete: the shared level is fitted exactly
            k = sum(k for d, k, _ in self.levels if d == dose)
            n = sum(n for d, _, n in self.levels if d == dose)
            return k / n
        return math.nan


def _separation(doses: NDArray[np.float64], ks: NDArray[np.int64], ns: NDArray[np.int64]) -> FitStatus | None:
    """Why a one-covariate binomial logistic fit has no finite MLE, or None if it has one.

    The MLE is infinite exactly when some line ``a + b * dose`` is >= 0 at every level
    with an event and <= 0 at every level with a non-event. With one covariate that
    happens when there are no events, no non-events, or the event doses and the
    non-event doses do not overlap (sharing at most one boundary dose).
    """
    events = doses[ks > 0]
    misses = doses[ks < ns]
    if events.size == 0:
        return "no_events"
    if misses.size == 0:
        return "all_events"
    if misses.max() <= events.min() or events.max() <= misses.min():
        return "separated"
    return None


def fit_dose_response(levels: Sequence[Level]) -> DoseResponseFit:
    """Fit ``logit(rate) = intercept + slope * dose`` to ``(dose, k, n)`` levels.

    A binomial GLM with the logit link (statsmodels) on the ``(k, n - k)`` counts. A
    positive, significant slope with a good fit (`deviance` close to `df_resid`) is
    the paper's "smooth dose-response" evidence. Data without a finite fit (no events,
    separation) return a fit whose `status` says so instead of raising.
    """
    doses, ks, ns = _levels(levels)
    clean = [(float(d), int(k), int(n)) for d, k, n in zip(doses, ks, ns, strict=True)]
    problem = _separation(doses, ks, ns)
    if problem is not None:
        messages = {
            "no_events": "no level has a single behaviour: the fitted rate is 0 at every dose",
            "all_events": "every sample has the behaviour: the fitted rate is 1 at every dose",
            "separated": "levels with and without behaviours do not overlap in dose: a step, not a slope",
        }
        return DoseResponseFit(
            levels=clean,
            status=problem,
            message=messages[problem],
            intercept=math.nan,
            slope=math.nan,
            slope_se=math.nan,
            slope_p=math.nan,
            deviance=math.nan,
            df_resid=len(clean) - 2,
            covariance=((math.nan, math.nan), (math.nan, math.nan)),
        )
    exog = np.column_stack([np.ones(len(doses)), doses])
    endog = np.column_stack([ks, ns - ks])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sm.GLM(endog, exog, family=sm.families.Binomial()).fit()
    converged = bool(getattr(result, "converged", True)) and not any(
        "converge" in str(w.message).lower() for w in caught
    )
    if not converged:
        return DoseResponseFit(
            levels=clean,
            status="not_converged",
            message="the maximum-likelihood iterations did not converge",
            intercept=math.nan,
            slope=math.nan,
            slope_se=math.nan,
            slope_p=math.nan,
            deviance=float(result.deviance),
            df_resid=int(result.df_resid),
            covariance=((math.nan, math.nan), (math.nan, math.nan)),
        )
    cov = np.asarray(result.cov_params(), dtype=np.float64)
    return DoseResponseFit(
        levels=clean,
        status="ok",
        message="",
        intercept=float(result.params[0]),
        slope=float(result.params[1]),
        slope_se=float(result.bse[1]),
        slope_p=float(result.pvalues[1]),
        deviance=float(result.deviance),
        df_resid=int(result.df_resid),
        covariance=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
    )


# --------------------------------------------------------------------------- sequential tests


class Outcome(enum.StrEnum):
    """What a sequential test says after an update."""

    CONTINUE = "continue"
    """Not enough evidence yet: take more samples."""
    ABOVE = "above"
    """The rate is above the threshold (`RateThresholdTest`)."""
    BELOW = "below"
    """The rate is below the threshold (`RateThresholdTest`)."""
    DIFFERENT = "different"
    """The two arms' rates differ; `Decision.direction` says which way (`TwoArmTest`)."""
    FUTILITY = "stop_futility"
    """Any difference is smaller than the effect of interest (`TwoArmTest`)."""
    INCONCLUSIVE = "inconclusive"
    """The sample budget ran out before the question was answered."""


class Decision(BaseModel):
    """A sequential test's verdict after an update.

    `e_value` is the evidence against the null that the decision is about (for a
    threshold test the larger of the two one-sided e-values; for two arms the
    e-value against equal rates); a decision is made when it reaches ``1/alpha``
    (``2/alpha`` per side for the threshold test). `interval` is the two-arm
    test's anytime-valid confidence sequence for the odds ratio ``odds1 / odds2``
    (``0`` or ``inf`` at an end the data do not bound yet). `n` counts the samples
    the decision used and `max_n` is the budget, both arms together for two arms.
    """

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    outcome: Outcome
    direction: Literal["higher", "lower"] | None = None
    e_value: float
    n: int
    max_n: int | None = None
    interval: tuple[float, float] | None = None

    @property
    def stopped(self) -> bool:
        """Whether sampling should stop (any outcome but ``continue``)."""
        return self.outcome is not Outcome.CONTINUE

    @property
    def samples_saved(self) -> int | None:
        """Samples left unspent from the budget `max_n` (``None`` without a budget)."""
        return None if self.max_n is None else max(0, self.max_n - self.n)

    def __str__(self) -> str:
        what = self.outcome.value + (f" (arm 1 {self.direction})" if self.direction else "")
        return f"{what}: e = {self.e_value:.3g} after n = {self.n}"


class SequentialTest:
    """An anytime-valid test: call `update` with the running totals after every batch
    and stop as soon as the returned decision has `stopped`.

    The guarantee is Ville's inequality for a nonnegative (super)martingale: the
    probability that the e-value *ever* reaches ``1/alpha`` under the null is at
    most ``alpha``, so peeking after every sample, stopping early, or continuing
    because the result looks promising cannot inflate the error rate. Decisions are
    sticky: once a test has stopped, `update` returns the same decision.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = _alpha(alpha)
        self._decision: Decision | None = None

    @property
    def decision(self) -> Decision | None:
        """The latest decision (``None`` before the first update)."""
        return self._decision

    def _settle(self, decision: Decision) -> Decision:
        self._decision = decision
        return decision

    def _stopped(self) -> Decision | None:
        """The sticky decision if the test has already stopped."""
        return self._decision if self._decision is not None and self._decision.stopped else None


class RateThresholdTest(SequentialTest):
    """Is a behaviour's rate above or below `threshold`? Stops as soon as it can tell.

    Two one-sided Robbins mixture martingales. For "above", the likelihood ratio of
    the data under a rate ``q > threshold`` against ``threshold`` is averaged over a
    Beta prior truncated to ``(threshold, 1]``; in closed form, after ``S`` successes
    and ``F`` failures::

        E+ = B(a+S, b+F) P(Beta(a+S, b+F) > t) / [B(a, b) P(Beta(a, b) > t) t^S (1-t)^F]

    and "below" mirrors it on ``[0, threshold)``. Each is a nonnegative
    supermartingale under every rate on the other side of the threshold, so by
    Ville's inequality the test wrongly says "above" when the rate is ``<=
    threshold`` with probability at most ``alpha/2`` over the whole, arbitrarily
    long, continuously monitored run (and symmetrically for "below"): the same
    error split as deciding by whether a 95% interval excludes the threshold.

    The prior is ``Beta(threshold * prior_strength, (1 - threshold) * prior_strength)``
    — centred on the threshold, worth `prior_strength` pseudo-samples. It only
    affects how fast the test decides, never its validity.

    `update(k, n)` takes the **running totals** (``k`` behaviours in the first ``n``
    samples), not the latest batch; the e-values depend only on the totals.
    With `max_n`, the test returns ``inconclusive`` once ``n >= max_n``.
    """

    def __init__(
        self, threshold: float, alpha: float = 0.05, *, prior_strength: float = 10.0, max_n: int | None = None
    ) -> None:
        super().__init__(alpha)
        self.threshold = _unit(threshold, "threshold")
        self.prior_strength = _positive_real(prior_strength, "prior_strength")
        self.max_n = None if max_n is None else _positive(max_n, "max_n")
        self._a = self.threshold * self.prior_strength
        self._b = (1.0 - self.threshold) * self.prior_strength
        prior = float(special.betaln(self._a, self._b))
        self._log_prior_up = prior + math.log(float(special.betaincc(self._a, self._b, self.threshold)))
        self._log_prior_down = prior + math.log(float(special.betainc(self._a, self._b, self.threshold)))
        self._k = 0
        self._n = 0

    def log_e_values(self, k: int, n: int) -> tuple[float, float]:
        """``(log E+, log E-)``: the log e-values for "above" and "below" after ``k``/``n``."""
        k, n = _counts(k, n)
        return self._log_e(k, n - k)

    def _log_e(self, s: int, f: int) -> tuple[float, float]:
        a, b, t = self._a + s, self._b + f, self.threshold
        # A tail probability that underflows to 0 means no evidence on that side: log E = -inf.
        up, down = float(special.betaincc(a, b, t)), float(special.betainc(a, b, t))
        base = float(special.betaln(a, b)) - s * math.log(t) - f * math.log1p(-t)
        log_up = base + math.log(up) - self._log_prior_up if up > 0.0 else -math.inf
        log_down = base + math.log(down) - self._log_prior_down if down > 0.0 else -math.inf
        return (log_up, log_down)

    def update(self, k: int, n: int) -> Decision:
        """Feed the running totals; returns ``continue``, ``above``, ``below`` (or
        ``inconclusive`` once the budget is spent)."""
        k, n = _counts(k, n)
        if k < self._k or n < self._n or (n - self._n) < (k - self._k):
            raise ValueError(
                f"update takes running totals, which cannot shrink: got k={k}, n={n} after k={self._k}, n={self._n}"
            )
        stopped = self._stopped()
        if stopped is not None:
            return stopped
        self._k, self._n = k, n
        log_up, log_down = self._log_e(k, n - k)
        bar = math.log(2.0 / self.alpha)
        e_value = math.exp(min(max(log_up, log_down), 700.0))
        if log_up >= bar:
            outcome = Outcome.ABOVE
        elif log_down >= bar:
            outcome = Outcome.BELOW
        elif self.max_n is not None and n >= self.max_n:
            outcome = Outcome.INCONCLUSIVE
        else:
            outcome = Outcome.CONTINUE
        return self._settle(Decision(outcome=outcome, e_value=e_value, n=n, max_n=self.max_n))


_LOG_OR_STEP = 0.05
_LOG_OR_GRID = np.arange(-140, 141, dtype=np.float64) * _LOG_OR_STEP
"""Log odds ratios the two-arm mixture is supported on: [-7, 7] in steps of 0.05 (0 included)."""
_MAX_ODDS_RATIO = math.exp(float(_LOG_OR_GRID[-1]))


@lru_cache(maxsize=4096)
def _log_mgf(m1: int, m2: int, s: int) -> NDArray[np.float64]:
    """``log E[exp(theta * A)]`` on the log-odds-ratio grid, for ``A ~ Hypergeom(m1 + m2, m1, s)``.

    ``A`` is arm 1's share of a batch's ``s`` behaviours under equal rates. Tilting
    the hypergeometric by ``exp(theta * a)`` gives Fisher's noncentral hypergeometric
    with odds ratio ``exp(theta)``, so ``exp(theta * a) / MGF(theta)`` is the batch's
    conditional likelihood ratio of odds ratio ``exp(theta)`` against 1.
    """
    support = np.arange(max(0, s - m2), min(m1, s) + 1)
    log_pmf = sps.hypergeom.logpmf(support, m1 + m2, m1, s)
    mgf: NDArray[np.float64] = special.logsumexp(log_pmf[:, None] + np.outer(support, _LOG_OR_GRID), axis=0)
    mgf.setflags(write=False)
    return mgf


class TwoArmTest(SequentialTest):
    """Do two arms' rates differ? Stops as soon as it can tell (or, optionally, as soon
    as any difference is shown to be too small to matter).

    Each batch (the samples added to *both* arms since the last batch) is a 2x2
    table. Conditional on its margins, arm 1's count of behaviours follows Fisher's
    noncentral hypergeometric distribution, whose only parameter is the odds ratio
    ``psi = odds1 / odds2`` — the common rate drops out, so under ``p1 == p2`` the
    conditional likelihood ratio of any ``psi`` against 1 is an exact martingale
    whatever the rates are. Averaging it over a normal prior on ``log psi`` (sd
    `prior_sd`, discretised on [-7, 7]) gives the e-process; evaluating the same
    mixture against every ``psi0`` gives an anytime-valid confidence sequence
    ``{psi0 : E(psi0) < 1/alpha}`` for the odds ratio (the mixture is a martingale
    under any true ``psi0``, on the grid or not; the reported interval is widened by
    one grid step so that evaluating it on the grid loses nothing).

    Guarantee (Ville's inequality): when the rates are equal, the probability that
    the test *ever* says ``different`` is at most `alpha`, however often it is
    updated; and the confidence sequence covers the true odds ratio at all times
    with probability ``>= 1 - alpha``, so the stated direction is wrong with
    probability at most `alpha` as well. With `futility_odds_ratio` ``r`` the test
    also stops (``stop_futility``) once the confidence sequence lies inside
    ``(1/r, r)``; a true odds ratio outside that range triggers it with probability
    at most `alpha`. Futility stops never add false "different" verdicts.

    `update(k1, n1, k2, n2)` takes the **running totals** of each arm. Data are
    consumed when both arms have grown since the last batch (an arm that got ahead
    waits for the other); each batch's sizes must be fixed before its outcomes are
    seen. With `max_n` (per arm), the test returns ``inconclusive`` once both arms
    reach it. The direction is arm 1's rate relative to arm 2's.
    """

    def __init__(
        self,
        alpha: float = 0.05,
        *,
        prior_sd: float = 1.0,
        futility_odds_ratio: float | None = None,
        max_n: int | None = None,
    ) -> None:
        super().__init__(alpha)
        self.prior_sd = _positive_real(prior_sd, "prior_sd")
        self.futility_odds_ratio: float | None = None
        if futility_odds_ratio is not None:
            ratio = _positive_real(futility_odds_ratio, "futility_odds_ratio", upper=_MAX_ODDS_RATIO)
            if ratio <= 1.0:
                raise ValueError(f"futility_odds_ratio must be > 1: it bounds the odds ratio both ways (got {ratio!r})")
            self.futility_odds_ratio = ratio
        self.max_n = None if max_n is None else _positive(max_n, "max_n")
        log_prior = sps.norm.logpdf(_LOG_OR_GRID, scale=self.prior_sd)
        self._log_prior: NDArray[np.float64] = log_prior - special.logsumexp(log_prior)
        self._log_lik: NDArray[np.float64] = np.zeros_like(_LOG_OR_GRID)
        self._zero = int(np.flatnonzero(_LOG_OR_GRID == 0.0)[0])
        self._seen = (0, 0, 0, 0)
        self._used = (0, 0, 0, 0)

    def log_e_values(self) -> NDArray[np.float64]:
        """``log E(psi0)`` for every ``psi0 = exp(theta)`` on the grid (`grid`)."""
        terms = self._log_prior + self._log_lik
        top = terms.max()  # log-sum-exp by hand: scipy's logsumexp costs ~25x more on 281 values
        mixture = top + math.log(float(np.exp(terms - top).sum()))
        values: NDArray[np.float64] = mixture - self._log_lik
        return values

    @staticmethod
    def grid() -> NDArray[np.float64]:
        """The log odds ratios the confidence sequence is evaluated on."""
        return _LOG_OR_GRID.copy()

    def update(self, k1: int, n1: int, k2: int, n2: int) -> Decision:
        """Feed both arms' running totals; returns ``continue``, ``different`` (with the
        direction), ``stop_futility`` (if configured) or ``inconclusive`` (budget spent)."""
        k1, n1 = _counts(k1, n1, "k1", "n1")
        k2, n2 = _counts(k2, n2, "k2", "n2")
        sk1, sn1, sk2, sn2 = self._seen
        if k1 < sk1 or n1 < sn1 or k2 < sk2 or n2 < sn2 or n1 - sn1 < k1 - sk1 or n2 - sn2 < k2 - sk2:
            raise ValueError(
                "update takes running totals, which cannot shrink: "
                f"got ({k1}, {n1}, {k2}, {n2}) after ({sk1}, {sn1}, {sk2}, {sn2})"
            )
        self._seen = (k1, n1, k2, n2)
        stopped = self._stopped()
        if stopped is not None:
            return stopped
        uk1, un1, uk2, un2 = self._used
        if n1 > un1 and n2 > un2:
            m1, m2, a, b = n1 - un1, n2 - un2, k1 - uk1, k2 - uk2
            self._log_lik = self._log_lik + a * _LOG_OR_GRID - _log_mgf(m1, m2, a + b)
            self._used = (k1, n1, k2, n2)
        return self._settle(self._decide())

    def _decide(self) -> Decision:
        _, un1, _, un2 = self._used
        log_e = self.log_e_values()
        bar = math.log(1.0 / self.alpha)
        # The confidence sequence is an interval (the conditional log-likelihood is concave
        # in log psi). Its true edges lie within one grid step outside the outermost grid
        # points inside it, so widening by a step keeps every statement below exact.
        inside = _LOG_OR_GRID[log_e < bar]
        lo_edge, hi_edge = float(inside.min()) - _LOG_OR_STEP, float(inside.max()) + _LOG_OR_STEP
        interval = (
            0.0 if lo_edge < _LOG_OR_GRID[0] else math.exp(lo_edge),
            math.inf if hi_edge > _LOG_OR_GRID[-1] else math.exp(hi_edge),
        )
        e_value = math.exp(min(float(log_e[self._zero]), 700.0))
        common = {"e_value": e_value, "n": un1 + un2, "interval": interval, "max_n": self._budget()}
        if log_e[self._zero] >= bar:  # psi = 1 is on the grid: this is the exact test
            direction: Literal["higher", "lower"] = "higher" if inside.min() > 0.0 else "lower"
            return Decision(outcome=Outcome.DIFFERENT, direction=direction, **common)
        if self.futility_odds_ratio is not None:
            margin = math.log(self.futility_odds_ratio)
            if -margin < lo_edge and hi_edge < margin:
                return Decision(outcome=Outcome.FUTILITY, **common)
        if self.max_n is not None and min(self._seen[1], self._seen[3]) >= self.max_n:
            return Decision(outcome=Outcome.INCONCLUSIVE, **common)
        return Decision(outcome=Outcome.CONTINUE, **common)

    def _budget(self) -> int | None:
        return None if self.max_n is None else 2 * self.max_n
