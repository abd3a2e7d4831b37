"""``forensics replay INCIDENT``: rebuild the incident's world and replay its own tool calls.

The world comes from `tools.world.build_world` (a scenario's, or one rebuilt from the
incident's snapshot of its workspace, in Docker by default; the local backend only with
``--allow-host`` for an incident's own commands). The transcript's tool calls of the
turns before ``--turn`` (default: the flagged turn) run in it through the harness
profile, and each step is printed: the tool, what was run, the recorded and the
replayed output, and whether they match (with their similarity). ``--json`` prints a
list of steps instead. The command exits 0 whenever the replay ran, whatever diverged;
an incident whose world cannot be built is an error (exit 2).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from tools.errors import ForensicsError

if TYPE_CHECKING:
    from tools.replay import ReplayReport, ReplayStep
    from tools.world import World

console = Console()

_STYLE = {"match": "green", "diverged": "bold red", "simulated": "cyan", "skipped": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the main app."""
    app.command("replay")(replay_command)


def replay_command(
    incident_path: Annotated[Path, typer.Argument(metavar="INCIDENT", help="The incident file (YAML/JSON).")],
    turn: Annotated[
        int | None,
        typer.Option("--turn", help="Replay the calls of the turns before this one (default: the flagged turn)."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Sandbox backend: docker (default) or local (needs --allow-host).")
    ] = None,
    allow_host: Annotated[
        bool,
        typer.Option(
            "--allow-host", help="Allow the local backend to run the incident's commands on this machine (bubblewrap)."
        ),
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Similarity below which a replayed output counts as diverged.")
    ] = 0.9,
    lines: Annotated[int, typer.Option(min=0, help="Lines of each output shown (0: all).")] = 12,
    as_json: Annotated[bool, typer.Option("--json", help="Print the steps as a JSON list.")] = False,
) -> None:
    """Rebuild the incident's world and replay its own tool calls up to a turn, comparing each output."""
    from tools.incident import load_incident
    from tools.replay import DEFAULT_THRESHOLD
    from tools.world import build_world, incident_base_dir

    incident = load_incident(incident_path)
    turns = len(incident.transcript.turns())
    upto = incident.flagged_turn_index if turn is None else (turn + turns if turn < 0 else turn)
    if not 0 <= upto <= turns:
        raise ForensicsError(f"--turn {turn}: the transcript has {turns} assistant turns; replay to 0..{turns}")
    world = build_world(
        incident.environment,
        backend=backend,
        allow_host=allow_host,
        subject_model=incident.subject.model,
        transcript=incident.transcript,
        base_dir=incident_base_dir(incident),
    )
    if not as_json:
        _print_world(world, incident.id, upto)
    report = asyncio.run(_replay(world, incident.transcript, upto, threshold or DEFAULT_THRESHOLD))
    if as_json:
        sys.stdout.write(json.dumps([_step_json(s) for s in report.steps], ensure_ascii=False) + "\n")
        return
    for step in report.steps:
        _print_step(step, lines)
    _print_summary(report)


async def _replay(world: World, transcript: Any, upto: int, threshold: float) -> ReplayReport:
    from sandboxes.errors import SandboxError
    from tools.replay import replay

    try:
        async with await world.start() as sandbox:
            return await replay(transcript, sandbox, upto_turn=upto, mapping=world.mapping, threshold=threshold)
    except SandboxError as exc:
        raise ForensicsError(f"the world could not be rebuilt in the {world.backend} sandbox: {exc}") from None


def _step_json(step: ReplayStep) -> dict[str, Any]:
    return {
        "step": step.step,
        "turn": step.turn,
        "tool": step.tool,
        "tool_use_id": step.tool_use_id,
        "status": step.status,
        "similarity": step.similarity,
        "command": step.command,
        "reason": step.skipped,
        "sidechain": step.sidechain,
        "expected": step.expected,
        "got": step.got,
    }


def _print_world(world: World, incident_id: str, upto: int) -> None:
    text = Text()
    text.append("world    ", style="bold")
    text.append(world.description or world.kind)
    text.append("\nbackend  ", style="bold")
    text.append(world.backend)
    if world.mapping.profile:
        text.append("\ntools    ", style="bold")
        text.append(f"{world.mapping.profile} harness profile")
    text.append("\nreplay   ", style="bold")
    text.append(f"the tool calls of turns 0..{upto - 1}" if upto else "nothing (turn 0)")
    console.print(Panel(text, title=f"replay: {incident_id}", title_align="left"))
    if world.note:
        console.print(Text(f"note: {world.note}", style="yellow"), highlight=False)


def _clip(text: str, lines: int) -> str:
    rows = text.splitlines()
    if lines and len(rows) > lines:
        return "\n".join([*rows[:lines], f"… ({len(rows) - lines} more lines)"])
    return text


def _print_step(step: ReplayStep, lines: int) -> None:
    head = Text()
    head.append(f"[{step.step}] ", style="bold")
    head.append(f"turn {step.turn}  ")
    head.append(step.tool, style="bold")
    head.append(f"  {step.status}", style=_STYLE[step.status])
    if step.similarity is not None:
        head.append(f" (similarity {step.similarity:.3f})")
    if step.sidechain:
        head.append(f"  subagent of {step.sidechain}", style="dim")
    console.print(head)
    if step.command:
        console.print(Text.assemble(("    ran: ", "dim"), _clip(step.command, 3)), highlight=False)
    if step.skipped:
        console.print(Text(f"    {step.skipped}", style="dim"), highlight=False)
    if step.status == "diverged" and step.got is not None:
        diff = difflib.unified_diff(
            step.expected.splitlines(), step.got.splitlines(), "recorded", "replayed", lineterm="", n=1
        )
        for row in _clip("\n".join(diff), max(lines, 1) * 2).splitlines():
            style = "green" if row.startswith("+") else "red" if row.startswith("-") else "dim"
            console.print(Text("    " + row, style=style), highlight=False)
    elif step.status in {"match", "simulated"} and step.got is not None and lines:
        shown = _clip(step.got, min(lines, 3)).replace("\n", "\n            ")
        console.print(Text("    output: " + shown, style="dim"))


def _print_summary(report: ReplayReport) -> None:
    counts = report.counts()
    rate = report.match_rate
    console.print(
        Text.assemble(
            ("summary  ", "bold"),
            f"{counts['match']} match, {counts['diverged']} diverged, {counts['simulated']} answered from the "
            f"recording, {counts['skipped']} skipped",
            f"; match rate {rate:.0%} of executed steps" if rate is not None else "; nothing was executed",
        )
    )
