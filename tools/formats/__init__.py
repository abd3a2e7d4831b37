"""Read transcripts from the formats agents are logged in, and write them back out.

`load_transcript(path)` detects the format (or takes `format=` to override) and
returns a normalized `Transcript`. Importers live one per module and register in
`IMPORTERS`; each raises `FormatError` (with file and location) on bad input and
nothing else.

Transcripts are untrusted: before any importer runs, the file must be a regular file
(not a directory, FIFO or device) no larger than ``FORENSICS_MAX_TRANSCRIPT_BYTES``;
JSON is read with `tools.formats.base.read_json` (bounded size, depth, integers,
Unicode). Detection parses a JSON file once and hands the result to the importer.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tools.errors import FormatError
from tools.formats.base import Importer, LoadOptions, check_regular_file, primed_json, read_json
from tools.transcript import Transcript

# name -> module that defines IMPORTER. Order matters for auto-detection: the most
# specific sniffers run first, Anthropic (the loosest shape) last.
_MODULES: dict[str, str] = {
    "native": "tools.formats.native",
    "inspect": "tools.formats.inspect_log",
    "claude-code": "tools.formats.claude_code",
    "openai": "tools.formats.openai",
    "anthropic": "tools.formats.anthropic",
}

FORMAT_NAMES: tuple[str, ...] = tuple(_MODULES)


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


def _detect(path: Path) -> tuple[str, Any]:
    """The format's name, and the file's parsed JSON when detection had to read it."""
    suffix = path.suffix.lower()
    if suffix == ".eval":
        return "inspect", _NOT_PARSED
    if suffix == ".jsonl":
        return "claude-code", _NOT_PARSED
    data: Any = read_json(path)
    for name in FORMAT_NAMES:
        if get_importer(name).sniff(path, data):
            return name, data
    raise FormatError(
        "could not tell which transcript format this is; pass --format with one of: " + ", ".join(FORMAT_NAMES),
        source=str(path),
    )


def load_transcript(
    path: str | Path,
    *,
    format: str | None = None,
    sample_id: str | None = None,
    epoch: int | None = None,
) -> Transcript:
    """Read a transcript file. `sample_id`/`epoch` choose a sample of an Inspect log."""
    from tools.settings import parse_limits

    p = Path(path)
    limits = parse_limits()
    if p.suffix.lower() == ".eval":  # a zip: its declared contents are checked by the importer
        check_regular_file(p, int(limits.max_eval_bytes), what="an Inspect log", setting="FORENSICS_MAX_EVAL_BYTES")
    else:
        check_regular_file(p, int(limits.max_transcript_bytes))
    name, data = (format, _NOT_PARSED) if format else _detect(p)
    importer = get_importer(name)
    options = LoadOptions(sample_id=sample_id, epoch=epoch)
    if data is _NOT_PARSED:
        transcript = importer.load(p, options)
    else:
        with primed_json(p, data):
            transcript = importer.load(p, options)
    transcript.metadata.setdefault("source_format", name)
    transcript.metadata.setdefault("source_path", str(p))
    return transcript


__all__ = ["FORMAT_NAMES", "Importer", "LoadOptions", "detect_format", "get_importer", "load_transcript"]
