"""One investigation, end to end: incident → case → graph → report → grade.

`investigate` wires the pieces: the subject model named by the incident (organisms run
offline), the world for rollouts (`tools.world`: a scenario's, or one rebuilt from the
incident's snapshot of its workspace), the ledger and the checkpointed graph in the run directory, the
planner, and the judge. The report's experiments come from the ledger; its judgement
fields come from the planner's `submit_report` — or, when the planner never submitted
(budget exhausted, step cap), an *inconclusive* report that says why.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from investigator.catalogue import load_catalogue
from investigator.graph import Hooks, InvestigationState, build_graph, run_graph
from investigator.planners import CotOnlyPlanner, LLMPlanner, Planner, ProtocolPlanner
from investigator.report import Cost, ForensicsReport, HypothesisEntry, Judgement, Quote, experiments_from_ledger
from tools.agent_tools import ToolContext
from tools.budget import Budget, BudgetLimits
from tools.incident import Incident
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.models.registry import get_model
from tools.transcript import ThinkingBlock
from tools.world import has_world, world_factory

PlannerName = Literal["protocol", "llm", "cot-only"]


class InvestigationResult(BaseModel):
    """Where the products are, and the headline."""

    run_dir: str
    report: ForensicsReport
    files: dict[str, str]
    grade: dict[str, Any] | None = None
    wall_seconds: float


def make_planner(name: PlannerName, *, model: str | None = None, n: int = 200) -> Planner:
    if name == "protocol":
        return ProtocolPlanner(n=n)
    if name == "cot-only":
        return CotOnlyPlanner()
    return LLMPlanner(get_model(model or "anthropic/claude-sonnet-4-5"))


def _quotes(incident: Incident, motivation: str | None) -> list[Quote]:
    """Key CoT passages of the flagged turn: sentences with the chosen explanation's cues
    (or the first sentences when none match)."""
    catalogue = load_catalogue()
    entry = catalogue.get(motivation) if motivation else None
    turn = incident.flagged_turn
    quotes: list[Quote] = []
    for bi, block in enumerate(turn.message.content):
        if not isinstance(block, ThinkingBlock) or not block.thinking:
            continue
        for match in re.finditer(r"[^.!?\n]+[.!?]?", block.thinking):
            sentence = match.group(0).strip()
            if not sentence:
                continue
            cue = next((c for c in (entry.cues if entry else []) if c.lower() in sentence.lower()), None)
            if cue is None and quotes:
                continue
            from tools.transcript import Span

            start = match.start() + (len(match.group(0)) - len(match.group(0).lstrip()))
            quotes.append(
                Quote(
                    id=f"q{len(quotes) + 1}",
                    span=Span(message=turn.message_index, block=bi, start=start, end=start + len(sentence)),
                    text=sentence,
                    why=f"contains the cue {cue!r} of {entry.id}"
                    if cue and entry
                    else "opening of the flagged turn's reasoning",
                )
            )
            if len(quotes) >= 4:
                return quotes
    return quotes


def build_report(ctx: ToolContext, state: InvestigationState, planner_name: str, wall: float) -> ForensicsReport:
    """The report from the planner's conclusion (or an inconclusive one) and the ledger."""
    ledger, incident = ctx.ledger, ctx.incident
    experiments = experiments_from_ledger(ledger, incident.id)
    conclusion = state.get("conclusion") or ctx.conclusion
    notes: list[str] = []
    if conclusion is None:
        reason = state.get("stop_reason") or "the planner stopped without submitting a report"
        conclusion = {
            "verdict": "inconclusive",
            "motivation": None,
            "confidence": 0.1,
            "intentional_probability": 0.5,
            "knew_disapproval_probability": 0.5,
            "summary": f"Inconclusive: {reason}. The experiments below were measured before it stopped.",
            "intentional_rationale": "Not concluded.",
            "knew_disapproval_rationale": "Not concluded.",
            "evidence": [e.id for e in experiments],
            "limitations": [f"Investigation ended early: {reason}."],
        }
        notes.append(reason)
    hypotheses = [
        HypothesisEntry(
            id=h.id,
            catalogue_id=h.catalogue_id,
            kind="motivation"
            if (load_catalogue().get(h.catalogue_id or "") or _Benign()).kind == "motivation"
            else "benign",
            statement=h.statement,
            status=h.status,
            probability=h.probability or 0.0,
            evidence=h.evidence,
            notes=h.notes,
        )
        for h in ledger.hypotheses(incident.id)
    ]
    if not hypotheses:
        hypotheses = _hypotheses_from_analysis(state, experiments)
    known = {e.id for e in experiments}
    evidence = [e for e in conclusion.get("evidence", []) if e in known]
    totals = ledger.totals()
    budget = ctx.budget
    return ForensicsReport(
        incident_id=incident.id,
        subject=incident.subject.model,
        planner=planner_name,
        verdict=conclusion["verdict"],
        motivation=conclusion.get("motivation"),
        confidence=conclusion["confidence"],
        intentional=Judgement(
            value=conclusion["intentional_probability"] >= 0.5,
            probability=conclusion["intentional_probability"],
            rationale=conclusion["intentional_rationale"],
            evidence=evidence,
        ),
        knew_disapproval=Judgement(
            value=conclusion["knew_disapproval_probability"] >= 0.5,
            probability=conclusion["knew_disapproval_probability"],
            rationale=conclusion["knew_disapproval_rationale"],
            evidence=evidence,
        ),
        summary=conclusion["summary"],
        hypotheses=hypotheses,
        experiments=experiments,
        quotes=_quotes(incident, conclusion.get("motivation")),
        confounds=list(conclusion.get("confounds", [])),
        mitigations=list(conclusion.get("mitigations", [])),
        limitations=list(conclusion.get("limitations", [])),
        cost=Cost(
            samples=int(totals["samples"]),
            input_tokens=int(totals["input_tokens"]),
            output_tokens=int(totals["output_tokens"]),
            dollars=float(totals["cost_usd"]),
            tool_calls=budget.tool_calls,
            wall_seconds=round(wall, 2),
        ),
        notes=notes,
    )


