"""What every importer shares: bounded reading of untrusted files (`read_bounded`,
`read_text`, `read_json`), bounded parsing (`parse_json_bounded`, `safe_yaml_load`,
`check_tree`), and turning pydantic validation errors on a vendor-shaped model into a
`FormatError` with a JSON path.

The limits (file size, nesting depth, YAML aliases) come from `tools.settings.ParseLimits`
and are listed in SECURITY.md."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import stat
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from tools.errors import FormatError
from tools.transcript import Transcript

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadOptions:
    """Options some formats use: Inspect logs hold many samples and epochs; line-based
    logs (Claude Code, Codex) can skip malformed lines instead of refusing the file, and
    record each skipped line in the import report."""

    sample_id: str | None = None
    epoch: int | None = None
    skip_bad_lines: bool = False


@dataclass(frozen=True)
class Importer:
    """A registered format: `sniff` says whether a file looks like it (cheaply, from
    its path and already-parsed JSON when the file is JSON, or the first records of a
    JSON-lines file, as a list, when the importer is `line_based`), `load` reads it.

    For the error when no importer claims a file: `markers` are top-level keys (and
    ``type:<value>`` record types) typical of the format, used to name the closest
    format, and `refusal` says why `sniff` refused, in words."""

    name: str
    description: str
    sniff: Callable[[Path, Any], bool]
    load: Callable[[Path, LoadOptions], Transcript]
    markers: frozenset[str] = frozenset()
    refusal: Callable[[Path, Any], str] | None = None
    line_based: bool = False


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


# ------------------------------------------------------------------ bounded reading
#
# Transcripts and incident files are written by the model under investigation or by
# whoever filed the flag. Everything below reads them with bounds: regular files only,
# at most a configured number of bytes, nesting depth, integer size and Unicode
# checked, YAML aliases limited. Every problem is a `FormatError` naming the file and,
# where there is one, the place in it.

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""Where a lone surrogate can come from in JSON text: decoded UTF-8 holds none."""
_MAX_DIGITS = sys.int_info.default_max_str_digits
_LONG_INT = re.compile(r"(?<![\d.eE+-])-?\d{" + str(sys.int_info.default_max_str_digits + 1) + r",}(?![\d.eE])")
TRANSCRIPT_CAP_SETTING = "FORENSICS_MAX_TRANSCRIPT_BYTES"
INCIDENT_CAP_SETTING = "FORENSICS_MAX_INCIDENT_BYTES"


def human_bytes(n: int) -> str:
    """``65536`` → ``64 KiB``: sizes in messages."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_kind(mode: int, source: str, what: str) -> FormatError:
    return FormatError(f"is {_kind(mode)}, expected {what} (a regular file)", source=source)


def _too_big(size: int, cap: int, source: str, what: str, setting: str) -> FormatError:
    return FormatError(
        f"{what} is {human_bytes(size)}, over the limit of {human_bytes(cap)}; set {setting} to raise it",
        source=source,
    )


def check_regular_file(
    path: Path, cap: int, *, what: str = "a transcript file", setting: str = TRANSCRIPT_CAP_SETTING
) -> os.stat_result:
    """`os.stat` of `path`, refusing what is not a regular file (directories, FIFOs,
    devices such as /dev/zero, sockets) or is larger than `cap` bytes. For readers that
    open the file by name themselves (inspect_ai); `read_bounded` checks again on the
    open descriptor."""
    source = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FormatError("file not found", source=source) from None
    except OSError as exc:
        raise FormatError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    except ValueError as exc:  # a NUL byte in the name
        raise FormatError(f"cannot use this path: {exc}", source=source) from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse_kind(info.st_mode, source, what)
    if info.st_size > cap:
        raise _too_big(info.st_size, cap, source, what, setting)
    return info


def read_bounded(
    path: Path, cap: int, *, what: str = "a transcript file", setting: str = TRANSCRIPT_CAP_SETTING
) -> bytes:
    """The bytes of a regular file of at most `cap` bytes.

    The file is checked with `os.stat` before it is opened (a directory, FIFO, device
    or socket is refused without opening it, so a FIFO cannot block and /dev/zero
    cannot fill memory), opened non-blocking, checked again on the descriptor (in case
    it was swapped in between), and at most ``cap + 1`` bytes are read (in case it grew).
    `setting` names the environment variable that raises the cap, for the message.
    """
    source = str(path)
    check_regular_file(path, cap, what=what, setting=setting)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FormatError("file not found", source=source) from None
    except OSError as exc:
        raise FormatError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse_kind(info.st_mode, source, what)
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise FormatError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > cap:
        raise _too_big(len(data), cap, source, what, setting)
    return data


def _line_column(text: str | bytes, offset: int) -> str:
    newline = "\n" if isinstance(text, str) else b"\n"
    line = text.count(newline, 0, offset) + 1  # type: ignore[arg-type]
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1  # type: ignore[arg-type]
    return f"line {line}, column {column}"


def decode_utf8(data: bytes, *, source: str) -> str:
    """`data` as UTF-8 text (a leading byte-order mark dropped). Bytes that are not
    UTF-8 — encoded surrogates included — are an error naming their line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(
            f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x})",
            source=source,
            location=_line_column(data, exc.start),
        ) from None


