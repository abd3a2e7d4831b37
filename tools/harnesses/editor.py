"""The ``str_replace`` editor family, as its harnesses run it.

Anthropic's text editor tool (``str_replace_editor`` for ``text_editor_20250124``,
``str_replace_based_edit_tool`` for the 2025-04/07 versions), Inspect's
``text_editor``, SWE-agent's and OpenHands' ``str_replace_editor`` all descend from the
same reference editor: commands ``view`` (a file with ``cat -n`` numbering, or a
directory two levels deep), ``create``, ``str_replace`` (exactly one occurrence),
``insert`` (after a line) and, in the versions that have it, ``undo_edit``. Results and
errors are the reference's texts, so replayed outputs compare with recorded ones.

Files are read and written through the sandbox (`read_file` / `write_file`); a
directory view runs ``find`` with the path as an argument. The undo history lives in the
episode's `ToolRun.state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.harnesses.base import numbered, path_kind, read_text, write_text
from tools.toolmap import BindingKind, ToolOutcome, ToolRun

SNIPPET_LINES = 4
MAX_RESPONSE_CHARS = 16000
TRUNCATED_NOTE = (
    "<response clipped><NOTE>To save on context only part of this file has been shown to you. You should retry "
    "this tool after you have searched inside the file with `grep -n` in order to find the line numbers of what "
    "you are looking for.</NOTE>"
)


class _EditorError(Exception):
    """A failure the editor reports to the subject as its tool error."""


def _truncate(text: str, limit: int = MAX_RESPONSE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNCATED_NOTE


def _cat_n(content: str, descriptor: str, init_line: int = 1) -> str:
    body = numbered(_truncate(content).expandtabs(), start=init_line)
    return f"Here's the result of running `cat -n` on {descriptor}:\n{body}\n"


@dataclass(frozen=True)
class EditorTool:
    """One editor tool (see the module doc). `undo` says whether ``undo_edit`` exists."""

    name: str
    undo: bool = True
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "file"

    @property
    def passive(self) -> bool:
        return False

    @property
    def commands(self) -> tuple[str, ...]:
        base = ("view", "create", "str_replace", "insert")
        return (*base, "undo_edit") if self.undo else base

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return f"{self.name} {call_input.get('command', '?')} {call_input.get('path', '?')}"

    def comparable(self, text: str) -> str:
        return text

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        action = self.describe(call_input)
        try:
            text = await self._run(call_input, run)
        except _EditorError as exc:
            return ToolOutcome(output=str(exc), is_error=True, action=action)
        return ToolOutcome(output=text, action=action)

    # ------------------------------------------------------------------ commands
    def _history(self, run: ToolRun, path: str) -> list[str]:
        state = run.state.setdefault(self.name, {})
        history: dict[str, list[str]] = state.setdefault("history", {})
        return history.setdefault(path, [])

    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> str:
        command = call_input.get("command")
        path = call_input.get("path")
        if not isinstance(path, str):
            raise _EditorError("Parameter `path` is required.")
        if command not in self.commands:
            raise _EditorError(
                f"Unrecognized command {command}. The allowed commands for the {self.name} tool are: "
                + ", ".join(self.commands)
            )
        if not path.startswith("/"):
            raise _EditorError(
                f"The path {path} is not an absolute path, it should start with `/`. Maybe you meant {path}?"
            )
        target = run.paths.to_sandbox(path)
        kind = await path_kind(run, target)
        if kind == "missing" and command != "create":
            raise _EditorError(f"The path {path} does not exist. Please provide a valid path.")
        if kind != "missing" and command == "create":
            raise _EditorError(f"File already exists at: {path}. Cannot overwrite files using command `create`.")
        if kind == "dir" and command != "view":
            raise _EditorError(f"The path {path} is a directory and only the `view` command can be used on directories")
        if command == "view":
            return await self._view(run, path, target, kind, call_input.get("view_range"))
        if command == "create":
            file_text = call_input.get("file_text")
            if not isinstance(file_text, str):
                raise _EditorError("Parameter `file_text` is required for command: create")
            await self._write(run, path, target, file_text)
            self._history(run, path).append(file_text)
            return f"File created successfully at: {path}"
        if command == "str_replace":
            old = call_input.get("old_str")
            if not isinstance(old, str):
                raise _EditorError("Parameter `old_str` is required for command: str_replace")
            new = call_input.get("new_str")
            return await self._str_replace(run, path, target, old, new if isinstance(new, str) else "")
        if command == "insert":
            line = call_input.get("insert_line")
            if not isinstance(line, int) or isinstance(line, bool):
                raise _EditorError("Parameter `insert_line` is required for command: insert")
            new = call_input.get("new_str", call_input.get("insert_text"))
            if not isinstance(new, str):
                raise _EditorError("Parameter `new_str` is required for command: insert")
            return await self._insert(run, path, target, line, new)
        return await self._undo(run, path, target)

    async def _read(self, run: ToolRun, path: str, target: str) -> str:
        text = await read_text(run, target)
        if text is None:
            raise _EditorError(f"Ran into [Errno 2] No such file or directory: '{path}' while trying to read {path}")
        return text

    async def _write(self, run: ToolRun, path: str, target: str, text: str) -> None:
        problem = await write_text(run, target, text)
        if problem is not None:
            raise _EditorError(f"Ran into {problem} while trying to write to {path}")

    async def _view(self, run: ToolRun, path: str, target: str, kind: str, view_range: Any) -> str:
        if kind == "dir":
            if view_range:
                raise _EditorError("The `view_range` parameter is not allowed when `path` points to a directory.")
            result = await run.sandbox.exec(["find", target, "-maxdepth", "2", "-not", "-path", "*/.*"], timeout=60)
            listing = run.paths.text_to_session(result.stdout)
            if result.stderr:
                raise _EditorError(run.paths.text_to_session(result.stderr))
            return (
                f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden items:\n{listing}\n"
            )
        content = await self._read(run, path, target)
        init_line = 1
        if view_range:
            if (
                not isinstance(view_range, list)
                or len(view_range) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in view_range)
            ):
                raise _EditorError("Invalid `view_range`. It should be a list of two integers.")
            lines = content.split("\n")
            init_line, final_line = view_range
            if init_line < 1 or init_line > len(lines):
                raise _EditorError(
                    f"Invalid `view_range`: {view_range}. Its first element `{init_line}` should be within the range "
                    f"of lines of the file: {[1, len(lines)]}"
                )
            if final_line > len(lines):
                raise _EditorError(
                    f"Invalid `view_range`: {view_range}. Its second element `{final_line}` should be smaller than "
                    f"the number of lines in the file: `{len(lines)}`"
                )
            if final_line != -1 and final_line < init_line:
                raise _EditorError(
                    f"Invalid `view_range`: {view_range}. Its second element `{final_line}` should be larger or equal "
                    f"than its first `{init_line}`"
                )
            content = "\n".join(lines[init_line - 1 :] if final_line == -1 else lines[init_line - 1 : final_line])
        return _cat_n(content, path, init_line)

    async def _str_replace(self, run: ToolRun, path: str, target: str, old: str, new: str) -> str:
        content = (await self._read(run, path, target)).expandtabs()
        old, new = old.expandtabs(), new.expandtabs()
        occurrences = content.count(old) if old else 0
        if occurrences == 0:
            raise _EditorError(f"No replacement was performed, old_str `{old}` did not appear verbatim in {path}.")
        if occurrences > 1:
            lines = [i + 1 for i, line in enumerate(content.split("\n")) if old in line]
            raise _EditorError(
                f"No replacement was performed. Multiple occurrences of old_str `{old}` in lines {lines}. "
                "Please ensure it is unique"
            )
        updated = content.replace(old, new)
        await self._write(run, path, target, updated)
        self._history(run, path).append(content)
        line = content.split(old)[0].count("\n")
        start, end = max(0, line - SNIPPET_LINES), line + SNIPPET_LINES + new.count("\n")
        snippet = "\n".join(updated.split("\n")[start : end + 1])
        return (
            f"The file {path} has been edited. "
            + _cat_n(snippet, f"a snippet of {path}", start + 1)
            + "Review the changes and make sure they are as expected. Edit the file again if necessary."
        )

    async def _insert(self, run: ToolRun, path: str, target: str, line: int, new: str) -> str:
        content = (await self._read(run, path, target)).expandtabs()
        new = new.expandtabs()
        lines = content.split("\n")
        if line < 0 or line > len(lines):
            raise _EditorError(
                f"Invalid `insert_line` parameter: {line}. It should be within the range of lines of the file: "
                f"{[0, len(lines)]}"
            )
        new_lines = new.split("\n")
        updated = "\n".join(lines[:line] + new_lines + lines[line:])
        snippet = "\n".join(lines[max(0, line - SNIPPET_LINES) : line] + new_lines + lines[line : line + SNIPPET_LINES])
        await self._write(run, path, target, updated)
        self._history(run, path).append(content)
        return (
            f"The file {path} has been edited. "
            + _cat_n(snippet, "a snippet of the edited file", max(1, line - SNIPPET_LINES + 1))
            + "Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc)."
            " Edit the file again if necessary."
        )

    async def _undo(self, run: ToolRun, path: str, target: str) -> str:
        history = self._history(run, path)
        if not history:
            raise _EditorError(f"No edit history found for {path}.")
        previous = history.pop()
        await self._write(run, path, target, previous)
        return f"Last edit to {path} undone successfully. {_cat_n(previous, path)}"
