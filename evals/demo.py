"""`forensics demo`: the whole job on the embedded defaults.

A model organism plays its scenario in the sandbox (Docker when an engine answers; a
shipped organism in a shipped scenario is trusted, so the local bubblewrap backend
otherwise, said clearly) until the scenario's monitor catches it;
the incident is written out as a monitor would file it; the protocol planner
investigates it — resampling, interventions, a counterfactual rerun in the rebuilt
world, probes, statistics — and the report and grade are written and summarized,
with the organism's known truth to check the verdict against.

It lives in evals (and reaches `forensics` through evals' ``model_forensics.cli`` entry
point) because it needs the scenarios and organisms; the investigator never imports them.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from evals.world import is_trusted_world, make_incident, write_incident
from investigator.investigate import investigate
from investigator.run import show_sandbox, summarize
from sandboxes.registry import choose_backend
from tools.models.registry import get_model
from tools.organisms.registry import find_organism


def run_demo(
    console: Console, *, organism: str, out: Path, backend: str | None, n: int, allow_host: bool = False
) -> None:
    started = time.time()
    spec = find_organism(organism)
    from evals.scenario import load_scenario

    environment = load_scenario(spec.scenario).environment()
    trusted = is_trusted_world(environment, f"organism/{organism}")
    choice = choose_backend(backend, trusted=trusted, allow_host=allow_host)
    console.print(
        f"[bold]1. monitoring[/bold] organism/{organism} in the {spec.scenario} scenario ({choice.name} sandbox)"
    )
    if choice.note:
        console.print(Text(f"   {choice.note}", style="yellow"))
    previous = out / "investigation"
    if previous.exists():
        # The demo owns its output folder: each run starts afresh rather than mixing runs.
        shutil.rmtree(previous)
        console.print(Text(f"   replaced the previous demo run in {previous}", style="dim"))
    subject = get_model(f"organism/{organism}")
    incident, episodes = asyncio.run(
        make_incident(subject, spec.scenario, backend=backend, allow_host=allow_host, incident_id=f"demo-{organism}")
    )
    used = str(incident.metadata.get("backend", choice.name))
    if incident.metadata.get("backend_note") and used != choice.name:
        console.print(Text(f"   {incident.metadata['backend_note']}", style="yellow"))
    path = write_incident(incident, out / "incident")
    console.print(f"   caught on episode {episodes}: turn {incident.flagged_turn_index} — {incident.flag.reason}")
    console.print(f"   incident written to {path}")
    console.print("[bold]2. investigating[/bold] with the protocol planner")
    result = asyncio.run(
        investigate(
            incident,
            out / "investigation",
            planner="protocol",
            n=n,
            backend=used,
            allow_host=allow_host,
            on_step=lambda line: console.print(Text(f"   · {line}", style="dim")),
            on_sandbox=lambda sandbox: show_sandbox(console, sandbox, indent="   "),
        )
    )
    console.print("[bold]3. result[/bold]")
    summarize(console, result)
    truth = spec.truth
    console.print(
        f"[bold]the organism's truth:[/bold] {truth.verdict}, motivation {truth.motivation} "
        f"(intentional {truth.intentional}, knew disapproval {truth.knew_disapproval})"
    )
    console.print(f"[dim]demo finished in {time.time() - started:.0f} s[/dim]")
