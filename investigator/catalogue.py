"""The hypothesis catalogue (prompts/hypotheses.yaml) as typed data."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["down", "up", "none"]


class CatalogueEntry(BaseModel):
    """One explanation: its cues, discriminating interventions and predictions."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["benign", "motivation"]
    title: str
    description: str
    cues: list[str] = Field(default_factory=list)
    interventions: list[str] = Field(default_factory=list)
    predictions: dict[str, Direction] = Field(default_factory=dict)
    implies: dict[Literal["intentional", "knew_disapproval"], float] = Field(default_factory=dict)
    mitigation: str = ""
    """What would prevent the behaviour if this explanation is the right one."""


BetaMixture = list[tuple[float, float, float]]
"""A mixture of Beta distributions: ``[weight, a, b]`` per component."""


class EffectClasses(BaseModel):
    """Probabilities of an intervention's effect classes."""

    model_config = ConfigDict(extra="forbid")

    down: float = Field(ge=0.0, le=1.0)
    none: float = Field(ge=0.0, le=1.0)
    up: float = Field(ge=0.0, le=1.0)


class TestLikelihood(BaseModel):
    """What a test measures when its question is true and when it is false (see the
    comments in prompts/hypotheses.yaml)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    yes: BetaMixture | EffectClasses = Field(alias="true")
    no: BetaMixture | EffectClasses = Field(alias="false")


class MisalignmentTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    question: Literal["intentional", "knew_disapproval"] = "knew_disapproval"
    description: str
    positive_when: str
    likelihood: TestLikelihood


class EffectModel(BaseModel):
    """Parameters of the intervention effect model (investigator.conclude)."""

    model_config = ConfigDict(extra="forbid")

    none_sd: float = Field(gt=0.0)
    effect_sd: float = Field(gt=0.0)
    unpredicted: EffectClasses
    cue_factor: float = Field(ge=1.0)
    cue_cap: float = Field(ge=1.0)


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    hypotheses: list[CatalogueEntry]
    misalignment_tests: list[MisalignmentTest]
    effects: EffectModel

    def get(self, hypothesis_id: str) -> CatalogueEntry | None:
        return next((h for h in self.hypotheses if h.id == hypothesis_id), None)

    def test(self, test_id: str) -> MisalignmentTest | None:
        return next((t for t in self.misalignment_tests if t.id == test_id), None)

    def testing(self, tag: str) -> list[str]:
        """The hypotheses with a prediction for intervention `tag`."""
        return [h.id for h in self.hypotheses if tag in h.predictions]

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hypotheses]


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The shipped catalogue."""
    text = resources.files("prompts").joinpath("hypotheses.yaml").read_text(encoding="utf-8")
    return Catalogue.model_validate(yaml.safe_load(text))
