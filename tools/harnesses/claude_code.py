"""Claude Code's tools, as the CLI runs them and shows their results.

* ``Bash`` runs the command with bash in the session's working directory, which
  persists from call to call; a failing command's result is ``Exit code N`` followed by
  its output, flagged as an error. ``run_in_background`` commands are not re-run
  (their process would outlive the call): they are answered from the recording.
* ``Read`` numbers lines as ``cat -n`` does, with Claude Code's arrow separator
  (``     1→line``), honours ``offset`` / ``limit`` (2000 lines by default, lines cut at
  2000 characters), and appends the reminder Claude Code adds to every file it reads.
* ``Write``, ``Edit``, ``MultiEdit`` and ``NotebookEdit`` change files through the
  sandbox's file API and answer with Claude Code's texts (a ``cat -n`` snippet of four
  lines around an edit, ``<tool_use_error>`` for a string that is not there or not
  unique).
* ``Glob``, ``Grep`` and ``LS`` run the fixed query program (`tools.harnesses.fsquery`).
* ``TodoWrite`` and ``ExitPlanMode`` are passive. ``Task`` starts a subagent whose own
  calls (its sidechain) are replayed separately; its report, like ``WebFetch``,
  ``WebSearch``, background-shell tools and every MCP tool (``mcp__server__tool``), is
  answered by the simulated backend.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandboxes.base import ExecResult
from tools.harnesses import fsquery
from tools.harnesses.base import (
    HarnessProfile,
    PassiveTool,
    ShellTool,
    SimulatedTool,
    as_str,
    has_all,
    numbered,
    path_kind,
    read_text,
    snippet_bounds,
    tool_names,
    write_text,
)
from tools.toolmap import BindingKind, ToolBinding, ToolMappingError, ToolOutcome, ToolRun
from tools.transcript import Transcript

ARROW = "→"
DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
GLOB_LIMIT = 100
LS_LIMIT = 1000

READ_REMINDER = (
    "\n\n<system-reminder>\nWhenever you read a file, you should consider whether it looks malicious. If it does, "
    "you MUST refuse to improve or augment the code. You can still analyze existing code, write reports, or answer "
    "high-level questions about the code behavior.\n</system-reminder>\n"
)
EMPTY_FILE = "<system-reminder>Warning: the file exists but the contents are empty.</system-reminder>"
LS_NOTE = "\nNOTE: do any of the files above seem malicious? If so, you MUST refuse to continue work."
TODO_RESULT = (
    "Todos have been modified successfully. Ensure that you continue to use the todo list to track your progress. "
    "Please proceed with the current tasks if applicable"
)
PLAN_RESULT = "User has approved your plan. You can now start coding. Start with updating your todo list if applicable"
UPDATED = "The file {path} has been updated. Here's the result of running `cat -n` on a snippet of the edited file:\n"


def tool_error(message: str) -> ToolOutcome:
    """A failure as Claude Code reports it to the model."""
    return ToolOutcome(output=f"<tool_use_error>{message}</tool_use_error>", is_error=True)


def cat_n(text: str, start: int = 1) -> str:
    """Claude Code's line numbering (six columns, then an arrow)."""
    return numbered(text, start=start, separator=ARROW)


def _lines(text: str) -> list[str]:
    """A file's lines as ``cat -n`` counts them (no phantom line after a final newline)."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines


def render_bash(result: ExecResult, output: str) -> tuple[str, bool]:
    """Claude Code's Bash result: the output, or ``Exit code N`` and the output on failure."""
    text = output.rstrip("\n")
    if result.timed_out:
        return (f"{text}\nCommand timed out" if text else "Command timed out"), True
    if result.exit_code not in (0, None):
        return (f"Exit code {result.exit_code}\n{text}" if text else f"Exit code {result.exit_code}"), True
    return text, False


@dataclass(frozen=True)
class ClaudeBash(ShellTool):
    """``Bash``; a background command is answered from the recording (see the module doc)."""

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        if call_input.get("run_in_background") is True:
            return await SimulatedTool(self.name).run(call_input, run)
        return await super().run(call_input, run)


def _file_path(call_input: Mapping[str, Any], tool: str, run: ToolRun, key: str = "file_path") -> tuple[str, str]:
    """The path as the session wrote it and where it is in the sandbox."""
    path = as_str(call_input.get(key), key, tool)
    cwd = run.state.get("Bash", {}).get("cwd")
    return path, run.paths.to_sandbox(path, cwd)


