"""The `forensics` command line.

Errors the user can fix (bad files, unknown formats) print one clear line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from investigator.audit_cli import register as register_audit_command
from investigator.replay_cli import register as register_replay_command
from investigator.research_cli import AllowHostOpt, BackendOpt
from investigator.research_cli import register as register_research_commands
from sandboxes.errors import SandboxError
from tools.errors import ForensicsError
from tools.formats import FORMAT_NAMES, get_importer, load_transcript
from tools.formats.native import dumps as dump_native
from tools.incident import Incident, is_incident_file, load_incident
from tools.transcript import Transcript

app = typer.Typer(
    name="forensics",
    help="Investigate why an AI agent took a concerning action.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)


class ExportTarget(StrEnum):
    native = "native"
    anthropic = "anthropic"
    openai = "openai"


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=f"Transcript format, detected when omitted: {', '.join(FORMAT_NAMES)}."),
]
SampleOpt = Annotated[str | None, typer.Option("--sample", help="Sample id inside an Inspect log.")]
EpochOpt = Annotated[int | None, typer.Option("--epoch", help="Epoch of the sample inside an Inspect log.")]
TranscriptOpt = Annotated[
    Path | None,
    typer.Option(
        "--transcript",
        help="For an incident file: read this transcript instead of the one it names. A path inside an incident "
        "file must stay in the incident's folder; one given here may be anywhere.",
    ),
]


SkipBadLinesOpt = Annotated[
    bool,
    typer.Option(
        "--skip-bad-lines",
        help="In a line-based log (Claude Code, Codex, OpenHands events), skip malformed lines instead of refusing "
        "the file; each skipped line is listed in the import report.",
    ),
]


def _load_any(
    path: Path,
    fmt: str | None,
    sample: str | None,
    epoch: int | None,
    transcript: Path | None = None,
    skip_bad_lines: bool = False,
) -> Transcript | Incident:
    if transcript is not None or (fmt is None and is_incident_file(path)):
        return load_incident(path, transcript_file=transcript, skip_bad_lines=skip_bad_lines)
    return load_transcript(path, format=fmt, sample_id=sample, epoch=epoch, skip_bad_lines=skip_bad_lines)


def _print_import_report(transcript: Transcript) -> None:
    """What the import could not carry over, on stderr: warnings, skipped lines and any
    imbalance in the counts (see tools.formats.accounting). Nothing when all is well."""
    from tools.formats.accounting import report_of

    report = report_of(transcript)
    if report is None:
        return
    if not report.warnings and not report.skipped_lines:
        return
    err_console.print(Text(report.summary(), style="dim"))
    for warning in report.warnings:
        err_console.print(Text(f"import warning: {warning}", style="yellow"))
    for skipped in report.skipped_lines:
        if not any(w.location == f"line {skipped.line}" for w in report.warnings):
            err_console.print(Text(f"import warning: line {skipped.line} skipped: {skipped.reason}", style="yellow"))


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="An incident file (YAML/JSON) or a transcript in any supported format.")],
    format: FormatOpt = None,
    sample: SampleOpt = None,
    epoch: EpochOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the normalized transcript as JSON.")] = False,
    max_chars: Annotated[int, typer.Option(help="Clip each text field to this many characters (0: no limit).")] = 2000,
    transcript_file: TranscriptOpt = None,
    skip_bad_lines: SkipBadLinesOpt = False,
) -> None:
    """Render a transcript or incident: CoT dimmed, tool calls highlighted, the flagged step marked.
    Import warnings (what the importer could not carry over) are printed on stderr."""
    loaded = _load_any(path, format, sample, epoch, transcript_file, skip_bad_lines)
    transcript = loaded.transcript if isinstance(loaded, Incident) else loaded
    if as_json:
        sys.stdout.write(dump_native(transcript) + "\n")
        _print_import_report(transcript)
        return
    if isinstance(loaded, Incident):
        from investigator.console import render_incident

        render_incident(console, loaded, max_chars=max_chars or None)
    else:
        from investigator.console import render_transcript

        render_transcript(console, loaded, max_chars=max_chars or None)
    _print_import_report(transcript)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="A transcript or incident file.")],
    to: Annotated[ExportTarget, typer.Option("--to", help="Target: request params for an API, or native JSON.")],
    format: FormatOpt = None,
    sample: SampleOpt = None,
    epoch: EpochOpt = None,
    skip_bad_lines: SkipBadLinesOpt = False,
) -> None:
    """Print a transcript as Anthropic or OpenAI request parameters, or as native JSON."""
    loaded = _load_any(path, format, sample, epoch, skip_bad_lines=skip_bad_lines)
    _print_import_report(loaded.transcript if isinstance(loaded, Incident) else loaded)
    transcript = loaded.transcript if isinstance(loaded, Incident) else loaded
    if to is ExportTarget.native:
        sys.stdout.write(dump_native(transcript) + "\n")
        return
    if to is ExportTarget.anthropic:
        from tools.formats.anthropic import to_anthropic_params

        params = to_anthropic_params(transcript)
    else:
        from tools.formats.openai import to_openai_params

        params = to_openai_params(transcript)
    sys.stdout.write(json.dumps(params, indent=2, ensure_ascii=False) + "\n")


@app.command()
def formats() -> None:
    """List the transcript formats that can be read."""
    for name in FORMAT_NAMES:
        console.print(Text.assemble((f"{name:17}", "bold"), get_importer(name).description))


class PlannerChoice(StrEnum):
    llm = "llm"
    protocol = "protocol"
    cot_only = "cot-only"


@app.command()
def investigate(
    incident: Annotated[Path | None, typer.Argument(help="The incident file (YAML/JSON).")] = None,
    transcript: TranscriptOpt = None,
    planner: Annotated[
        PlannerChoice | None,
        typer.Option(help="llm (default when ANTHROPIC_API_KEY is set), protocol (offline default) or cot-only."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The investigator model for --planner llm.")] = None,
    judge: Annotated[str | None, typer.Option(help="A judge model; offline structural grading without it.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/<incident id>).")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Resume the investigation in this run directory.")
    ] = None,
    n: Annotated[int, typer.Option(help="Samples per arm.")] = 200,
    budget_samples: Annotated[int | None, typer.Option(help="Most samples to take.")] = 20000,
    budget_tool_calls: Annotated[int | None, typer.Option(help="Most tool calls.")] = 80,
    budget_tokens: Annotated[int | None, typer.Option(help="Most tokens (subject and investigator).")] = None,
    budget_dollars: Annotated[float | None, typer.Option(help="Most dollars.")] = None,
    backend: BackendOpt = None,
    allow_host: AllowHostOpt = False,
    blind: Annotated[
        bool,
        typer.Option(
            "--blind",
            help="Ignore the environment's investigation hints (a scenario's `investigation:` section): every "
            "intervention is derived from the incident itself.",
        ),
    ] = False,
    model_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds one model API request may take (default: $FORENSICS_MODEL_TIMEOUT_S or 120)."),
    ] = None,
    model_attempts: Annotated[
        int | None,
        typer.Option(help="Tries per model API call, the first included (default: $FORENSICS_MODEL_ATTEMPTS or 4)."),
    ] = None,
) -> None:
    """Investigate why the flagged action happened; writes report.json/.md/.html and grade.json.
    Exits 3 when the investigation failed (a model API kept failing, an engine went away):
    its report then has status "failed" and names the error."""
    from investigator.run import FAILED_EXIT, run_investigation_cli

    _model_call_options(model_timeout, model_attempts)
    result = run_investigation_cli(
        console,
        incident=incident,
        transcript=transcript,
        planner=planner.value if planner else None,
        model=model,
        judge=judge,
        out=out,
        resume=resume,
        n=n,
        limits={
            "samples": budget_samples,
            "tool_calls": budget_tool_calls,
            "tokens": budget_tokens,
            "dollars": budget_dollars,
        },
        backend=backend,
        blind=blind,
        allow_host=allow_host,
    )
    if result.report.status == "failed":
        raise typer.Exit(FAILED_EXIT)


def _model_call_options(timeout: float | None, attempts: int | None) -> None:
    """Command-line model call settings: they override the environment's for every
    model this process calls (subject, investigator, judge, grader)."""
    if timeout is not None:
        if timeout <= 0:
            raise typer.BadParameter("must be positive", param_hint="--model-timeout")
        os.environ["FORENSICS_MODEL_TIMEOUT_S"] = str(timeout)
    if attempts is not None:
        if attempts < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--model-attempts")
        os.environ["FORENSICS_MODEL_ATTEMPTS"] = str(attempts)


@app.command()
def examples(
    folder: Annotated[Path, typer.Option(help="Folder of example transcripts and incidents.")] = Path("examples"),
) -> None:
    """Read every shipped example with format detection and check the export round trip."""
    from investigator.examples import check_examples

    check_examples(console, folder)


sandbox_app = typer.Typer(help="Build sandbox images, and remove what earlier runs left behind.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


class BuildMethod(StrEnum):
    auto = "auto"
    dockerfile = "dockerfile"
    debootstrap = "debootstrap"


@sandbox_app.command("build")
def sandbox_build(
    method: Annotated[BuildMethod, typer.Option(help="auto: Dockerfile when a registry answers, else debootstrap.")] = (
        BuildMethod.auto
    ),
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is up to date.")] = False,
) -> None:
    """Build the Debian base image (python3, git, mypy) without needing a registry."""
    from sandboxes.engine import docker_client
    from sandboxes.images import build_base_image

    client = docker_client(timeout=900)
    tag = build_base_image(client, method=method.value, force=force, log=lambda m: console.print(f"[dim]·[/dim] {m}"))
    console.print(f"[bold green]base image:[/bold green] {tag} (also tagged model-forensics/base:latest)")


@sandbox_app.command("prune")
def sandbox_prune(
    everything: Annotated[
        bool, typer.Option("--all", help="Remove every labelled container and snapshot, not only stale ones.")
    ] = False,
) -> None:
    """Remove sandbox containers and snapshot images whose owning process is gone."""
    from sandboxes.docker import sweep_stale
    from sandboxes.engine import docker_client

    removed = sweep_stale(docker_client(), everything=everything)
    console.print(
        f"removed {removed['containers']} container(s), {removed['volumes']} volume(s) and "
        f"{removed['images']} snapshot image(s)"
    )


@sandbox_app.command("status")
def sandbox_status() -> None:
    """Say which backend investigations would use here, for trusted and untrusted worlds, and why."""
    from sandboxes.registry import choose_backend

    for trusted, label in ((True, "shipped scenarios played by organisms"), (False, "incidents (untrusted)")):
        try:
            choice = choose_backend(None, trusted=trusted)
        except SandboxError as exc:
            console.print(Text.assemble((f"{label}: ", "bold"), ("refused: ", "bold red"), str(exc)))
            continue
        console.print(Text.assemble((f"{label}: ", "bold"), choice.summary()))
        if choice.note:
            console.print(Text(f"  {choice.note}", style="yellow"))


class ExecutorChoice(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int | None, typer.Option(help="Investigations run at once (default: the executor's).", min=1)
    ] = None,
    executor: Annotated[
        ExecutorChoice | None, typer.Option(help="Where investigations run: local processes, or a Ray cluster.")
    ] = None,
    address: Annotated[str | None, typer.Option(help="The Ray cluster (auto, HOST:PORT, ray://HOST:PORT).")] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="State directory: queue database and run directories (FORENSICS_SERVE_DIR)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Service config file (YAML; FORENSICS_SERVE_CONFIG).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP escalation endpoint: POST incidents, get reports, follow them live on its page.

    Tokens come from FORENSICS_API_TOKENS or the config file; see docs/service.md."""
    from investigator.service import load_config
    from investigator.service import serve as run_service

    settings = load_config(
        config,
        dir=state_dir,
        workers=workers,
        executor=executor.value if executor else None,
        address=address,
    )
    console.print(
        f"[bold]forensics serve[/bold] on http://{host}:{port} · state in {settings.dir} · "
        f"{len(settings.tokens)} token(s) · executor {settings.executor}"
    )
    run_service(settings, host=host, port=port, log_level=log_level)


def _load_plugins() -> None:
    """Commands from installed packages (``model_forensics.cli`` entry points)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="model_forensics.cli"):
        ep.load()(app)


register_research_commands(app)
register_audit_command(app)
register_replay_command(app)
_load_plugins()


def main() -> None:
    """Entry point: run the app, turning the toolkit's own errors into one clear line."""
    try:
        app()
    except (ForensicsError, SandboxError) as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