class JSONSyntaxError(FormatError):
    """The text is not JSON at all (as opposed to JSON over a limit). Readers that
    tolerate an interrupted last line (JSONL session logs) catch only this. `reason`
    is the parser's message, `line` and `column` where it stopped (1-based, in the
    text parsed)."""

    def __init__(self, reason: str, *, source: str, line: int, column: int, line_offset: int = 0) -> None:
        self.reason, self.line, self.column = reason, line, column
        super().__init__(
            f"invalid JSON: {reason}", source=source, location=f"line {line + line_offset}, column {column}"
        )


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep_at(text: str, max_depth: int) -> int | None:
    """The offset in JSON text where nesting first passes `max_depth` (strings skipped),
    for locating an error the parser could only report as a recursion overflow."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None


def _join(prefix: str, path: tuple[Any, ...]) -> str:
    rendered = json_path(path) if path else ""
    if prefix and rendered:
        return f"{prefix}: {rendered}"
    return prefix or rendered or "$"


def _too_deep(max_depth: int, source: str, location: str) -> FormatError:
    return FormatError(
        f"nested more than {max_depth} levels deep (FORENSICS_MAX_DEPTH)", source=source, location=location
    )


def _short_path(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """A path shortened for a message: a value 128 levels deep has a 128-part path."""
    return path if len(path) <= 12 else (*path[:6], f"…{len(path) - 10} levels…", *path[-4:])


def _problem(node: Any, depth: int, max_depth: int, strings: bool) -> str | None:
    """What is wrong with one value by itself (not its children), if anything."""
    if isinstance(node, (dict, list)):
        if depth > max_depth:
            return f"nested more than {max_depth} levels deep (FORENSICS_MAX_DEPTH)"
        if strings and isinstance(node, dict):
            for key in node:
                if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                    return f"invalid Unicode: the key {key!r} holds a lone surrogate"
        return None
    if isinstance(node, str):
        if strings and not node.isascii():
            bad = _SURROGATE.search(node)
            if bad is not None:
                return f"invalid Unicode: a lone surrogate \\u{ord(bad.group()):04x} at character {bad.start()}"
        return None
    if isinstance(node, int) and node.bit_length() > 3 * _MAX_DIGITS and abs(node) >= 10**_MAX_DIGITS:
        return f"an integer with more than {_MAX_DIGITS} digits"
    return None


def _bad_scalar(value: Any) -> bool:
    if type(value) is str:
        return not value.isascii() and _SURROGATE.search(value) is not None
    return type(value) is int and value.bit_length() > 3 * _MAX_DIGITS and abs(value) >= 10**_MAX_DIGITS


def _scan(value: Any, max_depth: int, strings: bool) -> bool:
    """Whether the whole tree is within the limits: the fast pass, level by level (no
    paths kept; about five times faster than `_locate` on a large transcript)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return False
        below: list[Any] = []
        extend = below.extend
        for node in level:
            values = node.values() if type(node) is dict else node
            extend([v for v in values if type(v) is dict or type(v) is list])
            if strings:
                if any(_bad_scalar(v) for v in values):
                    return False
                if type(node) is dict and any(_bad_scalar(k) for k in node):
                    return False
        level = below
    return True


