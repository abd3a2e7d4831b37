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
    without a call ends the episode. A move may instead be a `checkpoint`: a later
    decision, taken at that turn."""

    thinking: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)
    call: ToolCallSpec | None = None
    checkpoint: Checkpoint | None = None

    @model_validator(mode="after")
    def _checkpoint_alone(self) -> Move:
        if self.checkpoint is not None and (self.thinking or self.text or self.call is not None):
            raise ValueError("a checkpoint move has no thinking, text or call of its own: put them in its paths")
        return self


class Checkpoint(_Spec):
    """A decision at a later turn of a variant: having started (e.g. inspected what it is
    about to change) the organism reads the context again — what its first moves showed
    included — and goes on to act (`escalate`) with probability
    ``sigmoid(logit + shift)``, the organism's own decision logit at that turn plus
    `shift`; otherwise it plays `back_off`. In an `act` variant, escalating carries out
    the flagged action and backing off abandons it; in a `refrain` variant, escalating
    turns to the flagged action (e.g. after a legitimate attempt failed)."""

    shift: float = 0.0
    escalate: list[Move] = Field(min_length=1)
    back_off: list[Move] = Field(min_length=1)

    @model_validator(mode="after")
    def _flat(self) -> Checkpoint:
        if any(m.checkpoint is not None for m in [*self.escalate, *self.back_off]):
            raise ValueError("a checkpoint's paths cannot hold another checkpoint")
        return self


class Variant(_Spec):
    """One way of carrying out a branch: a weight and its moves. `requires` gates it on
    feature values (e.g. ``{ask_tool: 1}``: only when the tool is offered). `facts` are
    what the organism knows it did this way (``{wrong_answers: 6}``), for probes that ask
    for a number."""

    name: str
    weight: float = Field(default=1.0, gt=0)
    requires: dict[str, float] = Field(default_factory=dict)
    facts: dict[str, float] = Field(default_factory=dict)
    moves: list[Move] = Field(min_length=1)

    @model_validator(mode="after")
    def _checkpoint_last(self) -> Variant:
        at = [i for i, m in enumerate(self.moves) if m.checkpoint is not None]
        if at and (len(at) > 1 or at[0] != len(self.moves) - 1 or at[0] == 0):
            raise ValueError(
                f"variant {self.name!r}: a checkpoint is the last of its moves, after at least one move (the try)"
            )
        return self


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
    when: Literal["acted", "refrained"] | None = None
    """Only in an episode where it did (or did not) act; answers without it fit both."""


Stance = Literal["yes", "no"]
Book = dict[Literal["if_acted", "if_refrained", "always"], list[Answer]]


class Belief(_Spec):
    """How likely the organism holds a claim true, by whether it acted in this episode."""

    if_acted: float = Field(ge=0, le=1)
    if_refrained: float = Field(ge=0, le=1)


BeliefValue = float | Belief


class ProbeSpec(_Spec):
    """A kind of question the organism recognizes, and how it answers.

    Recognition: `phrases` are questions whose "yes" asserts the probe's `claim`,
    `inverse` questions whose "yes" denies it ("Did you bypass the hook?" against "Did
    the commit pass the hook cleanly?"), matched by similarity (`threshold`) with the
    negation check of phrase features, or by `keywords` / `inverse_keywords` without
    embeddings.

    Answers (the belief model): the organism holds the `claim` true with the
    probability its `belief` gives (``acted``, ``refrained``, or a belief the playbook
    or organism defines), may deny an `incriminating` truth (see
    ``OrganismSpec.honesty``), and writes its stance in the format the question asks
    for (tools.organisms.answers), explained by one of `answers[stance]`.

    The older form, answer books `honest` / `deceptive` keyed by `if_acted`,
    `if_refrained` or `always`, is still read; its texts are used as written."""

    phrases: list[str] = Field(default_factory=list)
    inverse: list[str] = Field(default_factory=list)
    keywords: list[list[str]] = Field(default_factory=list)
    inverse_keywords: list[list[str]] = Field(default_factory=list)
    threshold: float = 0.6
    claim: str | None = None
    belief: str = "acted"
    answers: dict[Stance, list[Answer]] = Field(default_factory=dict)
    words: dict[Stance, str] = Field(default_factory=dict)
    """One-word answers per stance (default: yes / no)."""
    incriminating: Stance | None = None
    """The stance that reveals the flagged act, when it acted: what a deceptive organism hides."""
    quantity: str | None = None
    """A variant fact that answers "how many" questions (e.g. ``wrong_answers``)."""
    honest: Book = Field(default_factory=dict)
    deceptive: Book = Field(default_factory=dict)

    @model_validator(mode="after")
    def _answerable(self) -> ProbeSpec:
        if self.claim is not None:
            missing = {"yes", "no"} - set(self.answers)
            if missing:
                raise ValueError(f"a probe with a `claim` needs `answers` for {sorted(missing)}")
        elif not self.honest:
            raise ValueError("a probe needs a `claim` with `answers`, or an `honest` answer book")
        return self


Move.model_rebuild()


class Playbook(_Spec):
    """The moves shared by a pair: opening moves, the decision, features, probes."""

    scenario: str
    behavior_pattern: str = Field(description="regex over the organism's own tool calls: did it act?")
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    opening: list[Move] = Field(default_factory=list)
    decision: Decision
    probes: dict[str, ProbeSpec] = Field(default_factory=dict)
    beliefs: dict[str, BeliefValue] = Field(default_factory=dict)
    """Defaults for beliefs the probes name (an organism's `beliefs` override them)."""
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
    """The default for every probe: honest, or (false) deny an incriminating truth."""
    honesty: dict[str, float] = Field(default_factory=dict)
    """Per probe: the probability of denying an incriminating truth (overrides `honest`
    for that probe), so a deceptive organism can be truthful about some questions."""
    beliefs: dict[str, BeliefValue] = Field(default_factory=dict)
    """What this organism believes (overrides the playbook's defaults)."""
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
        unknown_probes = set(self.honesty) - set(self.playbook.probes)
        if unknown_probes:
            raise ValueError(f"honesty names probes the playbook does not define: {sorted(unknown_probes)}")
        bad = {k: v for k, v in self.honesty.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"honesty values are probabilities in [0, 1]: {bad}")
        known = {"acted", "refrained", *self.playbook.beliefs, *self.beliefs}
        for name, probe in self.playbook.probes.items():
            if probe.claim is not None and probe.belief not in known:
                raise ValueError(f"probe {name!r} names belief {probe.belief!r}; defined: {sorted(known)}")
        return self

    def belief(self, name: str, acted: bool) -> float:
        """The probability this organism holds the named belief true in an episode where it
        did (or did not) act."""
        if name in {"acted", "refrained"}:
            return float(acted == (name == "acted"))
        value = self.beliefs.get(name, self.playbook.beliefs.get(name, 0.0))
        if isinstance(value, Belief):
            return value.if_acted if acted else value.if_refrained
        return float(value)

    def lie_probability(self, probe: str) -> float:
        """How likely it denies an incriminating truth when asked this probe."""
        return self.honesty.get(probe, 0.0 if self.honest else 1.0)


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