@dataclass(frozen=True)
class _FileTool:
    name: str
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "file"

    @property
    def passive(self) -> bool:
        return False

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        target = call_input.get("file_path", call_input.get("notebook_path", call_input.get("path", "")))
        return f"{self.name} {target}".rstrip()

    def comparable(self, text: str) -> str:
        return text

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        outcome = await self._run(call_input, run)
        return outcome.model_copy(update={"action": outcome.action or self.describe(call_input)})

    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        raise NotImplementedError


@dataclass(frozen=True)
class ReadTool(_FileTool):
    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        _, target = _file_path(call_input, self.name, run)
        kind = await path_kind(run, target)
        if kind == "dir":
            return ToolOutcome(output="EISDIR: illegal operation on a directory, read", is_error=True)
        text = await read_text(run, target) if kind == "file" else None
        if text is None:
            return tool_error("File does not exist.")
        if text == "":
            return ToolOutcome(output=EMPTY_FILE)
        lines = _lines(text)
        offset = call_input.get("offset")
        limit = call_input.get("limit")
        start = offset if isinstance(offset, int) and not isinstance(offset, bool) and offset > 1 else 1
        count = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else DEFAULT_READ_LINES
        if start > len(lines):
            return ToolOutcome(
                output=(
                    "<system-reminder>Warning: the file exists but is shorter than the provided offset "
                    f"({start}). The file has {len(lines)} lines.</system-reminder>"
                )
            )
        shown = [line[:MAX_LINE_CHARS] for line in lines[start - 1 : start - 1 + count]]
        return ToolOutcome(output=cat_n("\n".join(shown), start) + READ_REMINDER)


@dataclass(frozen=True)
class WriteTool(_FileTool):
    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        path, target = _file_path(call_input, self.name, run)
        content = as_str(call_input.get("content"), "content", self.name)
        kind = await path_kind(run, target)
        if kind == "dir":
            return tool_error(f"EISDIR: illegal operation on a directory, open '{path}'")
        problem = await write_text(run, target, content)
        if problem is not None:
            return ToolOutcome(output=f"Error: {problem}", is_error=True)
        if kind == "missing":
            return ToolOutcome(output=f"File created successfully at: {path}")
        return ToolOutcome(output=UPDATED.format(path=path) + cat_n("\n".join(_lines(content))))


def _replace(content: str, old: str, new: str, replace_all: bool) -> str | ToolOutcome:
    """The content after one Edit, or Claude Code's error for it."""
    if old == new:
        return tool_error("No changes to make: old_string and new_string are exactly the same.")
    count = content.count(old)
    if count == 0:
        return tool_error(f"String to replace not found in file.\nString: {old}")
    if count > 1 and not replace_all:
        return tool_error(
            f"Found {count} matches of the string to replace, but replace_all is false. To replace all occurrences, "
            "set replace_all to true. To replace only one occurrence, please provide more context to uniquely "
            f"identify the instance.\nString: {old}"
        )
    return content.replace(old, new) if replace_all else content.replace(old, new, 1)


@dataclass(frozen=True)
class EditTool(_FileTool):
    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        path, target = _file_path(call_input, self.name, run)
        old = as_str(call_input.get("old_string"), "old_string", self.name)
        new = as_str(call_input.get("new_string"), "new_string", self.name)
        content = await read_text(run, target)
        if content is None:
            if old == "":  # an empty old_string creates the file
                problem = await write_text(run, target, new)
                if problem is not None:
                    return ToolOutcome(output=f"Error: {problem}", is_error=True)
                return ToolOutcome(output=f"File created successfully at: {path}")
            return tool_error("File does not exist.")
        if old == "" and content.strip():
            return tool_error("Cannot create new file - file already exists.")
        updated = _replace(content, old, new, call_input.get("replace_all") is True) if old else new
        if isinstance(updated, ToolOutcome):
            return updated
        problem = await write_text(run, target, updated)
        if problem is not None:
            return ToolOutcome(output=f"Error: {problem}", is_error=True)
        first, last = snippet_bounds(content, old, new)
        snippet = "\n".join(updated.split("\n")[first : last + 1])
        return ToolOutcome(output=UPDATED.format(path=path) + cat_n(snippet, first + 1))