def _locate(value: Any, max_depth: int, strings: bool) -> tuple[tuple[Any, ...], str] | None:
    """The path and description of the first value over the limits (the slow pass)."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        problem = _problem(node, depth, max_depth, strings)
        if problem is not None:
            return path, problem
        if isinstance(node, dict):
            stack.extend((sub, depth + 1, (*path, key)) for key, sub in node.items())
        elif isinstance(node, list):
            stack.extend((sub, depth + 1, (*path, i)) for i, sub in enumerate(node))
    return None


def check_tree(
    value: Any, *, source: str, location: str = "", max_depth: int | None = None, strings: bool = True
) -> None:
    """Check parsed JSON/YAML data against the limits: lists and mappings nested at most
    `max_depth` deep (default: the ``FORENSICS_MAX_DEPTH`` setting), no integer over
    Python's digit limit and, with `strings`, no string or key holding a lone surrogate
    (invalid Unicode that cannot be written out again). The error names the path of
    the offending value, after `location` (e.g. ``line 3``)."""
    if max_depth is None:
        from tools.settings import parse_limits

        max_depth = parse_limits().max_depth
    if not isinstance(value, (dict, list)):
        if strings and _bad_scalar(value):
            found = _locate([value], max_depth, strings)
            raise FormatError(found[1] if found else "invalid value", source=source, location=_join(location, ()))
        return
    if _scan(value, max_depth, strings):
        return
    found = _locate(value, max_depth, strings)
    path, problem = found if found is not None else ((), "over the parse limits")
    raise FormatError(problem, source=source, location=_join(location, _short_path(path)))


def parse_json_bounded(
    text: str, *, source: str, location: str = "", line_offset: int = 0, max_depth: int | None = None
) -> Any:
    """Parse JSON text and check it with `check_tree`. Syntax errors (`JSONSyntaxError`)
    name the line and column (`line_offset` is added to the line, for one line of a
    JSONL file); nesting past the limit, integers over 4,300 digits and lone surrogates
    are located `FormatError`s too. Never raises anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONSyntaxError(
            exc.msg, source=source, line=exc.lineno, column=exc.colno, line_offset=line_offset
        ) from None
    except RecursionError:
        if max_depth is None:
            from tools.settings import parse_limits

            max_depth = parse_limits().max_depth
        offset = _too_deep_at(text, max_depth)
        where = location
        if offset is not None:
            line, _, column = _line_column(text, offset).partition(", ")
            where = f"line {int(line.split()[1]) + line_offset}, {column}"
        raise _too_deep(max_depth, source, where) from None
    except ValueError as exc:  # int() over the digit limit
        found = _LONG_INT.search(text)
        where = location
        if found:
            line, _, column = _line_column(text, found.start()).partition(", ")
            where = f"line {int(line.split()[1]) + line_offset}, {column}"
        raise FormatError(
            f"an integer with more than {sys.int_info.default_max_str_digits} digits ({str(exc).split(';')[0]})",
            source=source,
            location=where,
        ) from None
    strings = _SURROGATE_ESCAPE.search(text) is not None
    check_tree(data, source=source, location=location, max_depth=max_depth, strings=strings)
    return data


