"""What harness profiles are made of: the profile itself, and the bindings its tools
share (passive, simulated, shell) with the helpers file tools use.

A `HarnessProfile` names a harness (Claude Code, Inspect, ...), builds a fresh set of
`ToolBinding`s for one world (bindings hold no state; per-episode state lives in the
`ToolRun`), supplies the harness's tool schemas when a log lacks them, and says whether
a transcript looks like it came from that harness.

File operations go through the sandbox's `read_file` / `write_file`. Anything that has
to look at the file system as a whole (globbing, searching, listing) runs a fixed
program with its arguments passed as argv (`tools.harnesses.fsquery`), never a shell
string assembled from the call's input.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sandboxes.base import ExecResult
from sandboxes.errors import SandboxError
from tools.errors import ForensicsError
from tools.toolmap import (
    BindingFallback,
    BindingKind,
    OutputSimulator,
    PathMap,
    RecordedOutputs,
    ToolBinding,
    ToolMapping,
    ToolMappingError,
    ToolOutcome,
    ToolRun,
)
from tools.transcript import ToolSpec, Transcript

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


class HarnessError(ForensicsError):
    """An unknown harness name, or a profile that cannot be assembled."""


# --------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class HarnessProfile:
    """A named, tested mapping of one harness's tools onto sandbox operations."""

    name: str
    description: str
    bindings: Callable[[], Mapping[str, ToolBinding]]
    """Fresh bindings for one world, by tool name."""
    fallback: BindingFallback | None = None
    """Bindings for tools not listed by name (MCP tools, tools newer than this profile)."""
    schema_file: str | None = None
    """A YAML file under ``tools/harnesses/schemas/`` with the harness's tool definitions."""
    detect: Callable[[Transcript], bool] = lambda _t: False
    """Whether a transcript (by its format, metadata and tool names) came from this harness."""
    aliases: tuple[str, ...] = ()
    open_tool_set: bool = False
    """Whether the harness runs tools an application defines besides its own (Inspect
    tasks, API applications using Anthropic's tool types): those get the inferred
    mapping (a shell-string input runs) instead of the simulated backend."""

    def tool_specs(self) -> list[ToolSpec]:
        """The harness's tool definitions, written from its public documentation."""
        if self.schema_file is None:
            return []
        return [spec.model_copy(deep=True) for spec in _load_schemas(self.schema_file)]

    def mapping(
        self,
        *,
        paths: PathMap | None = None,
        recorded: RecordedOutputs | None = None,
        simulator: OutputSimulator | None = None,
        transcript: Transcript | None = None,
    ) -> ToolMapping:
        """The `ToolMapping` of a world whose subject used this harness (with the
        application's own shell tools of `transcript` when the tool set is open)."""
        bindings = dict(self.bindings())
        if self.open_tool_set and transcript is not None:
            for name, binding in ToolMapping.infer(transcript).tools.items():
                if name not in bindings and binding.kind == "command":
                    bindings[name] = binding
        return ToolMapping(
            bindings,
            fallback=self.fallback,
            paths=paths,
            recorded=recorded,
            simulator=simulator,
            profile=self.name,
            schemas=self.tool_specs(),
        )


