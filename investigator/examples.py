"""`forensics examples`: read every shipped example in every supported format (with
format detection), validate the example incidents against their transcripts, render
the flagged step, and check that exporting to Anthropic and OpenAI request parameters
and reading the result back preserves the conversation."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from investigator.console import render_incident
from tools.errors import ForensicsError
from tools.formats import detect_format, load_transcript
from tools.formats.roundtrip import roundtrip_differences
from tools.incident import Incident, is_incident_file, load_incident
from tools.transcript import Transcript


def check_examples(console: Console, examples: Path) -> None:
    """Load, validate, render and round-trip everything under `examples`."""
    if not examples.is_dir():
        raise ForensicsError(f"{examples}: examples folder not found; run from the project root or pass --examples")
    files = sorted(
        p for p in examples.iterdir() if p.is_file() and p.suffix in {".json", ".jsonl", ".eval", ".yaml", ".yml"}
    )
    table = Table(title="examples read", title_justify="left")
    for column in ("file", "kind", "format", "messages", "turns", "tool calls", "round trip anthropic/openai"):
        table.add_column(column)
    incidents: list[Incident] = []
    for path in files:
        transcript: Transcript
        if is_incident_file(path):
            incident = load_incident(path)
            incidents.append(incident)
            transcript, kind = incident.transcript, "incident"
            fmt = str(transcript.metadata.get("source_format", "native"))
        else:
            fmt = detect_format(path)
            transcript, kind = load_transcript(path, format=fmt), "transcript"
        diffs = roundtrip_differences(transcript)
        trip = " / ".join("ok" if not diffs[t] else f"differs: {diffs[t][0]}" for t in ("anthropic", "openai"))
        calls = sum(len(t.tool_uses) for t in transcript.turns())
        table.add_row(
            path.name, kind, fmt, str(len(transcript.messages)), str(len(transcript.turns())), str(calls), trip
        )
    for incident in incidents:
        render_incident(console, incident, max_chars=400)
    console.print(table)
    console.print(
        f"[bold]What ran:[/bold] {len(files)} example files read with format detection, "
        f"{len(incidents)} incident(s) validated against their transcripts and rendered with the flagged step, "
        "and every transcript exported to Anthropic and OpenAI request parameters and read back."
    )
