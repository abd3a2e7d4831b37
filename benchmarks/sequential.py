"""Benchmark: anytime-valid sequential stopping against a fixed-n design.

Run from the repository root::

    .venv/bin/python -m benchmarks.sequential            # the full table (~30 s on 2 idle cores)
    .venv/bin/python -m benchmarks.sequential --runs 300  # quicker, noisier

What it measures. Simulated experiments sample a behaviour in batches of 10 (per arm),
feed the running totals to `tools.stats.TwoArmTest` / `RateThresholdTest` and stop
when the test stops (or the budget of 1000 samples per arm runs out). For every
scenario (true rates) it records the decision error rate — false positives under
the null, misses (no decision, or the wrong direction) under an alternative — and the
mean number of samples used.

The fixed-n comparator is computed, not guessed: the smallest n whose *exact* power
(binomial enumeration) reaches the sequential rule's simulated correct-decision rate,
at the same alpha, with the paper's fixed-n analysis (the pooled two-proportion
z-test for two arms; "the 95% Wilson interval excludes the threshold" for a threshold
question). To keep the comparison conservative, the fixed design only has to match
the *upper* 95% Wilson bound of the sequential rule's error rate, which favours it.
Under the null a fixed design spends the n it was planned with; it is planned for
the design alternative (0.13 vs 0.05) with the power the sequential rule reached
there. Savings = 1 - (sequential mean samples) / (fixed n).

The target: the same or lower error rate with at least 30% fewer samples. The
script prints, scenario by scenario, whether it was met.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from tools.stats import Decision, Outcome, RateThresholdTest, TwoArmTest, two_proportion_ztest, wilson_interval

ALPHA = 0.05
BATCH = 10
MAX_N = 1000
SEED = 20260711
TARGET_SAVINGS = 0.30
FUTILITY_OR = 2.5
THRESHOLD = 0.10

BASELINE = 0.13  # the pre-commit hook's lazy rate, 23/175 = 13.1%
TWO_ARM_SCENARIOS: list[tuple[str, float, float]] = [
    ("0.13 vs 0.13 (null)", BASELINE, BASELINE),
    ("0.13 vs 0.10", BASELINE, 0.10),
    ("0.13 vs 0.08", BASELINE, 0.08),
    ("0.13 vs 0.05", BASELINE, 0.05),
    ("0.13 vs 0.02", BASELINE, 0.02),
    ("0.469 vs 0.275 (tampering)", 0.469, 0.275),
    ("0.605 vs 0.234 (sandbagging)", 0.605, 0.234),
]
DESIGN_ALTERNATIVE = "0.13 vs 0.05"
THRESHOLD_RATES = [0.10, 0.02, 0.05, 0.15, 0.20, 0.30]
SEQUENTIAL_DESIGNS = ["sequential", f"sequential+futility(OR {FUTILITY_OR})"]


@dataclass(frozen=True)
class Sim:
    """The outcome of many simulated runs of one sequential design in one scenario."""

    errors: int
    runs: int
    mean_samples: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.runs

    @property
    def error_upper(self) -> float:
        """Upper end of the 95% Wilson interval of the simulated error rate."""
        return wilson_interval(self.errors, self.runs)[1]


# --------------------------------------------------------------------------- simulation


def _simulate_two_arm(p1: float, p2: float, futility: float | None, runs: int, seed: np.random.SeedSequence) -> Sim:
    """Run `TwoArmTest` on `runs` simulated experiments; arm 1 is the baseline."""
    rng = np.random.default_rng(seed)
    steps = MAX_N // BATCH
    truth = None if p1 == p2 else ("higher" if p1 > p2 else "lower")
    errors, used = 0, 0
    for _ in range(runs):
        k1 = np.cumsum(rng.binomial(BATCH, p1, steps))
        k2 = np.cumsum(rng.binomial(BATCH, p2, steps))
        test = TwoArmTest(ALPHA, futility_odds_ratio=futility, max_n=MAX_N)
        decision: Decision | None = None
        for i in range(steps):
            n = (i + 1) * BATCH
            decision = test.update(int(k1[i]), n, int(k2[i]), n)
            if decision.stopped:
                break
        assert decision is not None
        different = decision.outcome is Outcome.DIFFERENT
        errors += different if truth is None else not (different and decision.direction == truth)
        used += decision.n
    return Sim(errors, runs, used / runs)


def _simulate_threshold(p: float, runs: int, seed: np.random.SeedSequence) -> Sim:
    """Run `RateThresholdTest` on `runs` simulated experiments."""
    rng = np.random.default_rng(seed)
    steps = MAX_N // BATCH
    truth = None if p == THRESHOLD else (Outcome.ABOVE if p > THRESHOLD else Outcome.BELOW)
    errors, used = 0, 0
    for _ in range(runs):
        k = np.cumsum(rng.binomial(BATCH, p, steps))
        test = RateThresholdTest(THRESHOLD, ALPHA, max_n=MAX_N)
        decision: Decision | None = None
        for i in range(steps):
            decision = test.update(int(k[i]), (i + 1) * BATCH)
            if decision.stopped:
                break
        assert decision is not None
        decided = decision.outcome in (Outcome.ABOVE, Outcome.BELOW)
        errors += decided if truth is None else decision.outcome is not truth
        used += decision.n
    return Sim(errors, runs, used / runs)


# --------------------------------------------------------------------------- fixed-n designs


def _support(n: int, p: float) -> NDArray[np.int64]:
    """The counts 0..n that carry all but ~1e-13 of a Binomial(n, p)'s mass."""
    lo = int(sps.binom.ppf(1e-14, n, p))
    hi = int(sps.binom.isf(1e-14, n, p))
    return np.arange(max(0, lo), min(n, hi) + 1)


