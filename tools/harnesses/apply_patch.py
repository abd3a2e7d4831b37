"""Codex's ``apply_patch`` format, parsed and applied as the Codex CLI does.

The format (Codex's own grammar)::

    *** Begin Patch
    *** Add File: path          then "+line" for each line of the new file
    *** Delete File: path
    *** Update File: path
    *** Move to: new/path       (optional)
    @@ optional context line    (locates the chunk; bare "@@" for none)
     context line / -removed / +added
    *** End of File             (optional: the chunk ends the file)
    *** End Patch

Parsing is lenient where Codex is (whitespace around markers, a heredoc wrapper
``<<'EOF' ... EOF``, a first chunk without ``@@``). Chunks are located with Codex's
search order: exact lines, then ignoring trailing whitespace, then ignoring surrounding
whitespace, then with typographic punctuation normalised to ASCII. Updated files end
with a newline. Nothing is written unless every hunk applies; then the summary is
Codex's (``Success. Updated the following files:`` and ``A``/``M``/``D`` lines).

Files are read and written through the sandbox; deletions run ``rm`` with the path
as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.harnesses.base import read_text, write_text
from tools.toolmap import PathMap, ToolRun

BEGIN = "*** Begin Patch"
END = "*** End Patch"
ADD = "*** Add File: "
DELETE = "*** Delete File: "
UPDATE = "*** Update File: "
MOVE = "*** Move to: "
EOF_MARK = "*** End of File"


class PatchError(Exception):
    """The patch is malformed or does not apply; the message is Codex's."""


@dataclass
class Chunk:
    context: str | None
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    end_of_file: bool = False


@dataclass
class Hunk:
    kind: str  # "add" | "delete" | "update"
    path: str
    contents: str = ""
    move_to: str | None = None
    chunks: list[Chunk] = field(default_factory=list)


def parse_patch(text: str) -> list[Hunk]:
    """The hunks of a patch, or `PatchError` with Codex's message."""
    lines = text.strip().splitlines()
    body = _boundaries(lines)
    hunks: list[Hunk] = []
    i, line_number = 0, 2
    while i < len(body):
        hunk, used = _parse_hunk(body[i:], line_number)
        hunks.append(hunk)
        i += used
        line_number += used
    return hunks


def _boundaries(lines: list[str]) -> list[str]:
    def strict(candidate: list[str]) -> list[str]:
        first = candidate[0].strip() if candidate else None
        last = candidate[-1].strip() if candidate else None
        if first != BEGIN:
            raise PatchError("Invalid patch: The first line of the patch must be '*** Begin Patch'")
        if last != END or len(candidate) < 2:
            raise PatchError("Invalid patch: The last line of the patch must be '*** End Patch'")
        return candidate[1:-1]

    try:
        return strict(lines)
    except PatchError:
        if len(lines) >= 4 and lines[0] in {"<<EOF", "<<'EOF'", '<<"EOF"'} and lines[-1].endswith("EOF"):
            return strict(lines[1:-1])
        raise


def _parse_hunk(lines: list[str], line_number: int) -> tuple[Hunk, int]:
    first = lines[0].strip()
    if first.startswith(ADD):
        contents, used = [], 1
        for line in lines[1:]:
            if not line.startswith("+"):
                break
            contents.append(line[1:] + "\n")
            used += 1
        return Hunk("add", first[len(ADD) :], contents="".join(contents)), used
    if first.startswith(DELETE):
        return Hunk("delete", first[len(DELETE) :]), 1
    if first.startswith(UPDATE):
        path = first[len(UPDATE) :]
        rest, used = lines[1:], 1
        move_to = None
        if rest and rest[0].startswith(MOVE):
            move_to, rest, used = rest[0][len(MOVE) :], rest[1:], used + 1
        chunks: list[Chunk] = []
        while rest:
            if not rest[0].strip():
                rest, used = rest[1:], used + 1
                continue
            if rest[0].startswith("*"):
                break
            chunk, n = _parse_chunk(rest, line_number + used, allow_missing_context=not chunks)
            chunks.append(chunk)
            rest, used = rest[n:], used + n
        if not chunks:
            raise PatchError(f"Invalid patch hunk on line {line_number}: Update file hunk for path '{path}' is empty")
        return Hunk("update", path, move_to=move_to, chunks=chunks), used
    raise PatchError(
        f"Invalid patch hunk on line {line_number}: '{first}' is not a valid hunk header. Valid hunk headers: "
        "'*** Add File: {path}', '*** Delete File: {path}', '*** Update File: {path}'"
    )


