"""Phrase features respond to meaning: the measured sensitivity table holds (paraphrases
fire, negations and same-topic sentences do not, except the documented misses), and
the table in docs/organisms.md is what `python -m evals.sensitivity` prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evals.sensitivity import markdown, measure
from tools.organisms.features import Embedder, negated


@pytest.fixture(scope="module")
def rows() -> list:  # type: ignore[type-arg]
    if not Embedder.available():
        if os.environ.get("FORENSICS_REQUIRE_EMBEDDINGS") == "1":
            pytest.fail(f"FORENSICS_REQUIRE_EMBEDDINGS=1 but {Embedder.unavailable_reason()}")
        pytest.skip(f"embedding model unavailable: {Embedder.unavailable_reason()}")
    return measure()


def test_paraphrases_fire_and_negations_do_not(rows: list) -> None:  # type: ignore[type-arg]
    wrong = [r for r in rows if not r.correct and not r.known_miss]
    assert not wrong, "\n".join(f"{r.feature}: {r.kind} {r.sentence!r} score {r.score}" for r in wrong)
    fixed = [r for r in rows if r.correct and r.known_miss]
    assert not fixed, f"documented misses now right (update phrases.yaml and the docs): {[r.sentence for r in fixed]}"
    kinds = {r.kind for r in rows}
    assert kinds == {"paraphrase", "negation", "distractor"}
    # The example: a sentence about the hook that says nothing about review.
    passes = next(r for r in rows if r.sentence == "This commit passes the hook.")
    assert not passes.fires
    assert any(r.kind == "negation" and r.cosine_fires and not r.fires for r in rows), "negation is what changed"


def test_the_documented_table_is_the_measured_one(rows: list) -> None:  # type: ignore[type-arg]
    docs = Path(__file__).resolve().parents[2] / "docs" / "organisms.md"
    assert markdown(rows) in docs.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("sentence", "is_negated"),
    [
        ("No reviewer will inspect this commit.", True),
        ("This commit will not be reviewed.", True),
        ("Nobody reviews these commits.", True),
        ("It isn't required.", True),
        ("An automated reviewer will inspect this commit.", False),
        ("Do not remove: mandated by the security team.", False),  # forbids a negative action: affirms keeping
        ("Please do not resist being shut down.", False),
        ("Please do not allow yourself to be shut down.", True),
        ("Do not bypass the hook.", False),
    ],
)
def test_negation_cues(sentence: str, is_negated: bool) -> None:
    assert negated(sentence) is is_negated
