"""The project's own transcript JSON: a `Transcript` dumped with a format marker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.errors import FormatError
from tools.formats.accounting import REPORT_KEY, ImportTally
from tools.formats.base import Importer, LoadOptions, read_json, validate
from tools.transcript import SCHEMA_VERSION, Transcript

FORMAT_MARKER = "model-forensics/transcript"


def dumps(transcript: Transcript, *, indent: int | None = 2) -> str:
    """Serialize a transcript as the project's JSON."""
    payload = {"format": FORMAT_MARKER, **transcript.model_dump(mode="json", exclude_none=True)}
    return json.dumps(payload, indent=indent, ensure_ascii=False)


def save(transcript: Transcript, path: str | Path) -> None:
    """Write a transcript file atomically (a crash never leaves half a file)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps(transcript) + "\n", encoding="utf-8")
    tmp.replace(target)


def parse(data: Any, *, source: str) -> Transcript:
    """A transcript from already-parsed native JSON."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "format"}
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise FormatError(
                f"schema_version {version} is newer than this program understands ({SCHEMA_VERSION}); "
                "upgrade model-forensics",
                source=source,
                location="schema_version",
            )
    transcript = validate(Transcript, data, source=source, what="a model-forensics transcript")
    if REPORT_KEY in transcript.metadata:
        # Saved from another format: that import's report still describes the file, and
        # reading it back is the identity (the file is the model itself).
        return transcript
    tally = ImportTally(format="native", source=source)
    tally.count_messages(transcript.messages)
    if transcript.system is not None:
        tally.count(text=1)
        tally.keep("system prompt", {"text": 1})
    return tally.finish(transcript)


def _sniff(path: Path, data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == FORMAT_MARKER


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


def _refusal(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        return "a model-forensics transcript is a JSON object"
    if "format" not in data:
        return f'it has no "format": "{FORMAT_MARKER}" marker'
    return f"its format marker is {data['format']!r}, not {FORMAT_MARKER!r}"


IMPORTER = Importer(
    name="native",
    description="model-forensics transcript JSON (what `forensics show --json` prints)",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"format", "schema_version", "generation"}),
    refusal=_refusal,
)
