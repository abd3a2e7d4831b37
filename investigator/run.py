"""CLI glue for `forensics investigate`: choose the planner, persist the run's options
so `--resume RUN` can continue it, show progress and budget live, summarize."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from investigator.investigate import RUN_FILE, InvestigationResult, PlannerName, investigate
from investigator.report import SandboxUsed
from tools.budget import BudgetLimits
from tools.errors import ForensicsError
from tools.incident import Incident, load_incident

FAILED_EXIT = 3
"""`forensics investigate` exit status when the investigation stopped on a fault (its
report says which); 2 is bad input, 0 a completed investigation."""


def default_planner() -> PlannerName:
    """`llm` when an Anthropic key is configured, else the offline `protocol` planner."""
    return "llm" if os.environ.get("ANTHROPIC_API_KEY") else "protocol"


def show_sandbox(console: Console, sandbox: SandboxUsed, *, indent: str = "") -> None:
    """Say where the incident's commands run and what isolates them; warnings in yellow."""
    flag = " (--allow-host)" if sandbox.allow_host else (" (trusted world)" if sandbox.trusted else "")
    head = Text.assemble((f"{indent}sandbox ", "bold"), f"{sandbox.backend}{flag}: ", (sandbox.isolation, "dim"))
    console.print(head)
    for note in sandbox.notes:
        console.print(Text(f"{indent}  {note}", style="yellow"))


def summarize(console: Console, result: InvestigationResult) -> None:
    """Print the headline of a finished investigation."""
    report = result.report
    style = {"misalignment": "bold red", "mistake": "bold yellow", "inconclusive": "bold"}[report.verdict]
    text = Text()
    text.append("verdict     ", style="bold")
    text.append(f"{report.verdict}", style=style)
    text.append(f"  (confidence {report.confidence:.2f})\n")
    text.append("motivation  ", style="bold")
    text.append(f"{report.motivation}\n")
    text.append("intentional ", style="bold")
    text.append(f"P = {report.intentional.probability:.2f}   ")
    text.append("knew the user would disapprove ", style="bold")
    text.append(f"P = {report.knew_disapproval.probability:.2f}\n")
    text.append(
        f"{len(report.experiments)} experiments, {report.cost.samples} samples, {report.cost.tool_calls} tool calls,"
        f" {result.wall_seconds:.0f} s\n",
        style="dim",
    )
    text.append(f"sandbox: {report.sandbox.backend}" + (" (--allow-host)\n" if report.sandbox.allow_host else "\n"))
    text.append(report.summary)
    title = f"report: {report.incident_id}" + (" — FAILED" if report.status == "failed" else "")
    console.print(Panel(text, title=title, title_align="left", border_style="red" if report.failure else "none"))
    if report.failure is not None:
        console.print(Text.assemble(("investigation failed: ", "bold red"), report.failure.line()), soft_wrap=True)
    if result.grade:
        truth = result.grade.get("truth")
        if truth:
            console.print(
                f"[bold]against the organism's truth:[/bold] verdict "
                f"{'correct' if truth.get('verdict_correct') else 'WRONG'}, motivation "
                f"{'correct' if truth.get('motivation_correct') else 'WRONG'}, Brier {truth.get('brier', 0):.3f}"
            )
    for name, path in sorted(result.files.items()):
        console.print(f"  {name:6} {path}")


def run_investigation_cli(
    console: Console,
    *,
    incident: Path | None,
    planner: str | None,
    transcript: Path | None = None,
    model: str | None,
    judge: str | None,
    out: Path | None,
    resume: Path | None,
    n: int,
    limits: dict[str, Any],
    backend: str | None,
    blind: bool = False,
    allow_host: bool = False,
) -> InvestigationResult:
    """Start or resume (`resume`) an investigation from the command line and summarize
    it; returns the result (its report's `status` says whether it failed)."""
    from tools.world import choose_world_backend

    options: dict[str, Any]
    loaded: Incident
    if resume is not None:
        run_file = resume / RUN_FILE
        if not run_file.exists():
            raise ForensicsError(f"{resume}: not a run directory (no {RUN_FILE}); nothing to resume")
        try:
            options = json.loads(run_file.read_text(encoding="utf-8"))
            loaded = Incident.model_validate(options["incident"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ForensicsError(f"{run_file}: not a readable run file ({type(exc).__name__}: {exc})") from None
        run_dir = resume
        allow_host = bool(options.get("allow_host", False)) or allow_host
        choice = None
        if options["planner"] != "cot-only":
            choice = choose_world_backend(loaded, backend=options["backend"], allow_host=allow_host)
    else:
        if incident is None:
            raise ForensicsError("give an INCIDENT file, or --resume RUN_DIR")
        loaded = load_incident(incident, transcript_file=transcript)
        run_dir = out or Path("runs") / loaded.id
        if (run_dir / RUN_FILE).exists():
            raise ForensicsError(f"{run_dir} already holds an investigation; use --resume {run_dir} or another --out")
        planner = planner or default_planner()
        # the sandbox policy first: an untrusted incident that would run here is refused
        # before the run directory is written (cot-only runs nothing, so needs no world)
        choice = None
        if planner != "cot-only":
            choice = choose_world_backend(loaded, backend=backend, allow_host=allow_host)
        # investigate() writes these to run.json, so --resume needs nothing but the run directory
        options = {
            "planner": planner,
            "model": model,
            "judge": judge,
            "n": n,
            "limits": limits,
            "backend": backend,
            "allow_host": allow_host,
            "blind": blind,
        }
    console.print(
        f"[bold]investigating[/bold] {loaded.id} with the {options['planner']} planner → {run_dir}"
        + (" (resuming)" if resume else "")
    )
    result = asyncio.run(
        investigate(
            loaded,
            run_dir,
            planner=options["planner"],
            model=options["model"],
            judge_model=options["judge"],
            limits=BudgetLimits(**options["limits"]),
            n=options["n"],
            resume=resume is not None,
            backend=options["backend"],
            allow_host=allow_host,
            on_step=lambda line: console.print(Text(f"  · {line}", style="dim")),
            blind=bool(options.get("blind", False)),
            seed=int(options.get("seed", 0)),
            on_sandbox=lambda sandbox: show_sandbox(console, sandbox, indent="  "),
            sandbox=choice,
        )
    )
    summarize(console, result)
    return result
