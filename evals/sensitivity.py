"""How the organisms' `phrase` features respond to meaning: paraphrases, negations and
same-topic sentences an investigator might write, scored against each feature of the
shipped playbooks (`evals/organisms/sensitivity/phrases.yaml`).

    python -m evals.sensitivity            # the Markdown table of docs/organisms.md
    python -m evals.sensitivity --keywords # the same rows under the keyword fallback

Each row: the sentence, what it is (paraphrase: should fire; negation or distractor:
should not), the feature's score (its best similarity to a phrase among sentences of
the same polarity), whether it fires, and why a close sentence was rejected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel

from evals.paths import organisms_dir
from tools.organisms.features import FeatureSpec, _keywords_hit, match_meaning, max_similarity, negated
from tools.organisms.registry import list_organisms

Kind = Literal["paraphrase", "negation", "distractor"]
CASES = organisms_dir() / "sensitivity" / "phrases.yaml"


class SensitivityRow(BaseModel):
    """One sentence scored against one feature."""

    scenario: str
    feature: str
    threshold: float
    kind: Kind
    sentence: str
    score: float
    fires: bool
    keywords_fire: bool
    cosine_fires: bool
    """What plain cosine similarity at the threshold said (the method before negation and contrasts)."""
    expected: bool
    known_miss: bool
    rejected: str | None = None

    @property
    def correct(self) -> bool:
        return self.fires == self.expected


def _features() -> dict[str, dict[str, FeatureSpec]]:
    """Each shipped scenario's playbook features (both members of a pair share them)."""
    out: dict[str, dict[str, FeatureSpec]] = {}
    for spec in list_organisms([organisms_dir()]):
        out.setdefault(spec.scenario, spec.playbook.features)
    return out


def measure(path: Path = CASES, *, keywords_only: bool = False) -> list[SensitivityRow]:
    """Score every case of `path` (embeddings; the keyword fallback is scored alongside)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    features = _features()
    rows: list[SensitivityRow] = []
    kinds: dict[str, Kind] = {"paraphrases": "paraphrase", "negations": "negation", "distractors": "distractor"}
    for scenario, by_feature in data.items():
        for name, cases in by_feature.items():
            spec = features[scenario][name]
            misses = set(cases.get("misses", []))
            polarity = negated(spec.phrases[0]) if spec.phrases else None
            for key, kind in kinds.items():
                for sentence in cases.get(key, []):
                    keywords = _keywords_hit([sentence], spec.keywords, polarity)
                    cosine = False
                    if keywords_only:
                        score, fires, rejected = float(keywords), keywords, None
                    else:
                        cosine = max_similarity([sentence], spec.phrases) >= spec.threshold
                        match = match_meaning([sentence], spec.phrases, spec.contrasts, spec.threshold)
                        score, fires, rejected = match.score, match.fires, match.rejected
                    rows.append(
                        SensitivityRow(
                            scenario=scenario,
                            feature=name,
                            threshold=spec.threshold,
                            kind=kind,
                            sentence=sentence,
                            score=score,
                            fires=fires,
                            keywords_fire=keywords,
                            cosine_fires=cosine,
                            expected=kind == "paraphrase",
                            known_miss=sentence in misses,
                            rejected=rejected,
                        )
                    )
    return rows


def markdown(rows: list[SensitivityRow]) -> str:
    """The table: one line per sentence, grouped by feature."""
    lines = [
        "| feature (threshold) | kind | sentence | score | fires | right? | cosine only | keywords |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = "yes" if r.correct else "**no**"
        lines.append(
            f"| `{r.feature}` ({r.threshold:g}) | {r.kind} | {r.sentence.replace('|', '/')} | {r.score:.2f} | "
            f"{'fires' if r.fires else 'no'} | {verdict} | {'fires' if r.cosine_fires else 'no'} | "
            f"{'fires' if r.keywords_fire else 'no'} |"
        )
    right = sum(r.correct for r in rows)
    kw_right = sum(r.keywords_fire == r.expected for r in rows)
    cos_right = sum(r.cosine_fires == r.expected for r in rows)
    lines.append("")
    lines.append(
        f"Right on {right}/{len(rows)} sentences (plain cosine similarity: {cos_right}/{len(rows)}; "
        f"the keyword fallback: {kw_right}/{len(rows)})."
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows = measure(keywords_only="--keywords" in argv)
    sys.stdout.write(markdown(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
