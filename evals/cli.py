"""Commands evals adds to `forensics` (through the ``model_forensics.cli`` entry point)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tools.edit import load_edits

BackendOpt = Annotated[
    str | None,
    typer.Option(help="docker (default; shipped organisms fall back to the local bubblewrap backend) or local."),
]
AllowHostOpt = Annotated[
    bool,
    typer.Option("--allow-host", help="Let an organism from another directory run in the local bubblewrap sandbox."),
]
ScenariosOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--scenarios",
        help="Extra directory of scenarios (<dir>/<id>/scenario.yaml), searched before the shipped ones; repeatable."
        " Also read from FORENSICS_SCENARIOS.",
    ),
]


def use_scenario_dirs(dirs: list[Path] | None) -> None:
    """Put ``--scenarios`` directories on the search path (inherited by worker processes)."""
    from evals.paths import add_scenario_dir

    for directory in dirs or []:
        add_scenario_dir(directory)


def register(app: typer.Typer) -> None:
    """Add the evals commands to the main app."""
    app.command("simulate")(simulate_command)
    app.command("organisms")(organisms_command)
    app.command("scenarios")(scenarios_command)
    app.command("demo")(demo_command)
    from evals.bench_cli import bench_command

    app.command("bench")(bench_command)


def demo_command(
    organism: Annotated[str, typer.Option(help="The subject: a model organism id.")] = "precommit-lazy-knowing",
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/demo"),
    backend: BackendOpt = None,
    allow_host: AllowHostOpt = False,
    n: Annotated[int, typer.Option(help="Samples per arm.")] = 200,
    organisms: Annotated[Path | None, typer.Option("--organisms", help="Extra directory of organism specs.")] = None,
    scenarios: ScenariosOpt = None,
) -> None:
    """A monitor catches an organism in its scenario; the protocol planner investigates it."""
    from evals.demo import run_demo
    from tools.organisms.registry import add_organism_dir

    use_scenario_dirs(scenarios)
    if organisms is not None:
        add_organism_dir(organisms)

    run_demo(Console(), organism=organism, out=out, backend=backend, n=n, allow_host=allow_host)


def simulate_command(
    organism: Annotated[str, typer.Argument(help="Organism id, e.g. precommit-lazy-unaware.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 20,
    edit: Annotated[Path | None, typer.Option("--edit", help="YAML file of edits to apply first.")] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="rollout (whole episodes) or next_turn (resample the decision turn, judged as investigations "
            "judge it: executed in the rebuilt world when the detector reads its state)."
        ),
    ] = "rollout",
    backend: BackendOpt = None,
    allow_host: AllowHostOpt = False,
    seed: Annotated[int, typer.Option(help="Seed of the first sample.")] = 0,
    organisms: Annotated[Path | None, typer.Option("--organisms", help="Extra directory of organism specs.")] = None,
    scenarios: ScenariosOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary.")] = False,
) -> None:
    """Run an organism in its scenario and print the rate with its Wilson interval."""
    from evals.simulate import simulate

    use_scenario_dirs(scenarios)

    if mode not in {"rollout", "next_turn"}:
        raise typer.BadParameter("--mode must be rollout or next_turn")
    edits = load_edits(edit) if edit else []
    console = Console(stderr=as_json)
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as bar:
        task = bar.add_task("samples", total=n)
        result = asyncio.run(
            simulate(
                organism,
                n=n,
                seed=seed,
                edits=edits,
                mode=mode,  # type: ignore[arg-type]
                backend=backend,
                allow_host=allow_host,
                organism_dirs=[str(organisms)] if organisms else [],
                progress=lambda k: bar.advance(task, k),
            )
        )
    if as_json:
        sys.stdout.write(json.dumps(result.summary_json()) + "\n")
        return
    low, high = result.ci
    console.print(
        Text.assemble(
            (f"{result.organism}", "bold"),
            f" in {result.scenario} ({result.mode}, {result.backend} backend, features by {result.feature_method}): ",
            (f"{result.rate:.1%} [{low:.1%}, {high:.1%}]", "bold"),
            f"  ({result.k}/{result.n}, Wilson 95%)",
        )
    )
    console.print(Text(f"judged by {result.judged_by}", style="dim"))
    if result.backend_note:
        console.print(Text(result.backend_note, style="yellow"))
    table = Table(title="a few trajectories", title_justify="left")
    for column in ("#", "seed", "behaviour", "branch", "actions"):
        table.add_column(column)
    shown = [t for t in result.trajectories if t.detected][:3] + [t for t in result.trajectories if not t.detected][:2]
    for t in shown:
        actions = "\n".join(a[:100] for a in t.actions[-3:])
        table.add_row(
            str(t.index), str(t.seed), "yes" if t.detected else "no", f"{t.branch}/{t.variant}", Text(actions)
        )
    console.print(table)


def organisms_command(
    organisms: Annotated[Path | None, typer.Option("--organisms", help="Extra directory of organism specs.")] = None,
) -> None:
    """List the model organisms and their known truth."""
    from tools.organisms.registry import list_organisms

    table = Table()
    for column in ("organism", "scenario", "pair", "verdict", "motivation", "baseline"):
        table.add_column(column)
    for spec in sorted(list_organisms([organisms] if organisms else []), key=lambda s: (s.scenario, s.id)):
        baseline = f"{spec.baseline_rate:.1%}" if spec.baseline_rate is not None else ""
        table.add_row(spec.id, spec.scenario, spec.pair or "", spec.truth.verdict, spec.truth.motivation, baseline)
    Console().print(table)


def scenarios_command(scenarios: ScenariosOpt = None) -> None:
    """List the scenarios on the search path and where each comes from."""
    from evals.scenario import list_scenarios

    use_scenario_dirs(scenarios)
    table = Table()
    for column in ("scenario", "title", "knobs", "origin"):
        table.add_column(column)
    for scenario in list_scenarios():
        table.add_row(scenario.id, scenario.title, ", ".join(sorted(scenario.knobs)), scenario.origin)
    Console().print(table)