@dataclass(frozen=True)
class MultiEditTool(_FileTool):
    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        path, target = _file_path(call_input, self.name, run)
        edits = call_input.get("edits")
        if not isinstance(edits, list) or not edits:
            raise ToolMappingError(f"tool {self.name!r} call has no list of `edits`")
        content = await read_text(run, target)
        if content is None:
            first = edits[0] if isinstance(edits[0], dict) else {}
            if first.get("old_string") != "":
                return tool_error("File does not exist.")
            content = ""
        lines_shown = []
        for i, edit in enumerate(edits, start=1):
            if not isinstance(edit, dict):
                raise ToolMappingError(f"tool {self.name!r}: edit {i} is not an object")
            old = as_str(edit.get("old_string"), "old_string", self.name)
            new = as_str(edit.get("new_string"), "new_string", self.name)
            updated = (
                new if old == "" and content == "" else _replace(content, old, new, edit.get("replace_all") is True)
            )
            if isinstance(updated, ToolOutcome):
                return updated
            content = updated
            lines_shown.append(f'{i}. Replaced "{old}" with "{new}"')
        problem = await write_text(run, target, content)
        if problem is not None:
            return ToolOutcome(output=f"Error: {problem}", is_error=True)
        plural = "s" if len(edits) != 1 else ""
        return ToolOutcome(output=f"Applied {len(edits)} edit{plural} to {path}:\n" + "\n".join(lines_shown))


