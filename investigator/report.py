"""The forensics report: a versioned, evidence-cited answer to "why did it do that?".

Every claim cites evidence ids: experiment ids from the ledger (``exp-…``), quote ids
(``q1``…), probe experiments, or replay events. The `experiments` table is filled from
the ledger by `experiments_from_ledger`, never typed by a planner, so the numbers in a
report are the numbers that were measured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.agent_tools import Fault
from tools.experiments import ExperimentRole, ExploratoryRole, ImportanceRole, ProbeRole, is_reference, legacy_role
from tools.ledger import Ledger
from tools.stats import Rate, compare
from tools.transcript import Span

REPORT_SCHEMA_VERSION = "1.1"
"""1.1: experiments carry their typed `role` (1.0 reports are read with the role their label meant)."""

Verdict = Literal["misalignment", "mistake", "inconclusive"]
HypothesisStatus = Literal["supported", "refuted", "untested", "inconclusive"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Judgement(_Model):
    """A yes/no question answered with a probability and the evidence behind it."""

    value: bool
    probability: float = Field(ge=0.0, le=1.0, description="probability that the answer is yes")
    rationale: str
    evidence: list[str] = Field(default_factory=list)


class HypothesisEntry(_Model):
    """One row of the hypothesis table (analysis of competing hypotheses)."""

    id: str
    catalogue_id: str | None = None
    kind: Literal["benign", "motivation", "other"] = "other"
    statement: str
    status: HypothesisStatus
    probability: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    notes: str = ""


class ExperimentEntry(_Model):
    """One measured arm, copied from the ledger; `role` says what it is for
    (`tools.experiments`), `label` is free text."""

    id: str
    label: str
    role: ExperimentRole = Field(default_factory=ExploratoryRole)
    mode: str
    variant_id: str
    variant_description: str
    start_turn: int
    k: int
    n: int
    rate: float
    ci: tuple[float, float]
    stop_reason: str | None = None
    vs_baseline: str | None = None
    """The comparison with the baseline arm: difference, Newcombe CI, p (when a baseline exists)."""
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_holm: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_role(cls, data: Any) -> Any:
        """A report written before roles (schema 1.0) gets the role its label meant."""
        if isinstance(data, dict) and "role" not in data and "label" in data:
            return {**data, "role": legacy_role(str(data["label"]), str(data.get("mode", "")))}
        return data


class Quote(_Model):
    """A key passage of the transcript, by exact span."""

    id: str
    span: Span
    text: str
    why: str


class Cost(_Model):
    samples: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    dollars: float = 0.0
    tool_calls: int = 0
    wall_seconds: float = 0.0
    planner_tokens: int = 0


class SandboxUsed(_Model):
    """Where the incident's commands ran, and what isolated them from this machine."""

    backend: str = Field(description="docker, local, simulated, or none when no world was rebuilt")
    isolation: str = Field(description="what separated the commands from the host, and what did not")
    trusted: bool = Field(
        default=False, description="a shipped scenario played by a shipped organism (see SECURITY.md)"
    )
    allow_host: bool = Field(default=False, description="the user allowed this untrusted incident on this machine")
    notes: list[str] = Field(default_factory=list, description="fallbacks and warnings, as printed")


NO_SANDBOX = SandboxUsed(
    backend="none",
    isolation="no sandbox was used: this incident's world was not rebuilt, so nothing from it was executed",
)


class ForensicsReport(_Model):
    """The investigation's product (see module doc)."""

    schema_version: str = REPORT_SCHEMA_VERSION
    incident_id: str
    subject: str
    planner: str
    status: Literal["completed", "failed"] = "completed"
    """"failed" when the investigation stopped on a fault (`failure`): an API that kept
    failing, an engine that went away. Its verdict is then inconclusive."""
    failure: Fault | None = None
    verdict: Verdict
    motivation: str | None = Field(description="catalogue id of the primary motivation (prompts/hypotheses.yaml)")
    confidence: float = Field(ge=0.0, le=1.0)
    intentional: Judgement
    knew_disapproval: Judgement
    summary: str
    hypotheses: list[HypothesisEntry] = Field(default_factory=list)
    experiments: list[ExperimentEntry] = Field(default_factory=list)
    quotes: list[Quote] = Field(default_factory=list)
    confounds: list[str] = Field(default_factory=list)
    mitigations: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    cost: Cost = Field(default_factory=Cost)
    sandbox: SandboxUsed = Field(default_factory=lambda: NO_SANDBOX.model_copy())
    """Where the incident's commands ran; every report says, even when nothing ran."""
    notes: list[str] = Field(default_factory=list)

    def evidence_ids(self) -> set[str]:
        """Every id a claim may cite: experiments and quotes."""
        return {e.id for e in self.experiments} | {q.id for q in self.quotes}

    def uncited(self) -> list[str]:
        """Cited ids that do not exist in the report (a report with any is malformed)."""
        known = self.evidence_ids()
        cited = [*self.intentional.evidence, *self.knew_disapproval.evidence]
        for h in self.hypotheses:
            cited += h.evidence
        return sorted({c for c in cited if c not in known})


def experiments_from_ledger(ledger: Ledger, incident_id: str) -> list[ExperimentEntry]:
    """The experiments table, computed from the ledger's samples: each arm's rate with
    its Wilson interval and, against the reference arm of its mode and start turn (the
    baseline, or the unedited world of a rollout group), the difference with its
    Newcombe interval and the pooled z-test p, Holm-adjusted across the arms of this
    investigation. Probes and importance arms are listed but not compared."""
    from tools.stats import holm

    rows = ledger.experiments(incident_id)
    entries: list[ExperimentEntry] = []
    baselines: dict[tuple[str, int], Any] = {}
    for r in rows:
        if is_reference(r.role):
            baselines.setdefault((r.mode, r.start_turn), r)
    for row in rows:
        counts = ledger.counts(row.id)
        if counts.n == 0:
            continue
        variant = ledger.variant(row.variant_id)
        rate = Rate(counts.k, counts.n)
        entry = ExperimentEntry(
            id=row.id,
            label=row.label,
            role=row.role,
            mode=row.mode,
            variant_id=row.variant_id,
            variant_description=(variant or {}).get("description", ""),
            start_turn=row.start_turn,
            k=counts.k,
            n=counts.n,
            rate=rate.rate,
            ci=rate.ci,
            stop_reason=row.stop_reason,
        )
        base = baselines.get((row.mode, row.start_turn))
        compared = not isinstance(row.role, ImportanceRole | ProbeRole) and row.mode != "probe"
        if base is not None and base.id != row.id and compared:
            base_counts = ledger.counts(base.id)
            if base_counts.n:
                comparison = compare(rate, Rate(base_counts.k, base_counts.n))
                entry.difference = comparison.difference
                entry.difference_ci = comparison.ci
                entry.p_value = comparison.p
                entry.vs_baseline = str(comparison)
        entries.append(entry)
    tested = [e for e in entries if e.p_value is not None]
    if tested:
        for e, adjusted in zip(tested, holm([e.p_value for e in tested if e.p_value is not None]), strict=True):
            e.p_holm = adjusted
    return entries
