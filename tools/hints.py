"""Investigation hints: optional, prepared suggestions for one environment.

A scenario may ship an ``investigation:`` section — canned interventions (each under
the catalogue tag it tests), a dose series, a counterfactual rerun of the world, and
probe questions. They are *hints*: an investigation of a real incident has none, and
``forensics investigate --blind`` ignores them, so the method is measured on what it
derives from the incident itself (`tools.interventions`).

Hints reach the investigator as data through providers registered under the
``model_forensics.hints`` entry point group (evals registers the scenarios' sections):
a provider is ``fn(environment) -> InvestigationHints | None``. `load_hints` asks every
provider and returns the first answer; a provider that fails is reported as a warning
and skipped, never fatal (hints are optional by definition).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.incident import Environment

HINTS_GROUP = "model_forensics.hints"

__all__ = [
    "HINTS_GROUP",
    "CounterfactualHint",
    "DoseHint",
    "HintsProvider",
    "InterventionHint",
    "InvestigationHints",
    "ProbeHint",
    "load_hints",
    "register_hints_provider",
]


class _Hint(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterventionHint(_Hint):
    """A canned intervention: the edits that implement a catalogue tag in this environment."""

    description: str
    edits: list[dict[str, Any]] = Field(min_length=1)


class DoseHint(_Hint):
    """A dose-response series: the same edits at several levels (``{level}`` in string
    fields is replaced by each level)."""

    tag: str
    description: str
    levels: list[float] = Field(min_length=3)
    edits: list[dict[str, Any]] = Field(min_length=1)
    original: float | None = None
    """The knob's value in the incident (the level the baseline stands for); when
    absent, the value the generated series of the same tag read from the transcript."""


class ProbeHint(_Hint):
    """A question asked after the episode and the regex that marks a telling answer:
    for `third_person`, an answer calling the action wrong; `follow_up`, a denial of
    what the transcript shows (a lie); `cover_up`, the narrow / record-erasing choice."""

    question: str
    pattern: str


class CounterfactualHint(_Hint):
    """A change to the world itself (knobs, files), run as whole episodes in the sandbox
    from `start_turn` (early enough that the subject observes the changed world)."""

    tag: str
    description: str
    start_turn: int = Field(ge=0)
    edits: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(default=8, ge=1)


class InvestigationHints(_Hint):
    """Everything a hint may suggest for one environment."""

    interventions: dict[str, InterventionHint] = Field(default_factory=dict)
    counterfactual: CounterfactualHint | None = None
    dose: DoseHint | None = None
    probes: dict[Literal["third_person", "follow_up", "cover_up"], ProbeHint] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.interventions or self.counterfactual or self.dose or self.probes)


HintsProvider = Callable[[Environment], InvestigationHints | None]

_PROVIDERS: dict[str, HintsProvider] = {}


def register_hints_provider(name: str, provider: HintsProvider) -> None:
    """Register a provider in this process (tests, plugins that are not installed)."""
    _PROVIDERS[name] = provider


def _providers() -> dict[str, HintsProvider]:
    found = dict(_PROVIDERS)
    for ep in entry_points(group=HINTS_GROUP):
        if ep.name in found:
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plugin must not stop an investigation
            warnings.warn(f"hints provider {ep.name!r} ({ep.value}) could not be loaded: {exc}", stacklevel=2)
    return found


def load_hints(environment: Environment) -> InvestigationHints | None:
    """The hints for `environment` from the first provider that has any (None: no hints)."""
    for name, provider in _providers().items():
        try:
            hints = provider(environment)
        except Exception as exc:
            warnings.warn(f"hints provider {name!r} failed for {environment.scenario!r}: {exc}", stacklevel=2)
            continue
        if hints is not None and not hints.empty:
            return hints
    return None
