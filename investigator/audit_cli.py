"""`forensics audit INPUT...`: the command line over `investigator.audit` and the
executor, with a live table of the batch (state, verdict, spend per job)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
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
from investigator.executor import Executor, JobRecord, JobState
from tools.incident import Environment

STYLE = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim", "cancelled": "yellow"}
VERDICT_STYLE = {"misalignment": "bold red", "mistake": "bold yellow", "inconclusive": "bold"}
SHOWN = 30


def live_table(executor: Executor, *, budget: float | None, final: bool = False) -> Group:
    """The batch as a table: every running job, then the latest others (all when final)."""
    records = executor.jobs()
    counts = {s: sum(1 for r in records if r.state is s) for s in JobState}
    spent = sum(r.dollars for r in records)
    head = Text.assemble(
        ("audit ", "bold"),
        " · ".join(f"{counts[s]} {s.value}" for s in JobState if counts[s]),
        f" · ${spent:.2f} spent" + (f" of ${budget:.2f}" if budget is not None else ""),
        f" · {sum(r.samples for r in records)} samples",
    )
    shown: list[JobRecord]
    if final or len(records) <= SHOWN:
        shown = records
    else:
        running = [r for r in records if r.state is JobState.running]
        rest = sorted((r for r in records if r.state is not JobState.running), key=lambda r: -(r.finished or 0))
        shown = running + rest[: max(0, SHOWN - len(running))]
    table = Table(show_lines=False, expand=False)
    for column, justify in (
        ("job", "left"),
        ("state", "left"),
        ("verdict", "left"),
        ("motivation", "left"),
        ("conf", "right"),
        ("tool calls", "right"),
        ("samples", "right"),
        ("$", "right"),
        ("try", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in shown:
        detail = r.error or r.note or ""
        table.add_row(
            r.id,
            Text(r.state.value, style=STYLE[r.state.value]),
            Text(r.verdict or "", style=VERDICT_STYLE.get(r.verdict or "", "")),
            r.motivation or "",
            f"{r.confidence:.2f}" if r.confidence is not None else "",
            str(r.tool_calls),
            str(r.samples),
            f"{r.dollars:.4f}",
            str(r.attempts),
            Text(detail[:160], style="red" if r.error else "dim"),
        )
    return Group(head, table)


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
    await executor.start()
    try:
        with Live(live_table(executor, budget=budget), console=console, refresh_per_second=2, transient=True) as live:
            waiter = asyncio.ensure_future(executor.wait())
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=0.5)
                live.update(live_table(executor, budget=budget))
            waiter.result()
    finally:
        await executor.stop()
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