@cache
def _load_schemas(name: str) -> tuple[ToolSpec, ...]:
    data = yaml.safe_load((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return tuple(ToolSpec.model_validate(item) for item in data["tools"])


# --------------------------------------------------------------------------- bindings
@dataclass(frozen=True)
class PassiveTool:
    """Runs nothing; returns a fixed text (a todo list update, a thought, a submission)."""

    name: str
    result: str = ""
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "passive"

    @property
    def passive(self) -> bool:
        return True

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return None

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        return ToolOutcome(output=self.result, provenance="passive")

    def comparable(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class SimulatedTool:
    """A tool that reached outside the sandbox in the original session (the web, an MCP
    server, a subagent, the user): the recorded output of the same call when there is
    one, else the world's simulator, else an error saying the world cannot answer."""

    name: str
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "simulated"

    @property
    def passive(self) -> bool:
        return False

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return f"{self.name} {json.dumps(dict(call_input), sort_keys=True, ensure_ascii=False, default=str)}"

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        action = self.describe(call_input)
        recorded = run.recorded.take(self.name, call_input) if run.recorded is not None else None
        if recorded is not None:
            text, is_error = recorded
            run.history.append((action or self.name, text))
            return ToolOutcome(output=text, is_error=is_error, provenance="recorded", action=action)
        if run.simulator is not None:
            text = await run.simulator(action or self.name, list(run.history))
            run.history.append((action or self.name, text))
            return ToolOutcome(output=text, provenance="simulated", action=action)
        return ToolOutcome(
            output=(
                f"Error: {self.name} is not available in the rebuilt world: it reached outside the sandbox in the "
                "original session, and neither a recording of this exact call nor an environment simulator can "
                "answer it."
            ),
            is_error=True,
            provenance="unavailable",
            action=action,
        )

    def comparable(self, text: str) -> str:
        return text


ShellRender = Callable[[ExecResult, str], tuple[str, bool]]
"""``(result, shown_output) -> (text the subject sees, is_error)``."""


@dataclass(frozen=True)
class ShellTool:
    """Runs the agent's own shell text (or argv) the way its harness does: through
    `shell`, in the episode's working directory (which persists between calls when
    `persist_cwd`, as Claude Code's and Anthropic's bash tools keep it), with the
    harness's timeout, rendered by `render`."""

    name: str
    command_key: str = "command"
    alt_keys: tuple[str, ...] = ()
    """Older names of the command input (Inspect's ``cmd``)."""
    render: ShellRender = field(default=lambda r, out: (out, not r.ok))
    shell: tuple[str, ...] = ("bash", "-c")
    persist_cwd: bool = False
    timeout_key: str | None = None
    timeout_scale: float = 1.0
    """Multiplies the input's timeout into seconds (Claude Code's are milliseconds)."""
    default_timeout_s: float = 120.0
    max_timeout_s: float = 600.0
    stdin_program: tuple[str, ...] | None = None
    """Run this program with the input as its stdin instead (a ``python`` tool)."""
    workdir_key: str | None = None
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "command"

    @property
    def passive(self) -> bool:
        return False

    def _command(self, call_input: Mapping[str, Any]) -> str | list[str]:
        value = call_input.get(self.command_key)
        for key in self.alt_keys:
            value = call_input.get(key) if value is None else value
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise ToolMappingError(f"tool {self.name!r} call has no {self.command_key!r} string (or argv list) to run")

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        command = self._command(call_input)
        return command if isinstance(command, str) else shlex.join(command)

    def _timeout(self, call_input: Mapping[str, Any]) -> float:
        value = call_input.get(self.timeout_key) if self.timeout_key else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return min(float(value) * self.timeout_scale, self.max_timeout_s)
        return self.default_timeout_s

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        command = self._command(call_input)
        state = run.state.setdefault(self.name, {})
        cwd = state.get("cwd") or run.paths.sandbox_root
        workdir = call_input.get(self.workdir_key) if self.workdir_key else None
        if isinstance(workdir, str) and workdir:
            cwd = run.paths.to_sandbox(workdir, cwd)
        marker = f"__forensics_cwd_{uuid.uuid4().hex}__"
        if self.stdin_program is not None:
            argv: list[str] = list(self.stdin_program)
            stdin: str | None = command if isinstance(command, str) else "\n".join(command)
            shown = stdin
        elif isinstance(command, list):
            argv = [run.paths.text_to_sandbox(part) for part in command]
            stdin, shown = None, shlex.join(command)
        else:
            text = run.paths.text_to_sandbox(command)
            if self.persist_cwd:
                # Report the directory the command ended in (even when it exits early).
                text = f'trap \'printf "\\n{marker}%s" "$PWD" >&2\' EXIT\n{text}'
            argv, stdin, shown = [*self.shell, text], None, command
        try:
            result = await run.sandbox.exec(argv, timeout=self._timeout(call_input), input=stdin, workdir=cwd)
        except SandboxError as exc:
            return ToolOutcome(output=f"Error: {exc}", is_error=True, provenance="error", action=shown)
        if self.persist_cwd and marker in result.stderr:
            head, _, tail = result.stderr.rpartition(marker)
            result = result.model_copy(update={"stderr": head[:-1] if head.endswith("\n") else head})
            new_cwd = tail.strip()
            if new_cwd.startswith("/"):
                state["cwd"] = new_cwd
        output = run.paths.text_to_session(result.output)
        text, is_error = self.render(result, output)
        return ToolOutcome(
            output=text, is_error=is_error, provenance=result.provenance, action=shown, timed_out=result.timed_out
        )

    def comparable(self, text: str) -> str:
        return text


# --------------------------------------------------------------------------- file helpers
async def path_kind(run: ToolRun, path: str) -> str:
    """``file``, ``dir`` or ``missing`` for an absolute sandbox path (a fixed test, the
    path passed as an argument)."""
    script = 'if [ -d "$1" ]; then echo dir; elif [ -e "$1" ]; then echo file; else echo missing; fi'
    result = await run.sandbox.exec(["sh", "-c", script, "sh", path], timeout=30)
    kind = result.stdout.strip()
    return kind if kind in {"file", "dir", "missing"} else "missing"


async def read_text(run: ToolRun, path: str) -> str | None:
    """A file's text (UTF-8, undecodable bytes replaced), or None when it does not exist."""
    try:
        data = await run.sandbox.read_file(path)
    except SandboxError:
        return None
    return data.decode("utf-8", errors="replace")


async def write_text(run: ToolRun, path: str, text: str) -> str | None:
    """Write a file through the sandbox; an error message, or None on success."""
    try:
        await run.sandbox.write_file(path, text)
    except SandboxError as exc:
        return str(exc)
    return None


def numbered(text: str, *, start: int = 1, separator: str = "\t", width: int = 6) -> str:
    """Lines prefixed with right-aligned line numbers, the way ``cat -n`` shows them."""
    return "\n".join(f"{i + start:{width}}{separator}{line}" for i, line in enumerate(text.split("\n")))


def snippet_bounds(before: str, old: str, new: str, context: int = 4) -> tuple[int, int]:
    """0-based first and last line of the snippet shown after replacing the first `old`
    in `before` by `new`: `context` lines around the replacement."""
    line = before.split(old)[0].count("\n") if old else 0
    return max(0, line - context), line + context + new.count("\n")


def as_str(value: Any, key: str, tool: str) -> str:
    """A required string input, or a `ToolMappingError` naming it."""
    if not isinstance(value, str):
        raise ToolMappingError(f"tool {tool!r} call has no {key!r} string")
    return value


def tool_names(transcript: Transcript) -> set[str]:
    """Every tool name called in (or offered to) a transcript."""
    names = {t.name for t in transcript.tools}
    for message in transcript.messages:
        names.update(u.name for u in message.tool_uses)
    return names


def has_all(names: set[str], wanted: Sequence[str]) -> bool:
    return all(w in names for w in wanted)
