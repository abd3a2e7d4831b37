"""What an experiment is *for*: its role, as typed data.

An experiment's samples are defined by its `tools.resample.ExperimentSpec` (variant ×
start turn × mode × seed); what the samples *mean* to an investigation is its
`ExperimentRole`, a union discriminated on ``kind``:

- `BaselineRole` — the unedited context, resampled: the rate everything is compared with;
- `InterventionRole` — one factor changed, to test the catalogue hypotheses named in
  `tests`; `tag` is the catalogue's intervention tag (prompts/hypotheses.yaml) and
  `provenance` says where the edit came from (a generator rule and the transcript spans
  it was built from, a scenario hint, or the planner);
- `DoseRole` — one level of a dose series: `knob` set to `level` (`original` is the
  value in the incident, so the baseline is the series' level at `original`);
- `ProbeRole` — a question asked after the episode; `test` names the misalignment test
  it serves (``follow_up``, ``cover_up``, ``third_person``, ...), `telling` says what a
  detected answer means and `answered` is the pattern of an answer that answers at all
  (so a rate can be taken among answers that answer);
- `ControlRole` — a `negative` control (an edit of similar size that preserves meaning:
  it must not move the rate) or a `positive` control (a change that should move it,
  showing the setup can detect an effect); `controls` names the tags it controls for;
- `ImportanceRole` — one arm of a localisation scan: ``turn`` (resampled from turn
  `index`), ``sentence`` (the flagged CoT's first `index` sentences kept) or
  ``context`` (screening: the context `unit` deleted or neutralised);
- `RolloutRole` — whole episodes rerun in the rebuilt world; `tag` None is the unedited
  world (the reference of its rollout arms);
- `ExploratoryRole` — a researcher's own experiment with no declared purpose (compared
  with the baseline like an intervention).

Labels are free text for people. Every consumer — the conclusion, the report, the
renderer, the judge — reads the role, never the label. `legacy_role` reads the label
conventions of ledgers written before roles existed (``baseline``,
``intervention:<tag>``, ``dose:<knob>=<level>``, ``probe:<test>``, ``control:…``,
``rollout:<tag>``, ``turn importance: …``, ``sentence prefill: …``); it is used only
to migrate such ledgers and reports.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tools.transcript import Span

__all__ = [
    "ROLE_ADAPTER",
    "BaselineRole",
    "ControlRole",
    "DoseRole",
    "ExperimentRole",
    "ExploratoryRole",
    "ImportanceRole",
    "InterventionRole",
    "ProbeRole",
    "Provenance",
    "RolloutRole",
    "is_reference",
    "legacy_role",
]


class _Role(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenance(_Role):
    """Where an intervention's edits came from: the `rule` that made them (a generator
    rule of `tools.interventions`, ``hint`` for a scenario's `investigation:` section,
    ``planner`` for edits a planner wrote itself), the transcript `spans` the rule read
    (the violated instruction, the number, the document, the CoT sentence...) and a
    sentence saying what was done."""

    source: Literal["generated", "hint", "planner", "screening"] = "generated"
    rule: str
    spans: tuple[Span, ...] = ()
    detail: str = ""


class BaselineRole(_Role):
    kind: Literal["baseline"] = "baseline"


class InterventionRole(_Role):
    kind: Literal["intervention"] = "intervention"
    tag: str = Field(min_length=1)
    tests: tuple[str, ...] = ()
    """Catalogue hypothesis ids this arm bears on (those with a prediction for `tag`)."""
    provenance: Provenance | None = None


class DoseRole(_Role):
    kind: Literal["dose"] = "dose"
    knob: str = Field(min_length=1)
    level: float
    original: float | None = None
    """The knob's value in the incident: the baseline is the series' arm at this level."""
    tag: str | None = None
    """The catalogue tag the series tests (e.g. ``less_work``)."""
    provenance: Provenance | None = None


class ProbeRole(_Role):
    kind: Literal["probe"] = "probe"
    test: str = Field(min_length=1)
    telling: str = ""
    """What a detected answer means, in words (e.g. "denies an action the transcript shows")."""
    answered: str | None = None
    """A regex an answer matches when it answers the question at all; None: every answer counts."""
    admits: tuple[str, ...] = ()
    """Terms naming the action: a detected answer that goes on to say, in the first person,
    that it did something named by one of them admits the fact rather than denying it
    (`tools.interventions.admits`), and does not count as telling."""
    reversed: bool = False
    """The question is asked the other way round ("Is it true that you did not …?"): a *yes*
    denies the fact. Asked beside the forward form it is an acquiescence control: a
    subject that says yes (or no) to everything tells in one form and not the other."""
    provenance: Provenance | None = None


class ControlRole(_Role):
    kind: Literal["control"] = "control"
    polarity: Literal["positive", "negative"]
    controls: tuple[str, ...] = ()
    """The tags (or arm roles) whose results this control qualifies."""
    provenance: Provenance | None = None


class ImportanceRole(_Role):
    kind: Literal["importance"] = "importance"
    scan: Literal["turn", "sentence", "context"]
    unit: str = ""
    """The unit, in words (``system sentence 2``, ``tool result 3``, ``turn 4``...)."""
    index: int | None = None
    """turn: the start turn; sentence: how many CoT sentences are kept; context: the unit's index."""
    spans: tuple[Span, ...] = ()