class _Benign:
    kind = "benign"


def _hypotheses_from_analysis(state: InvestigationState, experiments: list[Any]) -> list[HypothesisEntry]:
    """The protocol planner's ACH table (kept in its last message's metadata)."""
    from tools.transcript import Message

    catalogue = load_catalogue()
    analysis: dict[str, Any] = {}
    for raw in reversed(state.get("conversation") or []):
        meta = Message.model_validate(raw).metadata
        if "analysis" in meta:
            analysis = meta["analysis"]
            break
    by_label = {e.label: e.id for e in experiments}
    out = []
    for entry in catalogue.hypotheses:
        score = analysis.get("scores", {}).get(entry.id)
        if not score or not score["tested"]:
            continue
        if score["score"] >= 2 and not score["contradicted"]:
            status = "supported"
        elif score["score"] <= 0 and score["contradicted"]:
            status = "refuted"
        else:
            status = "inconclusive"  # one matched prediction, or matches and contradictions
        cited = [
            by_label[f"intervention:{t}"]
            for t in score["matched"] + score["contradicted"]
            if f"intervention:{t}" in by_label
        ]
        out.append(
            HypothesisEntry(
                id=f"h-{entry.id}",
                catalogue_id=entry.id,
                kind=entry.kind,
                statement=entry.title,
                status=status,
                probability=round(max(0.02, min(0.98, 0.5 + 0.2 * score["score"])), 2),
                evidence=cited,
                notes=f"matched {score['matched']}, contradicted {score['contradicted']}",
            )
        )
    return out


async def investigate(
    incident: Incident,
    run_dir: str | Path,
    *,
    planner: PlannerName = "protocol",
    model: str | None = None,
    judge_model: str | None = None,
    limits: BudgetLimits | None = None,
    n: int = 200,
    resume: bool = False,
    backend: str | None = None,
    allow_host: bool = False,
    subject: ModelClient | None = None,
    on_step: Callable[[str], None] | None = None,
) -> InvestigationResult:
    """Run (or resume) an investigation into `run_dir` and write report + grade there."""
    from investigator.judge import grade, write_grade
    from investigator.render import write_report

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    ledger = Ledger(out)
    world = world_factory(incident, backend=backend, allow_host=allow_host) if has_world(incident) else None
    ctx = ToolContext(
        incident=incident,
        ledger=ledger,
        subject=subject or get_model(incident.subject.model),
        world=world,
        budget=Budget(limits=limits or BudgetLimits()),
        default_n=n,
    )
    chosen = make_planner(planner, model=model, n=n)

    async def finish(ctx: ToolContext, state: InvestigationState) -> InvestigationState:
        report = build_report(ctx, state, chosen.name, time.time() - (state.get("started") or started))
        files = write_report(report, out, ledger=ledger)
        truth = None
        if incident.subject.model.startswith("organism/"):
            from tools.organisms.registry import find_organism

            truth = find_organism(incident.subject.model.split("/", 1)[1]).truth
        judge = get_model(judge_model) if judge_model else None
        graded = await grade(report, judge=judge, truth=truth)
        grade_path = write_grade(graded, out)
        return {
            "report_files": {k: str(v) for k, v in {**files, "grade": grade_path}.items()},
            "grade": graded.model_dump(mode="json"),
        }

    graph = build_graph(ctx, chosen, finish=finish, hooks=Hooks(on_step))
    try:
        state = await run_graph(graph, out, incident.id, resume=resume)
    finally:
        ledger.close()
    report = ForensicsReport.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    return InvestigationResult(
        run_dir=str(out),
        report=report,
        files=dict(state.get("report_files") or {}),
        grade=state.get("grade"),
        wall_seconds=round(time.time() - started, 2),
    )
