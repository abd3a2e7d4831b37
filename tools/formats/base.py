"""What every importer shares: reading JSON with located errors, and turning pydantic
validation errors on a vendor-shaped model into a `FormatError` with a JSON path."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tools.errors import FormatError
from tools.transcript import Transcript

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadOptions:
    """Options some formats use: Inspect logs hold many samples and epochs."""

    sample_id: str | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class Importer:
    """A registered format: `sniff` says whether a file looks like it (cheaply, from
    its path and already-parsed JSON when the file is JSON), `load` reads it."""

    name: str
    description: str
    sniff: Callable[[Path, Any], bool]
    load: Callable[[Path, LoadOptions], Transcript]


def json_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """Render a pydantic/JSON location tuple as ``messages[2].content[0].type``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def format_error_from_validation(exc: ValidationError, *, source: str, prefix: str = "", what: str = "") -> FormatError:
    """The first validation problem as a `FormatError` naming its JSON path."""
    err = exc.errors(include_url=False)[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "this field is required"
    elif err["type"] == "extra_forbidden":
        msg = "unexpected field"
    elif "input" in err and err["type"] not in {"missing"}:
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    if what:
        msg = f"{msg} — expected {what}"
    return FormatError(msg, source=source, location=json_path(loc, prefix))


def validate(model: type[M], data: Any, *, source: str, prefix: str = "", what: str = "") -> M:
    """`model.model_validate(data)` with errors converted to `FormatError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_error_from_validation(exc, source=source, prefix=prefix, what=what) from None


def read_text(path: Path) -> str:
    """A file's text; a missing/undecodable file becomes a `FormatError`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError("file not found", source=str(path)) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected a transcript file", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from None


def parse_json(text: str, *, source: str, line_offset: int = 0) -> Any:
    """Parse JSON; a syntax error names the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"invalid JSON: {exc.msg}", source=source, location=f"line {exc.lineno + line_offset}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise FormatError("JSON is nested too deeply", source=source) from None


def read_json(path: Path) -> Any:
    """Read and parse a JSON file with located errors."""
    return parse_json(read_text(path), source=str(path))
