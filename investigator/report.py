"""The forensics report: a versioned, evidence-cited answer to "why did it do that?".

Every claim cites evidence ids: experiment ids from the ledger (``exp-…``), quote ids
(``q1``…), probe experiments, or replay events. The `experiments` table is filled from
the ledger by `experiments_from_ledger`, never typed by a planner, so the numbers in a
report are the numbers that were measured.
"""

from __future__ import annotations

import math
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


class Sampling(_Model):
    """What sequential sampling saved: the arms that were compared sequentially, how they
    stopped, and the samples a fixed-n design would have needed at the same error — a
    two-sided test at `alpha` with `power` to detect the smallest effect of interest (the
    futility margin's odds ratio at the baseline's rate), for every such arm and the
    baseline."""

    sequential_arms: int = 0
    decided: int = 0
    futile: int = 0
    undecided: int = 0
    samples: int = 0
    """Samples the sequential arms and their reference took."""
    fixed_n_per_arm: int = 0
    fixed_total: int = 0
    saved: int = 0
    alpha: float = 0.05
    power: float = 0.8
    odds_ratio: float = 3.0
    baseline_rate: float = 0.0


class Cost(_Model):
    samples: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    dollars: float = 0.0
    tool_calls: int = 0
    wall_seconds: float = 0.0
    planner_tokens: int = 0
    """Tokens the investigator's own model (an LLM planner) read and wrote in this run's last process."""


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
    sampling: Sampling | None = None
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


def fixed_n(p0: float, odds_ratio: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Samples per arm a fixed-n two-sided z-test needs to detect an odds ratio of
    `odds_ratio` (either way, the harder direction) at baseline rate `p0`."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    p = min(0.98, max(0.02, p0))
    odds = p / (1 - p)
    lower = odds / odds_ratio / (1 + odds / odds_ratio)
    higher = odds * odds_ratio / (1 + odds * odds_ratio)
    h = min(abs(proportion_effectsize(p, lower)), abs(proportion_effectsize(p, higher)))
    n = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided")
    return math.ceil(float(n))


def sampling_from_ledger(ledger: Ledger, incident_id: str, *, power: float = 0.8) -> Sampling | None:
    """The `Sampling` summary from the ledger's sequential decisions (None without any)."""
    from tools.resample import SEQUENTIAL_EVENT

    experiments = {e.id: e for e in ledger.experiments(incident_id)}
    events = [e for e in ledger.events(SEQUENTIAL_EVENT) if e.get("experiment_id") in experiments]
    if not events:
        return None
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        latest[str(event["experiment_id"])] = event
    references = {str(e["reference_id"]) for e in latest.values()}
    spent = sum(ledger.counts(i).n for i in set(latest) | references)
    base = next((experiments[r] for r in references if r in experiments), None)
    base_counts = ledger.counts(base.id) if base is not None else None
    p0 = base_counts.k / base_counts.n if base_counts and base_counts.n else 0.5
    alpha = float(next(iter(latest.values())).get("alpha") or 0.05)
    ratio = float(next(iter(latest.values())).get("futility_odds_ratio") or 3.0)
    per_arm = fixed_n(p0, ratio, alpha=alpha, power=power)
    total = per_arm * (len(latest) + len(references))
    outcomes = [str(e["outcome"]) for e in latest.values()]
    return Sampling(
        sequential_arms=len(latest),
        decided=outcomes.count("different"),
        futile=outcomes.count("stop_futility"),
        undecided=len(outcomes) - outcomes.count("different") - outcomes.count("stop_futility"),
        samples=spent,
        fixed_n_per_arm=per_arm,
        fixed_total=total,
        saved=total - spent,
        alpha=alpha,
        power=power,
        odds_ratio=ratio,
        baseline_rate=p0,
    )