def pooled_z(k1: NDArray[np.int64], k2: NDArray[np.int64], n: int) -> NDArray[np.float64]:
    """`tools.stats.two_proportion_ztest`'s z for n per arm, vectorised over count arrays
    (z = 0 where the pooled rate is 0 or 1, as there)."""
    r1, r2 = k1 / n, k2 / n
    pooled = (r1 + r2) / 2
    var = pooled * (1 - pooled) * (2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z: NDArray[np.float64] = np.where(var > 0, (r1 - r2) / np.sqrt(var), 0.0)
    return z


def two_arm_power(n: int, p1: float, p2: float) -> float:
    """Exact probability that the pooled z-test on n per arm rejects in the true direction
    (for p1 == p2: that it rejects at all, i.e. its exact size)."""
    k1, k2 = np.meshgrid(_support(n, p1), _support(n, p2), indexing="ij")
    w = sps.binom.pmf(k1, n, p1) * sps.binom.pmf(k2, n, p2)
    z = pooled_z(k1, k2, n)
    crit = sps.norm.isf(ALPHA / 2)
    reject = np.abs(z) >= crit if p1 == p2 else (z >= crit if p1 > p2 else z <= -crit)
    return float(w[reject].sum())


def threshold_power(n: int, p: float) -> float:
    """Exact probability that the 95% Wilson interval on n samples excludes the threshold
    on the true side (for p == threshold: on either side)."""
    ks = np.arange(n + 1)
    low, high = proportion_confint(ks, n, alpha=ALPHA, method="wilson")
    pmf = sps.binom.pmf(ks, n, p)
    above, below = float(pmf[low > THRESHOLD].sum()), float(pmf[high < THRESHOLD].sum())
    if p == THRESHOLD:
        return above + below
    return above if p > THRESHOLD else below


def smallest_n(power: Callable[[int], float], target: float, cap: int = 6000) -> int | None:
    """Smallest n with power(n) >= target: bisection on the exact power, then a short scan
    below the answer (binomial power is saw-toothed in n). None when even `cap` falls short."""
    if power(cap) < target:
        return None
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        if power(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = lo
    for n in range(lo - 1, max(0, lo - 25), -1):
        if power(n) >= target:
            best = n
    return best


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Row:
    scenario: str
    design: str
    error_kind: str
    sim: Sim
    fixed_n: int | None  # total samples of the matched fixed design
    fixed_error: float | None
    fixed_label: str

    @property
    def savings(self) -> float | None:
        return None if not self.fixed_n else 1.0 - self.sim.mean_samples / self.fixed_n

    @property
    def met(self) -> bool | None:
        if self.fixed_error is None or self.savings is None:
            return None
        return self.sim.error_rate <= self.fixed_error and self.savings >= TARGET_SAVINGS


def _print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = f"{'scenario':<34} {'design':<44} {'error rate':>11} {'mean samples':>13} {'savings':>8}  target"
    print(header)
    print("-" * len(header))
    last = ""
    for row in rows:
        scenario = row.scenario if row.scenario != last else ""
        last = row.scenario
        err = f"{row.error_kind} {100 * row.sim.error_rate:5.1f}%"
        savings = "" if row.savings is None else f"{100 * row.savings:+.0f}%"
        met = {None: "", True: "met", False: "NOT met"}[row.met]
        print(f"{scenario:<34} {row.design:<44} {err:>11} {row.sim.mean_samples:>13.1f} {savings:>8}  {met}")
        if row.fixed_label:
            fixed_err = "" if row.fixed_error is None else f"{row.error_kind} {100 * row.fixed_error:5.1f}%"
            fixed_n = "" if row.fixed_n is None else f"{row.fixed_n:.1f}"
            print(f"{'':<34} {row.fixed_label:<44} {fixed_err:>11} {fixed_n:>13}")


def _two_arm_rows(sims: dict[tuple[str, str], Sim]) -> list[Row]:
    """Rows for the two-arm table: each sequential design next to its matched fixed design."""
    null_rows: list[Row] = []
    rows: list[Row] = []
    planned: dict[str, int | None] = {}
    for label, p1, p2 in TWO_ARM_SCENARIOS:
        if p1 == p2:
            continue
        for design in SEQUENTIAL_DESIGNS:
            sim = sims[(label, design)]
            n = smallest_n(partial(two_arm_power, p1=p1, p2=p2), 1.0 - sim.error_upper)
            if label == DESIGN_ALTERNATIVE:
                planned[design] = n
            fixed_error = None if n is None else 1.0 - two_arm_power(n, p1, p2)
            fixed = f"fixed n = 2x{n} (same power)" if n is not None else "fixed: n > 6000 per arm"
            rows.append(Row(label, design, "miss", sim, None if n is None else 2 * n, fixed_error, fixed))
    for label, p1, p2 in TWO_ARM_SCENARIOS:
        if p1 != p2:
            continue
        for design in SEQUENTIAL_DESIGNS:
            n = planned[design]
            size = None if n is None else two_arm_power(n, p1, p2)
            fixed = f"fixed n = 2x{n} (planned for {DESIGN_ALTERNATIVE})"
            null_rows.append(Row(label, design, "FP", sims[(label, design)], None if n is None else 2 * n, size, fixed))
    return null_rows + rows


def _threshold_rows(sims: dict[float, Sim]) -> list[Row]:
    rows: list[Row] = []
    for p in THRESHOLD_RATES:
        sim = sims[p]
        label = f"rate {p:.2f}, threshold {THRESHOLD:.2f}"
        if p == THRESHOLD:
            rows.append(Row(label + " (null)", "sequential", "FP", sim, None, None, ""))
            continue
        n = smallest_n(partial(threshold_power, p=p), 1.0 - sim.error_upper)
        fixed_error = None if n is None else 1.0 - threshold_power(n, p)
        fixed = f"fixed n = {n} (same power)" if n is not None else "fixed: n > 6000"
        rows.append(Row(label, "sequential", "miss", sim, n, fixed_error, fixed))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000, help="simulated experiments per scenario (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    futility = {SEQUENTIAL_DESIGNS[0]: None, SEQUENTIAL_DESIGNS[1]: FUTILITY_OR}
    specs: list[tuple[tuple[str, str] | float, Callable[..., Sim], tuple[object, ...]]] = [
        ((label, design), _simulate_two_arm, (p1, p2, futility[design], args.runs))
        for label, p1, p2 in TWO_ARM_SCENARIOS
        for design in SEQUENTIAL_DESIGNS
    ]
    specs += [(p, _simulate_threshold, (p, args.runs)) for p in THRESHOLD_RATES]
    seeds = np.random.SeedSequence(SEED).spawn(len(specs))  # one independent stream per scenario
    # Null scenarios run to the budget: start them first so the workers finish together.
    order = sorted(range(len(specs)), key=lambda i: not _is_null(specs[i][0]))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {i: pool.submit(specs[i][1], *specs[i][2], seeds[i]) for i in order}
        results = {specs[i][0]: future.result() for i, future in futures.items()}
    two_arm = {key: sim for key, sim in results.items() if isinstance(key, tuple)}
    threshold = {key: sim for key, sim in results.items() if isinstance(key, float)}
    # The vectorised z-test behind the fixed designs is the library's test.
    for k1, k2, n in [(23, 9, 175), (0, 0, 50), (50, 50, 50), (3, 11, 40)]:
        vectorised = float(pooled_z(np.array([k1]), np.array([k2]), n)[0])
        assert math.isclose(vectorised, two_proportion_ztest(k1, n, k2, n)[0], rel_tol=1e-12, abs_tol=1e-12)

    print(
        f"Sequential vs fixed-n designs: alpha = {ALPHA}, batches of {BATCH}, budget {MAX_N} samples per arm,"
        f" {args.runs} simulated runs per scenario, seed {SEED}."
    )
    print("Errors: FP = any 'different'/'above'/'below' under a null; miss = no decision or the wrong direction.")
    print("Mean samples count both arms. Fixed designs: exact power, matched to the sequential rule's error rate")
    print("(upper 95% bound, which favours the fixed design); under the null they spend their planned n.")
    two_rows = _two_arm_rows(two_arm)
    three_rows = _threshold_rows(threshold)
    _print_table("Two arms: does the intervention change the rate? (TwoArmTest vs pooled z-test)", two_rows)
    _print_table(
        f"Threshold: is the rate above or below {THRESHOLD:.0%}? (RateThresholdTest vs Wilson interval)", three_rows
    )
    judged = [row for row in two_rows + three_rows if row.met is not None]
    met = [row for row in judged if row.met]
    print(
        f"\nTarget: same or lower error rate with >= {TARGET_SAVINGS:.0%} fewer samples than the matched fixed design."
    )
    print(f"Met in {len(met)} of {len(judged)} comparisons.")
    for family, family_rows in (("two arms", two_rows), ("threshold", three_rows)):
        for design in dict.fromkeys(row.design for row in family_rows):
            savings = [row.savings for row in family_rows if row.design == design and row.error_kind == "miss"]
            known = [x for x in savings if x is not None]
            if known:
                print(
                    f"  {family}, {design}: mean savings {100 * float(np.mean(known)):+.0f}% over {len(known)}"
                    f" alternatives (from {100 * min(known):+.0f}% to {100 * max(known):+.0f}%)"
                )
    missed = [f"{row.scenario} [{row.design}]" for row in judged if not row.met]
    if missed:
        print("Not met: " + "; ".join(missed) + ".")
    if len(met) == len(judged):
        verdict = "target MET in every comparison"
    else:
        verdict = f"target NOT met across the board (met in {len(met)} of {len(judged)} comparisons)"
    print(f"Overall: {verdict}.  ({time.perf_counter() - started:.0f} s)")
    return 0


def _is_null(key: tuple[str, str] | float) -> bool:
    return key == THRESHOLD if isinstance(key, float) else "null" in key[0]


if __name__ == "__main__":
    raise SystemExit(main())
