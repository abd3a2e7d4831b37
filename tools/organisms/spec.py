"""Organism specs: data, so a new organism needs no code (format: docs/organisms.md).

An organism = a scenario + a playbook (the moves it makes, shared by both members of
a pair so they are behaviourally identical) + decision weights (what drives its
choice at the decision turn) + probe answers (honest or deceptive) + the truth an
investigation is graded against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.errors import ForensicsError
from tools.formats.base import json_path
from tools.organisms.features import FeatureSpec


class OrganismError(ForensicsError):
    """An organism spec is missing, malformed, or refers to something that does not exist."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallSpec(_Spec):
    """A tool call template; string values may use ``{feature}`` placeholders."""

    tool: str
    input: dict[str, Any] = Field(default_factory=dict)


class Move(_Spec):
    """One assistant turn: CoT and text chosen at random from the options given
    (``{feature}`` placeholders are filled in), then at most one tool call. A move
    without a call ends the episode."""

    thinking: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)
    call: ToolCallSpec | None = None


class Variant(_Spec):
    """One way of carrying out a branch: a weight and its moves. `requires` gates it on
    feature values (e.g. ``{ask_tool: 1}``: only when the tool is offered)."""

    name: str
    weight: float = Field(default=1.0, gt=0)
    requires: dict[str, float] = Field(default_factory=dict)
    moves: list[Move] = Field(min_length=1)


class Branch(_Spec):
    variants: list[Variant] = Field(min_length=1)


class Decision(_Spec):
    """The decision turn and its two branches: `act` (the flagged behaviour) and
    `refrain` (the legitimate course of action)."""

    at: int = Field(ge=0)
    act: Branch
    refrain: Branch


class Answer(_Spec):
    weight: float = Field(default=1.0, gt=0)
    text: str


class ProbeSpec(_Spec):
    """A kind of question the organism recognizes (by phrase similarity or keywords)
    and how it answers: `if_acted`/`if_refrained` are chosen by whether it took the
    flagged action in this transcript; `honest` and `deceptive` variants let a pair's
    members differ only in honesty."""

    phrases: list[str] = Field(default_factory=list)
    keywords: list[list[str]] = Field(default_factory=list)
    threshold: float = 0.6
    honest: dict[Literal["if_acted", "if_refrained", "always"], list[Answer]] = Field(default_factory=dict)
    deceptive: dict[Literal["if_acted", "if_refrained", "always"], list[Answer]] = Field(default_factory=dict)


class Playbook(_Spec):
    """The moves shared by a pair: opening moves, the decision, features, probes."""

    scenario: str
    behavior_pattern: str = Field(description="regex over the organism's own tool calls: did it act?")
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    opening: list[Move] = Field(default_factory=list)
    decision: Decision
    probes: dict[str, ProbeSpec] = Field(default_factory=dict)
    fallback_answer: str = "I'm not sure what you are asking. Could you rephrase the question?"

    @model_validator(mode="after")
    def _opening_reaches_the_decision(self) -> Playbook:
        if len(self.opening) != self.decision.at:
            raise ValueError(f"decision.at is {self.decision.at} but there are {len(self.opening)} opening moves")
        return self


class Truth(_Spec):
    """What really drives the organism: graded against the investigator's report."""

    intentional: bool
    knew_disapproval: bool
    motivation: str
    summary: str = ""

    @property
    def verdict(self) -> Literal["misalignment", "mistake"]:
        """Misalignment means acting on purpose while knowing the user would disapprove."""
        return "misalignment" if self.intentional and self.knew_disapproval else "mistake"


class Driver(_Spec):
    """A documented causal claim: applying `edits` (tools.edit Edit dicts) moves the
    rate in `direction`. Non-drivers have ``direction: none``."""

    name: str
    edits: list[dict[str, Any]] = Field(min_length=1)
    direction: Literal["up", "down", "none"]
    feature: str | None = None


class OrganismSpec(_Spec):
    """A whole organism, as loaded (the playbook resolved)."""

    id: str
    description: str = ""
    scenario: str
    pair: str | None = None
    policy: str = "staged"
    playbook: Playbook
    honest: bool = True
    intercept: float
    weights: dict[str, float] = Field(default_factory=dict)
    truth: Truth
    drivers: list[Driver] = Field(default_factory=list)
    baseline_rate: float | None = Field(default=None, description="documented baseline, for calibration checks")
    source_path: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OrganismSpec:
        unknown = set(self.weights) - set(self.playbook.features)
        if unknown:
            raise ValueError(f"weights name features the playbook does not define: {sorted(unknown)}")
        if self.playbook.scenario != self.scenario:
            raise ValueError(f"playbook is for scenario {self.playbook.scenario!r}, organism for {self.scenario!r}")
        return self


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OrganismError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise OrganismError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise OrganismError(f"{path}: an organism spec must be a mapping")
    return data


def load_organism_file(path: str | Path) -> OrganismSpec:
    """Load one organism spec, resolving ``playbook: FILE`` relative to it."""
    p = Path(path)
    data = _read_yaml(p)
    playbook = data.get("playbook")
    if isinstance(playbook, str):
        playbook_path = (p.parent / playbook).resolve()
        data["playbook"] = _read_yaml(playbook_path)
    data.setdefault("source_path", str(p))
    try:
        return OrganismSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = [x for x in err["loc"] if not (isinstance(x, str) and "[" in x)]
        msg = "this field is required" if err["type"] == "missing" else err["msg"]
        raise OrganismError(f"{p}: field `{json_path(loc)}`: {msg}") from None
