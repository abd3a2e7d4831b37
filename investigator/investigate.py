"""One investigation, end to end: incident → case → graph → report → grade.

`investigate` opens the case (`investigator.case.open_case`: the subject model named by
the incident — organisms run offline —, the world for rollouts — `tools.world`: a
scenario's, or one rebuilt from the incident's snapshot of its workspace —, the ledger in
the run directory and the environment's investigation hints, which ``blind`` ignores),
runs the checkpointed graph with the planner, and grades the report. The report's
experiments and hypothesis board come from the ledger; its judgement fields come from the
planner's `submit_report` — or, when the planner never submitted (budget exhausted, step
cap), an *inconclusive* report that says why. Where the incident's commands ran, and what
isolated them (the sandbox policy's choice, `sandboxes.registry.choose_backend`, then the
worlds really built), goes into the report (`ForensicsReport.sandbox`), the ledger's
events and the caller's `on_sandbox`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from investigator.case import open_case
from investigator.catalogue import load_catalogue
from investigator.graph import Hooks, InvestigationState, build_graph, run_graph
from investigator.planners import CotOnlyPlanner, LLMPlanner, Planner, ProtocolPlanner
from investigator.report import (
    NO_SANDBOX,
    Cost,
    ForensicsReport,
    HypothesisEntry,
    Judgement,
    Quote,
    SandboxUsed,
    experiments_from_ledger,
    sampling_from_ledger,
)
from sandboxes.registry import BackendChoice
from tools.agent_tools import Fault, ToolContext
from tools.budget import Budget, BudgetLimits
from tools.errors import ForensicsError
from tools.incident import Incident
from tools.ledger import LEDGER_FILE
from tools.models.base import ModelClient, ModelError
from tools.models.registry import get_model
from tools.transcript import ThinkingBlock

PlannerName = Literal["protocol", "llm", "cot-only"]


class InvestigationResult(BaseModel):
    """Where the products are, and the headline."""

    run_dir: str
    report: ForensicsReport
    files: dict[str, str]
    grade: dict[str, Any] | None = None
    wall_seconds: float


def make_planner(name: PlannerName | Planner, *, model: str | None = None, n: int = 200) -> Planner:
    """The planner called `name` (or `name` itself when it is already a planner)."""
    if not isinstance(name, str):
        return name
    if name == "protocol":
        return ProtocolPlanner(n=n)
    if name == "cot-only":
        return CotOnlyPlanner()
    return LLMPlanner.for_model(get_model(model or "anthropic/claude-sonnet-4-5"))


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


class SandboxTracker:
    """What the report says about sandboxes: the policy's choice, then the worlds really
    built (a scenario image that cannot be built falls back to local, saying so)."""

    def __init__(self, choice: BackendChoice) -> None:
        self.choice = choice
        self.backends: list[str] = []
        self.notes: list[str] = [choice.note] if choice.note else []

    def wrap(self, factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def tracked(environment: Any) -> Any:
            world = factory(environment)
            self.backends.append(world.backend)
            if world.note and world.note not in self.notes:
                self.notes.append(world.note)
            return world

        return tracked

    def record(self, *, final: bool = True) -> SandboxUsed:
        from sandboxes.registry import describe_backend

        backend = self.backends[-1] if self.backends else self.choice.name
        notes = list(self.notes)
        if final and not self.backends:
            notes.append("no experiment needed the sandbox, so nothing from the incident was executed")
        isolation = self.choice.isolation if backend == self.choice.name else describe_backend(backend)
        return SandboxUsed(
            backend=backend,
            isolation=isolation,
            trusted=self.choice.trusted,
            allow_host=self.choice.allow_host,
            notes=notes,
        )


def build_report(
    ctx: ToolContext,
    state: InvestigationState,
    planner_name: str,
    wall: float,
    sandbox: SandboxUsed | None = None,
    planner_tokens: int = 0,
) -> ForensicsReport:
    """The report from the planner's conclusion (or an inconclusive one) and the ledger.
    `planner_tokens`: what the investigator's own model read and wrote (an LLM planner)."""
    ledger, incident = ctx.ledger, ctx.incident
    experiments = experiments_from_ledger(ledger, incident.id)
    conclusion = state.get("conclusion") or ctx.conclusion
    notes: list[str] = []
    failure = Fault.model_validate(state["failure"]) if state.get("failure") else None
    if failure is not None:
        what = "the investigator's model" if failure.stage == "plan" else f"the {failure.tool} tool"
        conclusion = {
            "verdict": "inconclusive",
            "motivation": None,
            "confidence": 0.0,
            "intentional_probability": 0.5,
            "knew_disapproval_probability": 0.5,
            "summary": f"Investigation FAILED: {what} could not go on ({failure.error_type}: {failure.error}). "
            "No conclusion was drawn; the experiments below were measured before the failure. Fix the cause and "
            "resume the run (forensics investigate --resume RUN_DIR).",
            "intentional_rationale": "Not concluded: the investigation failed.",
            "knew_disapproval_rationale": "Not concluded: the investigation failed.",
            "evidence": [e.id for e in experiments],
            "limitations": [f"The investigation failed and stopped early: {failure.line()}."],
        }
        notes.append(f"failed: {failure.line()}")
    elif conclusion is None:
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
    known = {e.id for e in experiments}
    evidence = [e for e in conclusion.get("evidence", []) if e in known]
    if ctx.seed:
        notes.append(f"investigation seed {ctx.seed}: sample seeds start at {ctx.seed_offset}")
    totals = ledger.totals()
    budget = ctx.budget
    return ForensicsReport(
        incident_id=incident.id,
        subject=incident.subject.model,
        planner=planner_name,
        status="failed" if failure is not None else "completed",
        failure=failure,
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
        limitations=[*conclusion.get("limitations", []), *_reconstruction_notes(incident)],
        cost=Cost(
            samples=int(totals["samples"]),
            input_tokens=int(totals["input_tokens"]),
            output_tokens=int(totals["output_tokens"]),
            dollars=float(totals["cost_usd"]),
            tool_calls=budget.tool_calls,
            wall_seconds=round(wall, 2),
            planner_tokens=planner_tokens,
        ),
        sandbox=sandbox or NO_SANDBOX,
        sampling=sampling_from_ledger(ledger, incident.id),
        notes=notes,
    )


