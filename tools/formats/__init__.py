"""Read transcripts from the formats agents are logged in, and write them back out.

`load_transcript(path)` detects the format (or takes `format=` to override) and
returns a normalized `Transcript`. Importers live one per module and register in
`_MODULES`; each raises `FormatError` (with file and location) on bad input and
nothing else, and counts what it read and produced in an import report
(`tools.formats.accounting`, stored in ``metadata["import_report"]``).

Every transcript records the agent harness it came from in ``metadata["harness"]``
(one of `HARNESSES`, or the name an ATIF log gives), which harness profiles use to map
its tools onto sandbox operations.

Transcripts are untrusted: before any importer runs, the file must be a regular file
(not a directory, FIFO or device) no larger than ``FORENSICS_MAX_TRANSCRIPT_BYTES``;
JSON is read with `tools.formats.base.read_json` (bounded size, depth, integers,
Unicode). Detection parses a JSON file once and hands the result to the importer; for
a JSON-lines file it reads only the first records. When no importer claims a file, the
error names the closest format (by the keys and record types typical of each) and the
first reason that importer refused.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tools.errors import FormatError
from tools.formats.accounting import REPORT_KEY, ImportTally
from tools.formats.base import (
    Importer,
    JSONSyntaxError,
    LoadOptions,
    check_regular_file,
    parse_json_bounded,
    primed_json,
    read_json,
)
from tools.transcript import Transcript

# name -> module that defines IMPORTER. Order matters for auto-detection: the most
# specific sniffers run first, Anthropic (the loosest shape) last.
_MODULES: dict[str, str] = {
    "native": "tools.formats.native",
    "inspect": "tools.formats.inspect_log",
    "atif": "tools.formats.atif",
    "swe-agent": "tools.formats.swe_agent",
    "mini-swe-agent": "tools.formats.mini_swe_agent",
    "openhands": "tools.formats.openhands",
    "openai-responses": "tools.formats.openai_responses",
    "codex": "tools.formats.codex",
    "claude-code": "tools.formats.claude_code",
    "openai": "tools.formats.openai",
    "anthropic": "tools.formats.anthropic",
}

FORMAT_NAMES: tuple[str, ...] = tuple(_MODULES)

HARNESSES: tuple[str, ...] = (
    "claude-code",
    "codex",
    "inspect",
    "swe-agent",
    "mini-swe-agent",
    "openhands",
    "openai-responses",
    "openai-chat",
    "anthropic",
)
"""Values of ``metadata["harness"]`` the importers write (an ATIF log names its own)."""

_HEAD_BYTES = 512 * 1024
_HEAD_RECORDS = 25


def get_importer(name: str) -> Importer:
    """The importer registered under `name`."""
    if name not in _MODULES:
        raise FormatError(f"unknown format {name!r}; choose one of: {', '.join(FORMAT_NAMES)}", source="--format")
    module = importlib.import_module(_MODULES[name])
    importer: Importer = module.IMPORTER
    return importer


def detect_format(path: Path) -> str:
    """The name of the format a file is in, judged from its extension and content."""
    return _detect(path)[0]


_NOT_PARSED = object()


def head_records(path: Path, *, limit: int = _HEAD_RECORDS) -> list[Any]:
    """The first records of a JSON-lines file (at most `limit`, from its first 512 KiB):
    enough to tell its format without reading it all. Lines that do not parse are left
    out; a file none of whose first lines parse gives an empty list."""
    from tools.settings import parse_limits

    check_regular_file(path, int(parse_limits().max_transcript_bytes))
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise FormatError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from None
    lines = head.split(b"\n")
    if len(head) == _HEAD_BYTES:
        lines = lines[:-1]  # the last line may be cut by the read
    records: list[Any] = []
    for raw in lines:
        if len(records) >= limit:
            break
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            records.append(parse_json_bounded(text, source=str(path)))
        except FormatError:
            continue
    return records


def _detect(path: Path) -> tuple[str, Any]:
    """The format's name, and the file's parsed JSON when detection had to read it."""
    suffix = path.suffix.lower()
    if suffix == ".eval":
        return "inspect", _NOT_PARSED
    importers = [(name, get_importer(name)) for name in FORMAT_NAMES]
    if suffix == ".jsonl":
        return _detect_lines(path, head_records(path), importers), _NOT_PARSED
    try:
        data: Any = read_json(path)
    except JSONSyntaxError:
        # Not one JSON document: perhaps JSON lines under another extension (.log, .json).
        records = head_records(path)
        if not records or not all(isinstance(r, dict) for r in records):
            raise
        return _detect_lines(path, records, importers), _NOT_PARSED
    for name, importer in importers:
        if _sniffs(importer, path, data):
            return name, data
    raise _undetected(path, data, importers)


def _detect_lines(path: Path, records: list[Any], importers: list[tuple[str, Importer]]) -> str:
    line_based = [(name, imp) for name, imp in importers if imp.line_based]
    for name, importer in line_based:
        if _sniffs(importer, path, records):
            return name
    raise _undetected(path, records, line_based, lines=True)


def _sniffs(importer: Importer, path: Path, data: Any) -> bool:
    try:
        return bool(importer.sniff(path, data))
    except Exception:  # a sniffer must never break detection; it just does not claim the file
        return False


def _features(data: Any) -> set[str]:
    """What a file shows of its shape: top-level keys and ``type:<value>`` of the
    object, or of the first records of a JSON-lines file."""
    items: Iterable[Any] = data if isinstance(data, list) else [data]
    found: set[str] = set()
    for item in list(items)[:_HEAD_RECORDS]:
        if isinstance(item, dict):
            found.update(str(k) for k in item)
            kind = item.get("type")
            if isinstance(kind, str):
                found.add(f"type:{kind}")
            for nested in ("payload", "message"):
                inner = item.get(nested)
                if isinstance(inner, dict) and isinstance(inner.get("type"), str):
                    found.add(f"type:{inner['type']}")
    return found


def _undetected(path: Path, data: Any, importers: list[tuple[str, Importer]], *, lines: bool = False) -> FormatError:
    """The detection error: the closest importer (most markers seen) and why it refused."""
    features = _features(data)
    # Ties go to the later importer: the registry runs from the most specific shapes to
    # the loosest, and a loose reader (Anthropic for any 'messages' body) explains best.
    scored = [(len(importer.markers & features), i, name, importer) for i, (name, importer) in enumerate(importers)]
    best = max(scored, default=None)
    what = "JSON-lines file" if lines else "file"
    choices = ", ".join(FORMAT_NAMES)
    if best is None or best[0] == 0:
        return FormatError(
            f"could not tell which transcript format this {what} is: it has none of the keys or record types of the "
            f"formats this program reads; pass --format with one of: {choices}",
            source=str(path),
        )
    _, _, name, importer = best
    reason = "it does not have the shape this importer reads"
    if importer.refusal is not None:
        with contextlib.suppress(Exception):  # the reason is a courtesy; detection must not fail on it
            reason = importer.refusal(path, data)
    return FormatError(
        f"could not tell which transcript format this {what} is; the closest is {name!r} ({importer.description}), "
        f"which refused it: {reason}. Fix the file, or pass --format {name} to see the full error, or --format with "
        f"one of: {choices}",
        source=str(path),
    )


def load_transcript(
    path: str | Path,
    *,
    format: str | None = None,
    sample_id: str | None = None,
    epoch: int | None = None,
    skip_bad_lines: bool = False,
) -> Transcript:
    """Read a transcript file. `sample_id`/`epoch` choose a sample of an Inspect log;
    `skip_bad_lines` makes line-based logs skip malformed lines (each one recorded in
    the import report) instead of refusing the file."""
    from tools.settings import parse_limits

    p = Path(path)
    limits = parse_limits()
    if p.suffix.lower() == ".eval":  # a zip: its declared contents are checked by the importer
        check_regular_file(p, int(limits.max_eval_bytes), what="an Inspect log", setting="FORENSICS_MAX_EVAL_BYTES")
    else:
        check_regular_file(p, int(limits.max_transcript_bytes))
    name, data = (format, _NOT_PARSED) if format else _detect(p)
    importer = get_importer(name)
    options = LoadOptions(sample_id=sample_id, epoch=epoch, skip_bad_lines=skip_bad_lines)
    if data is _NOT_PARSED:
        transcript = importer.load(p, options)
    else:
        with primed_json(p, data):
            transcript = importer.load(p, options)
    transcript.metadata.setdefault("source_format", name)
    transcript.metadata.setdefault("source_path", str(p))
    if REPORT_KEY not in transcript.metadata:  # every importer counts; this is a guard, not a path
        tally = ImportTally(format=name, source=str(p))
        tally.count_messages(transcript.messages)
        tally.warn(f"the {name} importer did not count what it read, so losses cannot be ruled out")
        tally.finish(transcript)
    return transcript


__all__ = [
    "FORMAT_NAMES",
    "HARNESSES",
    "Importer",
    "LoadOptions",
    "detect_format",
    "get_importer",
    "head_records",
    "load_transcript",
]