def _parse_chunk(lines: list[str], line_number: int, *, allow_missing_context: bool) -> tuple[Chunk, int]:
    if lines[0] == "@@":
        chunk, start = Chunk(None), 1
    elif lines[0].startswith("@@ "):
        chunk, start = Chunk(lines[0][3:]), 1
    elif allow_missing_context:
        chunk, start = Chunk(None), 0
    else:
        raise PatchError(
            f"Invalid patch hunk on line {line_number}: Expected update hunk to start with a @@ context marker, "
            f"got: '{lines[0]}'"
        )
    if start >= len(lines):
        raise PatchError(f"Invalid patch hunk on line {line_number + 1}: Update hunk does not contain any lines")
    parsed = 0
    for line in lines[start:]:
        if line == EOF_MARK:
            if parsed == 0:
                raise PatchError(
                    f"Invalid patch hunk on line {line_number + 1}: Update hunk does not contain any lines"
                )
            chunk.end_of_file = True
            parsed += 1
            break
        if line == "":
            chunk.old.append("")
            chunk.new.append("")
        elif line[0] == " ":
            chunk.old.append(line[1:])
            chunk.new.append(line[1:])
        elif line[0] == "+":
            chunk.new.append(line[1:])
        elif line[0] == "-":
            chunk.old.append(line[1:])
        else:
            if parsed == 0:
                raise PatchError(
                    f"Invalid patch hunk on line {line_number + 1}: Unexpected line found in update hunk: '{line}'. "
                    "Every line should start with ' ' (context line), '+' (added line), or '-' (removed line)"
                )
            break
        parsed += 1
    return chunk, parsed + start


_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
        **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "),
    }
)


def seek_sequence(lines: list[str], pattern: list[str], start: int, eof: bool) -> int | None:
    """Where `pattern` occurs in `lines` at or after `start` (see the module doc)."""
    if not pattern:
        return start
    if len(pattern) > len(lines):
        return None
    begin = len(lines) - len(pattern) if eof else start
    last = len(lines) - len(pattern)
    for normalise in (
        lambda s: s,
        str.rstrip,
        str.strip,
        lambda s: s.strip().translate(_PUNCTUATION),
    ):
        for i in range(begin, last + 1):
            if all(normalise(lines[i + k]) == normalise(p) for k, p in enumerate(pattern)):
                return i
    return None


def new_contents(original: str, chunks: list[Chunk], path: str) -> str:
    """The file after its chunks, or `PatchError` naming what was not found."""
    lines = original.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    replacements: list[tuple[int, int, list[str]]] = []
    index = 0
    for chunk in chunks:
        if chunk.context is not None:
            found = seek_sequence(lines, [chunk.context], index, False)
            if found is None:
                raise PatchError(f"Failed to find context '{chunk.context}' in {path}")
            index = found + 1
        if not chunk.old:
            at = len(lines) - 1 if lines and lines[-1] == "" else len(lines)
            replacements.append((at, 0, list(chunk.new)))
            continue
        pattern, new = chunk.old, chunk.new
        found = seek_sequence(lines, pattern, index, chunk.end_of_file)
        if found is None and pattern and pattern[-1] == "":
            pattern = pattern[:-1]
            new = new[:-1] if new and new[-1] == "" else new
            found = seek_sequence(lines, pattern, index, chunk.end_of_file)
        if found is None:
            raise PatchError(f"Failed to find expected lines in {path}:\n" + "\n".join(chunk.old))
        replacements.append((found, len(pattern), list(new)))
        index = found + len(pattern)
    for start, length, new in sorted(replacements, reverse=True):
        lines[start : start + length] = new
    if not lines or lines[-1] != "":
        lines.append("")
    return "\n".join(lines)


async def apply_patch(run: ToolRun, text: str, cwd: str, paths: PathMap) -> tuple[str, bool]:
    """Apply a patch in the sandbox: ``(output, ok)`` with Codex's texts."""
    try:
        hunks = parse_patch(text)
    except PatchError as exc:
        return str(exc) + "\n", False
    if not hunks:
        return "No files were modified.\n", False

    def where(path: str) -> str:
        return paths.to_sandbox(path, cwd)

    # Compute every change before writing anything.
    writes: list[tuple[str, str]] = []
    removals: list[str] = []
    summary: list[str] = []
    try:
        for hunk in hunks:
            if hunk.kind == "add":
                writes.append((where(hunk.path), hunk.contents))
                summary.append(f"A {hunk.path}")
            elif hunk.kind == "delete":
                if await read_text(run, where(hunk.path)) is None:
                    raise PatchError(f"Failed to delete file {hunk.path}")
                removals.append(where(hunk.path))
                summary.append(f"D {hunk.path}")
            else:
                original = await read_text(run, where(hunk.path))
                if original is None:
                    raise PatchError(
                        f"Failed to read file to update {hunk.path}: No such file or directory (os error 2)"
                    )
                updated = new_contents(original, hunk.chunks, hunk.path)
                if hunk.move_to:
                    writes.append((where(hunk.move_to), updated))
                    removals.append(where(hunk.path))
                    summary.append(f"M {hunk.move_to}")
                else:
                    writes.append((where(hunk.path), updated))
                    summary.append(f"M {hunk.path}")
    except PatchError as exc:
        return str(exc) + "\n", False
    for target, content in writes:
        problem = await write_text(run, target, content)
        if problem is not None:
            return f"Failed to write file {paths.to_session(target)}: {problem}\n", False
    for target in removals:
        result = await run.sandbox.exec(["rm", "-f", "--", target], timeout=30)
        if not result.ok:
            return f"Failed to delete file {paths.to_session(target)}: {result.output.strip()}\n", False
    added = [s for s in summary if s.startswith("A ")]
    modified = [s for s in summary if s.startswith("M ")]
    deleted = [s for s in summary if s.startswith("D ")]
    return "Success. Updated the following files:\n" + "".join(f"{s}\n" for s in added + modified + deleted), True