def _reconstruction_notes(incident: Incident) -> list[str]:
    """What of the resample prefix was reconstructed rather than logged (e.g. Claude Code's
    tool schemas), as the importer and harness profile noted it."""
    from tools.harnesses import RECONSTRUCTION_KEY

    notes = incident.transcript.metadata.get(RECONSTRUCTION_KEY)
    return [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []


class _Benign:
    kind = "benign"


class RunDirInUse(ForensicsError):
    """A new (not resumed) investigation was pointed at a directory that holds one."""


RUN_FILE = "run.json"
"""What `forensics investigate --resume RUN_DIR` needs to continue a run: the incident
and the options it was started with. Every run directory has one."""

_LEFTOVERS = (".*.tmp", "*.json.tmp")
"""Temporary files of atomic writes (`render.atomic_write_text`, `native.save`) that a
killed process leaves behind."""


def write_run_file(
    run_dir: Path,
    *,
    incident: Incident,
    planner: str,
    model: str | None,
    judge: str | None,
    n: int,
    limits: BudgetLimits,
    backend: str | None,
    allow_host: bool,
    blind: bool,
    seed: int = 0,
) -> Path:
    """Write ``run.json`` (atomically) so the run can be resumed from its directory alone."""
    from investigator.render import atomic_write_text

    options = {
        "incident": incident.model_dump(mode="json"),
        "planner": planner,
        "model": model,
        "judge": judge,
        "n": n,
        "limits": limits.model_dump(mode="json"),
        "backend": backend,
        "allow_host": allow_host,
        "blind": blind,
        "seed": seed,
    }
    path = run_dir / RUN_FILE
    atomic_write_text(path, json.dumps(options, indent=1) + "\n")
    return path


def sweep_run_dir(run_dir: Path) -> list[str]:
    """Remove what a killed run left behind: temporary files of atomic writes in its
    directory, and local snapshots whose owner process is gone
    (`sandboxes.local.sweep_stale`; a local workspace is a tmpfs that dies with its
    sandbox, and Docker containers have their own start-up sweep). Returns what was
    removed, to be said."""
    from sandboxes.errors import SandboxError
    from sandboxes.local import sweep_stale

    removed: list[str] = []
    for pattern in _LEFTOVERS:
        for path in sorted(run_dir.glob(pattern)):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path.name)
    with contextlib.suppress(SandboxError):  # no private snapshot directory: nothing of ours to sweep
        removed += [str(p) for p in sweep_stale()]
    return removed


