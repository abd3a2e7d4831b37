"""Read transcripts from the formats agents are logged in, and write them back out.

`load_transcript(path)` detects the format (or takes `format=` to override) and
returns a normalized `Transcript`. Importers live one per module and register in
`IMPORTERS`; each raises `FormatError` (with file and location) on bad input and
nothing else.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tools.errors import FormatError
from tools.formats.base import Importer, LoadOptions, read_json
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
    suffix = path.suffix.lower()
    if suffix == ".eval":
        return "inspect"
    if suffix == ".jsonl":
        return "claude-code"
    data: Any = read_json(path)
    for name in FORMAT_NAMES:
        if get_importer(name).sniff(path, data):
            return name
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
    p = Path(path)
    if not p.exists():
        raise FormatError("file not found", source=str(p))
    name = format or detect_format(p)
    transcript = get_importer(name).load(p, LoadOptions(sample_id=sample_id, epoch=epoch))
    transcript.metadata.setdefault("source_format", name)
    transcript.metadata.setdefault("source_path", str(p))
    return transcript


__all__ = ["FORMAT_NAMES", "Importer", "LoadOptions", "detect_format", "get_importer", "load_transcript"]
