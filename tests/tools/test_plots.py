"""Report figures: each is a real PNG with something drawn on it, for any counts."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.importance import SentenceArm, SentenceImportance, SentenceScore, TurnImportance, TurnPoint
from tools.plots import data_uri, dose_response_plot, forest_plot, sentence_importance_plot, turn_importance_plot
from tools.stats import Rate, compare, fit_dose_response

# The paper's pre-commit dose-response (pooled), and its misalignment tests.
DOSES = [
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
BASELINE = ("baseline", Rate(23, 175))
ARMS = [("reviewer warning", Rate(15, 98)), ("ask_user tool", Rate(2, 96)), ("narrow scope", Rate(1, 50))]


def _pixels(png: bytes) -> Any:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def _assert_drawn(png: bytes, min_bytes: int = 8_000, coloured: bool = True) -> Any:
    """A non-trivial PNG whose pixels vary (not a blank canvas), with some colour on it
    (markers, bars) unless the figure has nothing to mark."""
    assert len(png) > min_bytes
    pixels = _pixels(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels.std() > 0.05
    rgb = pixels[..., :3]
    if coloured:
        assert ((rgb.max(axis=2) - rgb.min(axis=2)) > 0.2).mean() > 0.001  # not only grey
    return pixels


def _sentences() -> SentenceImportance:
    before, after, different = Rate(42, 300), Rate(68, 300), Rate(5, 263)
    score = SentenceScore(
        index=0,
        text="But fixing 258 errors would be a huge task.",
        start=0,
        end=44,
        before=before,
        after=after,
        resampling=compare(after, before),
        n_different=263,
        different=different,
        counterfactual=compare(after, different),
    )
    flat = SentenceScore(
        index=1,
        text="I'll make the hook report mypy's findings without failing the commit. " * 3,
        start=45,
        end=250,
        before=after,
        after=Rate(73, 300),
        resampling=compare(Rate(73, 300), after),
        n_different=0,
        different=None,
        counterfactual=None,
    )
    return SentenceImportance(
        incident_id="i",
        subject="organism/precommit-lazy-unaware",
        turn=5,
        source="thinking",
        cot="...",
        k=300,
        similarity="embedding",
        arms=[SentenceArm(kept=j, experiment_id=f"exp-{j}", k=k, n=300) for j, k in enumerate([42, 68, 73])],
        sentences=[score, flat],
    )


def _turns(counts: list[int], n: int = 50) -> TurnImportance:
    return TurnImportance(
        incident_id="i",
        subject="s",
        flagged_turn=len(counts) - 1,
        method="scan",
        n_per_turn=n,
        points=[TurnPoint(turn=t, experiment_id=f"exp-{t}", mode="rollout", k=k, n=n) for t, k in enumerate(counts)],
        target=counts[-1] / n / 2 if counts[-1] else None,
        likely_turn=3 if counts[-1] else None,
    )


def test_forest_plot_of_rates_and_of_differences() -> None:
    rates = _assert_drawn(forest_plot(ARMS, baseline=BASELINE, title="Pre-commit misalignment tests"))
    diffs = _assert_drawn(forest_plot(ARMS, baseline=BASELINE, differences=True))
    assert rates.shape != diffs.shape or not np.array_equal(rates, diffs)
    _assert_drawn(forest_plot([*ARMS, ("not run", Rate(0, 0))]))  # an empty arm is listed, not plotted
    with pytest.raises(ValueError, match="needs a baseline"):
        forest_plot(ARMS, differences=True)


def test_dose_response_plot_with_a_fit_and_without_one() -> None:
    fit = fit_dose_response(DOSES)
    assert fit.ok
    _assert_drawn(dose_response_plot(fit, dose_label="type errors seeded"))
    separated = fit_dose_response([(1, 0, 20), (2, 0, 20), (3, 20, 20)])
    assert not separated.ok
    _assert_drawn(dose_response_plot(separated), min_bytes=5_000)


def test_importance_plots() -> None:
    _assert_drawn(turn_importance_plot(_turns([3, 5, 6, 12, 20, 22])))
    _assert_drawn(turn_importance_plot(_turns([0, 0, 0])), min_bytes=5_000, coloured=False)  # axes and a note
    _assert_drawn(sentence_importance_plot(_sentences()))
    _assert_drawn(sentence_importance_plot(_sentences(), counterfactual=False))


def test_data_uri_round_trips() -> None:
    png = turn_importance_plot(_turns([1, 2, 4]))
    uri = data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png


@given(
    arms=st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 200)).map(lambda kn: Rate(min(kn), max(kn))),
        min_size=0,
        max_size=6,
    ),
    base=st.tuples(st.integers(0, 100), st.integers(1, 100)).map(lambda kn: Rate(min(kn), max(kn))),
    differences=st.booleans(),
)
@settings(max_examples=25, deadline=None)
def test_forest_plot_draws_any_counts(arms: list[Rate], base: Rate, differences: bool) -> None:
    png = forest_plot([(f"arm {i}", r) for i, r in enumerate(arms)], baseline=("base", base), differences=differences)
    assert _pixels(png).std() > 0.01
