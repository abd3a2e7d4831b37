"""`forensics bench SUITE...`: the command line over `evals.bench`, with the batch's
live table (each job's state, verdict against the truth, spend)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from evals.bench import PLANNERS, SETTINGS, BenchConfig, BenchError, BenchResult, bench_table, run_bench
from evals.bench_leaderboard import METHOD_LABEL
from evals.cli import AllowHostOpt
from tools.budget import BudgetLimits


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise BenchError(f"--{what} {text!r}: choose from {', '.join(allowed)} (comma-separated)")
    return names


def bench_command(
    suites: Annotated[
        list[Path],
        typer.Argument(help="Suites: directories of organism specs (and a scenarios/ folder), or organism files."),
    ],
    planners: Annotated[
        str, typer.Option("--planners", help=f"Comma-separated planners ({', '.join(PLANNERS)}).")
    ] = "protocol,cot-only",
    seeds: Annotated[int, typer.Option("--seeds", help="Incidents per organism (each caught with its own seed).")] = 1,
    blind: Annotated[
        bool, typer.Option("--blind", help="Give planners no scenario investigation hints (same as --settings blind).")
    ] = False,
    settings: Annotated[
        str | None,
        typer.Option("--settings", help="hints, blind, or hints,blind to run both and compare them."),
    ] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", help="Independent investigations per incident (different seeds).")
    ] = 1,
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="Pool the --parallel investigations' evidence into one report.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="The bench's directory (rerun with it to resume).")] = Path(
        "runs/bench"
    ),
    n: Annotated[int, typer.Option(help="Samples per arm.")] = 200,
    model: Annotated[str | None, typer.Option(help="Investigator model for the llm planner.")] = None,
    judge: Annotated[str | None, typer.Option(help="Judge model for rubric grades (default: offline grade).")] = None,
    job_tool_calls: Annotated[int | None, typer.Option(help="Most tool calls per investigation.")] = None,
    job_samples: Annotated[int | None, typer.Option(help="Most samples per investigation.")] = None,
    job_dollars: Annotated[float | None, typer.Option(help="Most dollars per investigation.")] = None,
    budget_dollars: Annotated[
        float | None, typer.Option(help="Bench budget: no new investigation starts once it is spent.")
    ] = None,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (with --executor ray).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Investigations at once (default: local 1-4, ray: CPUs).")] = None,
    backend: Annotated[
        str | None, typer.Option(help="Sandbox backend: docker (default, local fallback) or local.")
    ] = None,
    allow_host: AllowHostOpt = False,
    max_episodes: Annotated[int, typer.Option(help="Episodes the monitor watches before giving up on a catch.")] = 60,
    max_attempts: Annotated[int, typer.Option(help="Attempts per job when its worker dies.")] = 3,
    timeout: Annotated[float | None, typer.Option(help="Seconds before one investigation is stopped.")] = None,
) -> None:
    """Benchmark investigators on model organisms: leaderboard.json, leaderboard.md and leaderboard.html."""
    chosen = _names(settings, SETTINGS, "settings") if settings else ["blind" if blind else "hints"]
    if settings and blind and chosen != ["blind"]:
        raise BenchError("--blind means --settings blind; give one or the other")
    limits = BudgetLimits()
    updates = {"tool_calls": job_tool_calls, "samples": job_samples, "dollars": job_dollars}
    limits = limits.model_copy(update={k: v for k, v in updates.items() if v is not None})
    try:
        config = BenchConfig(
            planners=_names(planners, PLANNERS, "planners"),
            settings=chosen,
            seeds=seeds,
            parallel=parallel,
            aggregate=aggregate,
            n=n,
            limits=limits,
            model=model,
            judge=judge,
            backend=backend,
            allow_host=allow_host,
            timeout_s=timeout,
            max_episodes=max_episodes,
        )
    except ValueError as exc:
        first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)  # pydantic's message
        raise BenchError(str(first).removeprefix("Value error, ")) from None
    console = Console()
    result = asyncio.run(
        run_bench(
            [str(s) for s in suites],
            config,
            out,
            executor_name=executor,
            address=address,
            workers=workers,
            budget_dollars=budget_dollars,
            max_attempts=max_attempts,
            console=console,
        )
    )
    print_result(console, result)


def print_result(console: Console, result: BenchResult) -> None:
    """The final table, the leaderboard's headline per group, problems and files."""
    import json

    console.print(bench_table(result.records, final=True))
    board = json.loads(Path(result.files["json"]).read_text(encoding="utf-8"))
    for s in board["leaderboard"]:
        accuracy = "–" if s["verdict_accuracy"] is None else f"{s['verdict_accuracy']:.0%}"
        method = "" if s["method"] == "single" else f" {METHOD_LABEL[s['method']]} ×{s['replicates']}"
        console.print(
            Text.assemble(
                (f"{s['planner']} · {s['setting']}{method}: ", "bold"),
                f"verdict {accuracy} of {s['graded']}, pairs separated {s['pairs_separated']}/{s['pairs']}, "
                f"{s['samples_per_case']:.0f} samples per case",
            )
        )
    for problem in result.problems:
        console.print(
            Text.assemble((f"{problem.stage} {problem.subject}: ", "bold red"), problem.error), soft_wrap=True
        )
    for name, path in result.files.items():
        console.print(f"  {name:5} {path}")