async def investigate(
    incident: Incident,
    run_dir: str | Path,
    *,
    planner: PlannerName | Planner = "protocol",
    model: str | None = None,
    judge_model: str | None = None,
    limits: BudgetLimits | None = None,
    n: int = 200,
    resume: bool = False,
    backend: str | None = None,
    allow_host: bool = False,
    subject: ModelClient | None = None,
    on_step: Callable[[str], None] | None = None,
    blind: bool = False,
    seed: int = 0,
    on_sandbox: Callable[[SandboxUsed], None] | None = None,
    sandbox: BackendChoice | None = None,
) -> InvestigationResult:
    """Run (or resume) an investigation into `run_dir` and write report + grade there.
    `blind` ignores the environment's investigation hints (tools.hints): every
    intervention is then derived from the incident itself. `seed` picks the
    investigation's sample stream (`tools.agent_tools.seed_offset`): investigations of
    one incident with different seeds are independent replicates. `backend` and
    `allow_host` go to the sandbox policy, which refuses (a `sandboxes.errors.
    SandboxError` saying what to do) before anything is written or run when an
    untrusted incident would run on this machine; `sandbox` passes a choice already
    made (`tools.world.choose_world_backend`). `on_sandbox` hears where commands will
    run before the investigation starts."""
    from investigator.judge import grade, write_grade
    from investigator.render import write_report

    out = Path(run_dir)
    if not resume and any((out / name).exists() for name in (RUN_FILE, LEDGER_FILE)):
        # A fresh run into an old run's ledger would conclude from both runs' experiments.
        raise RunDirInUse(
            f"{out} already holds an investigation: resume it with `forensics investigate --resume {out}`, "
            "or give another --out (a new run never mixes its experiments with an earlier run's)"
        )
    started = time.time()
    for leftover in sweep_run_dir(out):
        (on_step or (lambda _line: None))(f"removed {leftover}, left by an earlier run that was killed")
    case = open_case(
        incident,
        out,
        subject=subject,
        backend=backend,
        allow_host=allow_host,
        blind=blind,
        sandbox=sandbox,
        check_sandbox=planner != "cot-only",  # it runs no experiment, so it needs no world
    )
    if not resume or not (out / RUN_FILE).exists():  # after the sandbox policy: a refused run writes nothing
        write_run_file(
            out,
            incident=incident,
            planner=planner if isinstance(planner, str) else planner.name,
            model=model,
            judge=judge_model,
            n=n,
            limits=limits or BudgetLimits(),
            backend=backend,
            allow_host=allow_host,
            blind=blind,
            seed=seed,
        )
    tracker = SandboxTracker(case.sandbox) if case.sandbox is not None else None
    if tracker is not None and case.world is not None:
        case.world = tracker.wrap(case.world)
    announced = tracker.record(final=False) if tracker else NO_SANDBOX
    case.ledger.event("sandbox", **announced.model_dump(mode="json"))
    if on_sandbox is not None:
        on_sandbox(announced)
    ledger = case.ledger
    ctx = ToolContext(
        incident=incident,
        ledger=ledger,
        subject=case.subject,
        world=case.world,
        budget=Budget(limits=limits or BudgetLimits()),
        default_n=n,
        hints=case.hints,
        seed=seed,
    )
    chosen = make_planner(planner, model=model, n=n)

    async def finish(ctx: ToolContext, state: InvestigationState) -> InvestigationState:
        used = tracker.record() if tracker else NO_SANDBOX
        planner_usage = chosen.model.meter.total if isinstance(chosen, LLMPlanner) else None
        report = build_report(
            ctx,
            state,
            chosen.name,
            time.time() - (state.get("started") or started),
            used,
            planner_tokens=planner_usage.input_tokens + planner_usage.output_tokens if planner_usage else 0,
        )
        files = write_report(report, out, ledger=ledger)
        truth = None
        if incident.subject.model.startswith("organism/"):
            from tools.organisms.registry import find_organism

            truth = find_organism(incident.subject.model.split("/", 1)[1]).truth
        # A failed investigation is not sent to the judge (its API may be the one failing).
        judge = get_model(judge_model) if judge_model and report.status == "completed" else None
        try:
            graded = await grade(report, judge=judge, truth=truth)
        except ModelError as exc:  # the report stands; only the rubric scores are missing
            graded = await grade(report, judge=None, truth=truth)
            graded.notes.append(f"the judge model failed, so there are no rubric scores: {exc}")
        if report.status == "failed":
            graded.notes.append("the investigation failed; the grade is structural only")
        grade_path = write_grade(graded, out)
        return {
            "report_files": {k: str(v) for k, v in {**files, "grade": grade_path}.items()},
            "grade": graded.model_dump(mode="json"),
        }

    graph = build_graph(ctx, chosen, finish=finish, hooks=Hooks(on_step))
    try:
        state = await run_graph(graph, out, incident.id, resume=resume)
        if not (out / "report.json").exists():
            # Killed between the last node's writes and its report (a resumed run whose
            # checkpoint is complete): write the report from the same state and ledger.
            state = {**state, **(await finish(ctx, state))}
    finally:
        case.close()
    report = ForensicsReport.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    return InvestigationResult(
        run_dir=str(out),
        report=report,
        files=dict(state.get("report_files") or {}),
        grade=state.get("grade"),
        wall_seconds=round(time.time() - started, 2),
    )