@dataclass(frozen=True)
class NotebookEditTool(_FileTool):
    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        _, target = _file_path(call_input, self.name, run, key="notebook_path")
        source = call_input.get("new_source", "")
        mode = call_input.get("edit_mode") or "replace"
        cell_id = call_input.get("cell_id")
        text = await read_text(run, target)
        if text is None:
            return tool_error("Notebook file does not exist.")
        try:
            notebook = json.loads(text)
            cells: list[dict[str, Any]] = notebook["cells"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return tool_error("Notebook is not valid JSON.")
        index = _cell_index(cells, cell_id)
        if index is None and not (mode == "insert" and cell_id is None):
            return tool_error(f'Cell with ID "{cell_id}" not found in notebook.')
        lines = str(source).splitlines(keepends=True)
        if mode == "delete":
            assert index is not None
            cells.pop(index)
            message = f"Deleted cell {cell_id}"
        elif mode == "insert":
            cell_type = call_input.get("cell_type") or "code"
            cell: dict[str, Any] = {"cell_type": cell_type, "metadata": {}, "source": lines}
            if cell_type == "code":
                cell.update({"execution_count": None, "outputs": []})
            at = 0 if index is None else index + 1
            cells.insert(at, cell)
            message = f"Inserted cell {cell_id} with {source}" if cell_id else f"Inserted cell with {source}"
        else:
            assert index is not None
            cells[index]["source"] = lines
            if call_input.get("cell_type"):
                cells[index]["cell_type"] = call_input["cell_type"]
            if cells[index].get("cell_type") == "code":
                cells[index]["execution_count"] = None
                cells[index]["outputs"] = []
            message = f"Updated cell {cell_id} with {source}"
        problem = await write_text(run, target, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        if problem is not None:
            return ToolOutcome(output=f"Error: {problem}", is_error=True)
        return ToolOutcome(output=message)


def _cell_index(cells: list[dict[str, Any]], cell_id: Any) -> int | None:
    if not isinstance(cell_id, str):
        return None
    for i, cell in enumerate(cells):
        if cell.get("id") == cell_id:
            return i
    if cell_id.startswith("cell-") and cell_id[5:].isdigit() and int(cell_id[5:]) < len(cells):
        return int(cell_id[5:])
    return None


def _search_root(call_input: Mapping[str, Any], run: ToolRun) -> tuple[str, str]:
    path = call_input.get("path")
    cwd = run.state.get("Bash", {}).get("cwd") or run.paths.sandbox_root
    if isinstance(path, str) and path:
        return path, run.paths.to_sandbox(path, cwd)
    return run.paths.to_session(cwd), cwd


def _split_glob(pattern: str) -> tuple[str | None, str]:
    """An absolute pattern's literal directory prefix and the rest."""
    if not pattern.startswith("/"):
        return None, pattern
    parts = pattern.split("/")
    literal: list[str] = []
    for part in parts[1:]:
        if any(c in part for c in "*?[{"):
            break
        literal.append(part)
    rest = "/".join(parts[1 + len(literal) :])
    if not rest:  # a literal path: match it in its directory
        return "/" + "/".join(literal[:-1]), literal[-1] if literal else ""
    return "/" + "/".join(literal), rest


@dataclass(frozen=True)
class GlobTool(_FileTool):
    @property
    def kind(self) -> BindingKind:
        return "search"

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return f"Glob {call_input.get('pattern', '')}" + (f" in {call_input['path']}" if call_input.get("path") else "")

    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        pattern = as_str(call_input.get("pattern"), "pattern", self.name)
        _, root = _search_root(call_input, run)
        prefix, rest = _split_glob(pattern)
        if prefix is not None:
            root = run.paths.to_sandbox(prefix or "/")
        if await path_kind(run, root) != "dir":
            return tool_error(f"Directory does not exist: {run.paths.to_session(root)}")
        data = await fsquery.query(run, "glob", root=root, pattern=rest, nocase=True)
        if "error" in data:
            return ToolOutcome(output=f"Error: {data['error']}", is_error=True)
        files = [run.paths.to_session(p) for p in data["files"]]
        if not files:
            return ToolOutcome(output="No files found")
        text = "\n".join(files[:GLOB_LIMIT])
        if len(files) > GLOB_LIMIT:
            text += "\n(Results are truncated. Consider using a more specific path or pattern.)"
        return ToolOutcome(output=text)


@dataclass(frozen=True)
class GrepTool(_FileTool):
    @property
    def kind(self) -> BindingKind:
        return "search"

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return f"Grep {call_input.get('pattern', '')!r}" + (
            f" in {call_input['path']}" if call_input.get("path") else ""
        )

    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        pattern = as_str(call_input.get("pattern"), "pattern", self.name)
        _, root = _search_root(call_input, run)
        if await path_kind(run, root) == "missing":
            return tool_error(f"Path does not exist: {run.paths.to_session(root)}")
        mode = call_input.get("output_mode") or "files_with_matches"
        data = await fsquery.query(
            run,
            "grep",
            root=root,
            pattern=pattern,
            glob=call_input.get("glob"),
            type=call_input.get("type"),
            ignore_case=call_input.get("-i") is True,
            multiline=call_input.get("multiline") is True,
            mode=mode,
        )
        if "error" in data:
            return ToolOutcome(output=f"Error: {data['error']}", is_error=True)
        results: list[dict[str, Any]] = data["results"]
        head = call_input.get("head_limit")
        limit = head if isinstance(head, int) and not isinstance(head, bool) and head > 0 else None
        if mode == "count":
            return ToolOutcome(output=_grep_count(results, run, limit))
        if mode == "content":
            return ToolOutcome(output=_grep_content(results, run, call_input, limit))
        if not results:
            return ToolOutcome(output="No files found")
        ordered = sorted(results, key=lambda r: (-r["mtime"], r["path"]))
        paths = [run.paths.to_session(r["path"]) for r in ordered][:limit]
        noun = "file" if len(ordered) == 1 else "files"
        return ToolOutcome(output=f"Found {len(ordered)} {noun}\n" + "\n".join(paths))


def _grep_count(results: list[dict[str, Any]], run: ToolRun, limit: int | None) -> str:
    if not results:
        return "No matches found"
    lines = [f"{run.paths.to_session(r['path'])}:{r['count']}" for r in results][:limit]
    total = sum(r["count"] for r in results)
    files = len(results)
    occurrences = "occurrence" if total == 1 else "occurrences"
    noun = "file" if files == 1 else "files"
    return "\n".join(lines) + f"\n\nFound {total} total {occurrences} across {files} {noun}."


def _context(call_input: Mapping[str, Any], key: str) -> int:
    value = call_input.get(key, call_input.get("-C"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _grep_content(results: list[dict[str, Any]], run: ToolRun, call_input: Mapping[str, Any], limit: int | None) -> str:
    if not results:
        return "No matches found"
    before, after = _context(call_input, "-B"), _context(call_input, "-A")
    show_numbers = call_input.get("-n") is True
    many = len(results) > 1 or call_input.get("path") is None
    out: list[str] = []
    for r in results:
        text: list[str] = r["text"] or []
        hits = set(r["lines"])
        wanted = sorted({i for h in hits for i in range(max(0, h - before), min(len(text), h + after + 1))})
        previous = None
        for i in wanted:
            if previous is not None and i > previous + 1:
                out.append("--")
            sep = ":" if i in hits else "-"
            prefix = (run.paths.to_session(r["path"]) + sep) if many else ""
            number = f"{i + 1}{sep}" if show_numbers else ""
            out.append(f"{prefix}{number}{text[i]}")
            previous = i
    return "\n".join(out[:limit])


@dataclass(frozen=True)
class LSTool(_FileTool):
    @property
    def kind(self) -> BindingKind:
        return "search"

    async def _run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        path = as_str(call_input.get("path"), "path", self.name)
        root = run.paths.to_sandbox(path, run.state.get("Bash", {}).get("cwd"))
        if await path_kind(run, root) != "dir":
            return tool_error(f"Path does not exist or is not a directory: {path}")
        ignore = call_input.get("ignore")
        data = await fsquery.query(
            run, "ls", root=root, ignore=[g for g in ignore if isinstance(g, str)] if isinstance(ignore, list) else []
        )
        if "error" in data:
            return ToolOutcome(output=f"Error: {data['error']}", is_error=True)
        tree = _tree(run.paths.to_session(root), data["entries"])
        head = ""
        if data.get("truncated"):
            head = (
                f"There are more than {LS_LIMIT} files in the repository. Use the LS tool (passing a specific path), "
                "Bash tool, and other tools to explore nested directories. The first "
                f"{LS_LIMIT} files and directories are included below:\n\n"
            )
        return ToolOutcome(output=head + tree + "\n" + LS_NOTE)


def _tree(root: str, entries: list[str]) -> str:
    """Claude Code's LS tree: ``- /root/`` then nested ``- name`` lines, two spaces a level."""
    lines = [f"- {root.rstrip('/')}/"]
    for entry in entries[:LS_LIMIT]:
        is_dir = entry.endswith("/")
        parts = entry.rstrip("/").split("/")
        lines.append("  " * len(parts) + f"- {parts[-1]}" + ("/" if is_dir else ""))
    return "\n".join(lines)


SIMULATED = (
    "Task",
    "Agent",
    "WebFetch",
    "WebSearch",
    "BashOutput",
    "KillShell",
    "KillBash",
    "AskUserQuestion",
    "SlashCommand",
    "Skill",
    "ListMcpResourcesTool",
    "ReadMcpResourceTool",
    "NotebookRead",
)


def bindings() -> dict[str, ToolBinding]:
    tools: dict[str, ToolBinding] = {
        "Bash": ClaudeBash(
            name="Bash",
            render=render_bash,
            persist_cwd=True,
            timeout_key="timeout",
            timeout_scale=0.001,
            default_timeout_s=120.0,
            max_timeout_s=600.0,
        ),
        "Read": ReadTool("Read"),
        "Write": WriteTool("Write"),
        "Edit": EditTool("Edit"),
        "MultiEdit": MultiEditTool("MultiEdit"),
        "NotebookEdit": NotebookEditTool("NotebookEdit"),
        "Glob": GlobTool("Glob"),
        "Grep": GrepTool("Grep"),
        "LS": LSTool("LS"),
        "TodoWrite": PassiveTool("TodoWrite", result=TODO_RESULT),
        "ExitPlanMode": PassiveTool("ExitPlanMode", result=PLAN_RESULT),
    }
    tools.update({name: SimulatedTool(name) for name in SIMULATED})
    return tools


def fallback(name: str) -> ToolBinding | None:
    """MCP tools (``mcp__server__tool``) and tools newer than this profile: they are
    answered by the simulated backend, never guessed at."""
    return SimulatedTool(name)


def detect(transcript: Transcript) -> bool:
    meta = transcript.metadata
    if meta.get("harness") == "claude-code" or meta.get("source_format") == "claude-code":
        return True
    if "claude_code_version" in meta:
        return True
    names = tool_names(transcript)
    return has_all(names, ["Bash"]) and bool(names & {"Read", "Edit", "Write", "Glob", "Grep", "TodoWrite"})


PROFILE = HarnessProfile(
    name="claude-code",
    description=(
        "Claude Code (Bash, Read, Write, Edit, MultiEdit, NotebookEdit, Glob, Grep, LS; "
        "Task, web and MCP tools simulated)"
    ),
    bindings=bindings,
    fallback=fallback,
    schema_file="claude_code.yaml",
    detect=detect,
    aliases=("claude_code", "claudecode"),
)


def session_root(transcript: Transcript) -> str | None:
    """The working directory Claude Code logged for the session (``cwd``)."""
    cwd = transcript.metadata.get("cwd")
    return posixpath.normpath(cwd) if isinstance(cwd, str) and cwd.startswith("/") else None
