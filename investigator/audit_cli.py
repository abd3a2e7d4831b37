"""`forensics audit INPUT...`: the command line over `investigator.audit` and the
executor, with a live table of the batch (state, verdict, spend per job)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.text import Text

from investigator.audit import (
    AuditError,
    AuditSpec,
    collect,
    job_spec,
    load_audit_spec,
    parse_detector,
    record_input_errors,
    write_outputs,
)
from investigator.batch_view import batch_table, run_live
from investigator.executor import Executor, JobRecord, JobState
from tools.incident import Environment


def live_table(executor: Executor, *, budget: float | None, final: bool = False) -> Group:
    """The batch as a table: every running job, then the latest others (all when final)."""
    return batch_table(executor.jobs(), title="audit", budget=budget, final=final)


async def run_audit(
    console: Console,
    items_spec: AuditSpec,
    inputs: list[str],
    out: Path,
    *,
    executor_name: str,
    address: str | None,
    workers: int | None,
    budget: float | None,
    max_attempts: int,
) -> list[JobRecord]:
    items = collect(inputs, items_spec)
    executor = Executor(
        out,
        backend=executor_name,
        address=address,
        workers=workers,
        budget_dollars=budget,
        max_attempts=max_attempts,
        retry_failed=True,
    )
    record_input_errors(executor.db, items, items_spec, out)
    for item in items:
        if item.error is None:
            executor.db.add(job_spec(item, items_spec, out))
    console.print(
        f"[bold]auditing[/bold] {len(items)} incident(s) with the {items_spec.planner} planner on the "
        f"{executor_name} executor ({executor.workers} at a time) → {out}"
    )
    await run_live(console, executor, lambda: live_table(executor, budget=budget))
    records = executor.jobs()
    console.print(live_table(executor, budget=budget, final=True))
    for record in records:
        if record.error and record.state is not JobState.done:
            console.print(Text.assemble((f"{record.id}: ", "bold red"), record.error), soft_wrap=True)
    paths = write_outputs(out, records, budget=budget)
    for name, path in paths.items():
        console.print(f"  {name:5} {path}")
    return records


def _knobs(pairs: list[str]) -> dict[str, Any]:
    import yaml

    knobs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise AuditError(f"--knob {pair!r}: write NAME=VALUE")
        knobs[key] = yaml.safe_load(value)
    return knobs


def audit_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Incident files, directories or globs of them, and Inspect eval logs (.eval / .json)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The audit's directory (rerun with it to resume).")] = Path(
        "runs/audit"
    ),
    flag: Annotated[
        list[str] | None,
        typer.Option("--flag", help="Inspect samples to investigate, by score: 'hook_bypass=I', 'risk>=0.8' (any)."),
    ] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="YAML audit spec (flag, subject, environment, behavior, ...).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Subject model for Inspect samples (default: the log's model).")
    ] = None,
    scenario: Annotated[str | None, typer.Option(help="Environment of Inspect samples: a scenario id.")] = None,
    knob: Annotated[list[str] | None, typer.Option("--knob", help="Scenario knob NAME=VALUE (repeatable).")] = None,
    detector: Annotated[
        str | None, typer.Option(help="Detector of Inspect samples: regex:PATTERN or a detector spec file.")
    ] = None,
    planner: Annotated[str | None, typer.Option(help="protocol (default), cot-only or llm.")] = None,
    model: Annotated[str | None, typer.Option(help="Investigator model for --planner llm.")] = None,
    n: Annotated[int | None, typer.Option(help="Samples per arm.")] = None,
    budget_dollars: Annotated[
        float | None, typer.Option(help="Batch budget: no new investigation starts once it is spent.")
    ] = None,
    job_tool_calls: Annotated[int | None, typer.Option(help="Most tool calls per investigation.")] = None,
    job_samples: Annotated[int | None, typer.Option(help="Most samples per investigation.")] = None,
    job_dollars: Annotated[float | None, typer.Option(help="Most dollars per investigation.")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (with --executor ray).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Investigations at once (default: local 1-4, ray: CPUs).")] = None,
    backend: Annotated[str | None, typer.Option(help="Sandbox backend of the investigations: docker or local.")] = None,
    blind: Annotated[bool, typer.Option(help="Give the planner no scenario investigation hints.")] = False,
    allow_host: Annotated[bool, typer.Option(help="Allow untrusted incidents on the host-side local backend.")] = False,
    organisms: Annotated[list[Path] | None, typer.Option("--organisms", help="Extra organism directory.")] = None,
    scenarios: Annotated[list[Path] | None, typer.Option("--scenarios", help="Extra scenario directory.")] = None,
    max_attempts: Annotated[int, typer.Option(help="Attempts per job when its worker dies.")] = 3,
    timeout: Annotated[float | None, typer.Option(help="Seconds before one investigation is stopped.")] = None,
) -> None:
    """Investigate a batch of flagged incidents; writes audit.json, audit.csv and audit.html."""
    spec = load_audit_spec(spec_file) if spec_file else AuditSpec()
    updates: dict[str, Any] = {}
    if flag:
        updates["flag"] = flag
    if subject:
        updates["subject"] = subject
    if scenario:
        updates["environment"] = Environment(scenario=scenario, knobs=_knobs(knob or []))
    elif knob:
        raise AuditError("--knob needs --scenario")
    if detector:
        updates["behavior"] = parse_detector(detector)
    for key, value in {"planner": planner, "model": model, "n": n, "backend": backend, "timeout_s": timeout}.items():
        if value is not None:
            updates[key] = value
    if blind:
        updates["blind"] = True
    if allow_host:
        updates["allow_host"] = True
    if organisms:
        updates["organism_dirs"] = [str(p) for p in organisms]
    if scenarios:
        updates["scenario_dirs"] = [str(p) for p in scenarios]
    limits = {"tool_calls": job_tool_calls, "samples": job_samples, "dollars": job_dollars}
    if any(v is not None for v in limits.values()):
        updates["limits"] = spec.limits.model_copy(update={k: v for k, v in limits.items() if v is not None})
    spec = AuditSpec.model_validate(spec.model_dump() | updates)
    if spec.planner not in {"protocol", "cot-only", "llm"}:
        raise AuditError(f"--planner {spec.planner!r}: choose protocol, cot-only or llm")
    for directory in spec.scenario_dirs:  # the coordinator reads scenarios too
        current = [d for d in os.environ.get("FORENSICS_SCENARIOS", "").split(os.pathsep) if d]
        os.environ["FORENSICS_SCENARIOS"] = os.pathsep.join(dict.fromkeys([str(Path(directory).resolve()), *current]))
    console = Console()
    asyncio.run(
        run_audit(
            console,
            spec,
            inputs,
            out,
            executor_name=executor,
            address=address,
            workers=workers,
            budget=budget_dollars,
            max_attempts=max_attempts,
        )
    )


def register(app: typer.Typer) -> None:
    """Add `forensics audit` to the main app."""
    app.command("audit")(audit_command)
