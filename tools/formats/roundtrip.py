"""Check that exporting a transcript to an API's request format and reading it back
keeps the conversation: the test of an exporter/importer pair, and a demo step."""

from __future__ import annotations

from typing import Any

from tools.errors import ExportError, FormatError
from tools.transcript import ThinkingBlock, Transcript


def content_view(transcript: Transcript, *, openai_fields_only: bool = False) -> dict[str, Any]:
    """What a round trip must preserve: system prompt, tools, and each message's role and
    blocks. Message ids and metadata are bookkeeping, not content, and so is a tool
    result's `status` (what became of the call: no request format carries it; the
    importer that read the log knows it). OpenAI's chat format
    has no field for thinking signatures, redacted thinking or a tool result's error
    flag, so comparisons through it leave those out."""
    messages = []
    for msg in transcript.messages:
        blocks = []
        for block in msg.content:
            if openai_fields_only and isinstance(block, ThinkingBlock) and block.redacted:
                continue
            dumped = block.model_dump(mode="json")
            dumped.pop("status", None)
            if openai_fields_only:
                dumped.pop("signature", None)
                dumped.pop("is_error", None)
            blocks.append(dumped)
        messages.append({"role": msg.role, "content": blocks})
    return {
        "system": transcript.system,
        "tools": [t.model_dump(mode="json") for t in transcript.tools],
        "messages": messages,
    }


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{path or '$'}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present on one side only"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"[:200]


def roundtrip_differences(transcript: Transcript) -> dict[str, list[str]]:
    """For each API format, the differences after export and re-import (empty: identity)."""
    from tools.formats.anthropic import parse as parse_anthropic
    from tools.formats.anthropic import to_anthropic_params
    from tools.formats.openai import parse as parse_openai
    from tools.formats.openai import to_openai_params

    out: dict[str, list[str]] = {}
    for name, export, parse, openai_only in (
        ("anthropic", to_anthropic_params, parse_anthropic, False),
        ("openai", to_openai_params, parse_openai, True),
    ):
        try:
            back = parse(export(transcript), source=f"<{name} export>")
        except (ExportError, FormatError) as exc:
            out[name] = [f"cannot export: {exc}"]
            continue
        diff = _first_difference(
            content_view(transcript, openai_fields_only=openai_only),
            content_view(back, openai_fields_only=openai_only),
        )
        out[name] = [diff] if diff else []
    return out