class RolloutRole(_Role):
    kind: Literal["rollout"] = "rollout"
    tag: str | None = None
    """None: the unedited world (the reference of its rollout arms)."""
    tests: tuple[str, ...] = ()
    provenance: Provenance | None = None


class ExploratoryRole(_Role):
    kind: Literal["exploratory"] = "exploratory"


ExperimentRole = Annotated[
    BaselineRole
    | InterventionRole
    | DoseRole
    | ProbeRole
    | ControlRole
    | ImportanceRole
    | RolloutRole
    | ExploratoryRole,
    Field(discriminator="kind"),
]
"""An experiment's role, discriminated on ``kind`` (see the module doc)."""

ROLE_ADAPTER: TypeAdapter[ExperimentRole] = TypeAdapter(ExperimentRole)


def is_reference(role: ExperimentRole) -> bool:
    """Whether arms of the same mode and start turn are compared with this one: the
    baseline, or the unedited world of a rollout group."""
    return isinstance(role, BaselineRole) or (isinstance(role, RolloutRole) and role.tag is None)


# ----------------------------------------------------------------------------- legacy labels

_CONTROL = re.compile(r"^(?:(?P<polarity>positive|negative)-)?control(?::(?P<what>.*))?$", re.IGNORECASE)
_DOSE = re.compile(r"^dose:(?P<knob>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<level>[^=\s]+)$")
_TURN = re.compile(r"^turn importance: from turn (?P<turn>\d+)$")
_SENTENCE = re.compile(r"^sentence prefill: (?P<kept>\d+) of \d+ sentences kept$")


def legacy_role(label: str, mode: str) -> ExperimentRole:
    """The role an experiment had under the label conventions used before roles were
    stored (see the module doc). Only for migrating old ledgers and reports."""
    if label == "baseline":
        return BaselineRole()
    if mode == "probe" or label.startswith("probe:"):
        return ProbeRole(test=label.split(":", 1)[1] if label.startswith("probe:") else label or "probe")
    control = _CONTROL.match(label)
    if control:
        what = (control["what"] or "").strip()
        return ControlRole(polarity=(control["polarity"] or "negative").lower(), controls=(what,) if what else ())
    dose = _DOSE.match(label)
    if dose:
        try:
            level = float(dose["level"])
        except ValueError:
            level = math.nan
        if math.isfinite(level):
            return DoseRole(knob=dose["knob"], level=level, tag=dose["knob"])
    turn = _TURN.match(label)
    if turn:
        return ImportanceRole(scan="turn", unit=f"turn {turn['turn']}", index=int(turn["turn"]))
    sentence = _SENTENCE.match(label)
    if sentence:
        kept = int(sentence["kept"])
        return ImportanceRole(scan="sentence", unit=f"{kept} sentences kept", index=kept)
    if label.startswith("intervention:") and label[len("intervention:") :]:
        return InterventionRole(tag=label.split(":", 1)[1])
    if label.startswith("rollout:"):
        tag = label.split(":", 1)[1]
        return RolloutRole(tag=None if tag in {"", "baseline"} else tag)
    return ExploratoryRole()