class _BoundedYAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits: nesting depth, alias references, the nodes
    all aliases expand to together, integer size. Pure Python (its composer is what
    resolves aliases, and the C loader's cannot be limited)."""

    max_depth = 128
    max_aliases = 100
    max_alias_nodes = 10_000

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._alias_nodes = 0
        self._weights: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._aliases += 1
                self._alias_nodes += self._weights.get(id(target), 1)
                if self._aliases > self.max_aliases:
                    raise ComposerError(
                        None,
                        None,
                        f"more than {self.max_aliases} alias references (FORENSICS_MAX_YAML_ALIASES)",
                        event.start_mark,
                    )
                if self._alias_nodes > self.max_alias_nodes:
                    raise ComposerError(
                        None,
                        None,
                        f"aliases expand to more than {self.max_alias_nodes} nodes, an alias bomb "
                        "(FORENSICS_MAX_YAML_ALIAS_NODES)",
                        event.start_mark,
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > self.max_depth:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(
                None, None, f"nested more than {self.max_depth} levels deep (FORENSICS_MAX_DEPTH)", event.start_mark
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            weight = 1 + sum(self._weights.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            weight = 1 + sum(self._weights.get(id(k), 1) + self._weights.get(id(v), 1) for k, v in node.value)
        else:
            weight = 1
        if node is not None:
            self._weights[id(node)] = weight
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise ConstructorError(None, None, f"invalid value: {exc}", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = str(node.value)
        if len(value) > sys.int_info.default_max_str_digits:
            raise ConstructorError(
                None, None, f"an integer with more than {sys.int_info.default_max_str_digits} digits", node.start_mark
            )
        return int(super().construct_yaml_int(node))


_BoundedYAMLLoader.add_constructor("tag:yaml.org,2002:int", _BoundedYAMLLoader.construct_yaml_int)


def safe_yaml_load(text: str, *, source: str, location: str = "") -> Any:
    """Parse one YAML document with PyYAML's safe loader under the parse limits
    (`tools.settings.ParseLimits`): nesting depth, alias references and their total
    expansion (so a kilobyte alias bomb is refused instead of expanding to gigabytes),
    integer size, Unicode. Errors are `FormatError`s naming the line and column."""
    from tools.settings import parse_limits

    limits = parse_limits()
    loader = _BoundedYAMLLoader(text)
    loader.max_depth = limits.max_depth
    loader.max_aliases = limits.max_yaml_aliases
    loader.max_alias_nodes = limits.max_yaml_alias_nodes
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        raise FormatError(
            f"not valid YAML: {problem}" + (f" ({context})" if context else ""),
            source=source,
            location=": ".join(part for part in (location, where) if part),
        ) from None
    except RecursionError:
        raise FormatError("YAML is nested too deeply", source=source, location=location) from None
    finally:
        loader.dispose()
    check_tree(data, source=source, location=location, max_depth=limits.max_depth + 1)
    return data


def check_zip_archive(path: Path) -> None:
    """Refuse a zip archive (an Inspect ``.eval`` log) whose central directory declares
    more than the parse limits allow — total uncompressed bytes, one member's bytes,
    the number of members, or a compression ratio only a zip bomb reaches — before
    anything decompresses it. Python's zipfile (which inspect_ai reads with) stops each
    member at its declared size, so the declared sizes bound what reading can inflate."""
    from tools.settings import parse_limits

    limits = parse_limits()
    source = str(path)
    try:
        # The member count from the end-of-archive record first: listing a central
        # directory of millions of entries would itself take gigabytes.
        with path.open("rb") as handle:
            end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
        declared = int(end[zipfile._ECD_ENTRIES_TOTAL]) if end else 0  # type: ignore[attr-defined]
        if declared > limits.max_eval_members:
            raise FormatError(
                f"the archive holds {declared} members, over the limit of {limits.max_eval_members}; "
                "set FORENSICS_MAX_EVAL_MEMBERS to raise it",
                source=source,
            )
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(
            f"not a complete zip archive, so truncated or not an .eval log ({detail})", source=source
        ) from None
    if len(members) > limits.max_eval_members:
        raise FormatError(
            f"the archive holds {len(members)} members, over the limit of {limits.max_eval_members}; "
            "set FORENSICS_MAX_EVAL_MEMBERS to raise it",
            source=source,
        )
    total = 0
    for member in members:
        size, packed = member.file_size, member.compress_size
        total += size
        if size > 1024 * 1024 and size > limits.max_eval_ratio * max(packed, 1):
            raise FormatError(
                f"member expands {size / max(packed, 1):.0f}-fold ({human_bytes(packed)} to {human_bytes(size)}), "
                f"over the ratio limit of {limits.max_eval_ratio:g} (a zip bomb?); "
                "set FORENSICS_MAX_EVAL_RATIO to raise it",
                source=source,
                location=member.filename,
            )
        if size > limits.max_eval_member_bytes:
            raise FormatError(
                f"member is {human_bytes(size)} uncompressed, over the limit of "
                f"{human_bytes(limits.max_eval_member_bytes)}; set FORENSICS_MAX_EVAL_MEMBER_BYTES to raise it",
                source=source,
                location=member.filename,
            )
    if total > limits.max_eval_bytes:
        raise FormatError(
            f"the archive expands to {human_bytes(total)}, over the limit of {human_bytes(limits.max_eval_bytes)}; "
            "set FORENSICS_MAX_EVAL_BYTES to raise it",
            source=source,
        )


def read_text(
    path: Path, *, cap: int | None = None, what: str = "a transcript file", setting: str = TRANSCRIPT_CAP_SETTING
) -> str:
    """A file's UTF-8 text, read with `read_bounded` (default cap: the
    ``FORENSICS_MAX_TRANSCRIPT_BYTES`` setting); every problem is a `FormatError`."""
    if cap is None:
        from tools.settings import parse_limits

        cap = int(parse_limits().max_transcript_bytes)
    return decode_utf8(read_bounded(path, cap, what=what, setting=setting), source=str(path))


def parse_json(text: str, *, source: str, line_offset: int = 0) -> Any:
    """Parse JSON with the limits of `parse_json_bounded` (kept for existing callers)."""
    return parse_json_bounded(text, source=source, line_offset=line_offset)


_PRIMED: contextvars.ContextVar[tuple[tuple[str, int, int, int], Any] | None] = contextvars.ContextVar(
    "primed_json", default=None
)


def _identity(path: Path) -> tuple[str, int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (str(path), info.st_ino, info.st_size, info.st_mtime_ns)


@contextlib.contextmanager
def primed_json(path: Path, data: Any) -> Iterator[None]:
    """Within the block, the next `read_json(path)` of the unchanged file returns `data`
    (already read and parsed, e.g. by format detection) instead of parsing it again.
    Used once, then forgotten."""
    key = _identity(path)
    token = _PRIMED.set((key, data) if key is not None else None)
    try:
        yield
    finally:
        _PRIMED.reset(token)


def read_json(path: Path) -> Any:
    """Read and parse a JSON transcript file, bounded (`read_text`, `parse_json_bounded`)."""
    primed = _PRIMED.get()
    if primed is not None and primed[0] == _identity(path):
        _PRIMED.set(None)
        return primed[1]
    return parse_json_bounded(read_text(path), source=str(path))
