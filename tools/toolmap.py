"""How the subject's tool calls become operations in a sandbox, and how results are
rendered back as the harness showed them.

Every tool of a world has a *binding* (`ToolBinding`): given a call's input and the
episode's `ToolRun` (the sandbox, the path map between the session's working
directory and the sandbox's workspace, recorded outputs, per-episode state), it
performs the call and returns a `ToolOutcome` (the text the subject sees, whether it
is an error, and how it was produced). Bindings come in kinds:

* ``command`` — a shell command. A scenario declares one `CommandTool` per tool: a
  command template over the call's input (values shell-quoted, except the keys listed
  in `raw`, which are the agent's own shell text) and an output template
  (``{output}``, ``{stdout}``, ``{stderr}``, ``{exit_code}``).
* ``file`` / ``search`` — harness tools that read or write files through the
  sandbox's `read_file` / `write_file`, or run a fixed query program with their
  arguments passed as argv (`tools.harnesses`). No shell string is ever built from an
  editor's arguments.
* ``simulated`` — tools that reached outside the sandbox in the original session (web
  fetches, MCP servers, subagents): answered from the recording, or by a simulator, and
  marked so.
* ``passive`` — tools that only annotate or end an episode (``submit``, a todo list):
  they return a fixed text and run nothing.

`ToolMapping` holds the bindings of a world by name, plus what every call shares (the
path map, recorded outputs, a simulator). `ToolMapping.infer` guesses a mapping from the
calls themselves (a tool whose calls all carry one shell string runs it); real
transcripts get a harness profile instead (`tools.harnesses`).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.base import ExecResult, Sandbox
from tools.errors import ForensicsError
from tools.transcript import ToolSpec, ToolUseBlock, Transcript

_COMMAND_KEYS = ("command", "cmd", "bash", "script")

BindingKind = Literal["command", "file", "search", "simulated", "passive"]
Provenance = Literal["executed", "recorded", "simulated", "passive", "unavailable", "error"]

OutputSimulator = Callable[[str, Sequence[tuple[str, str]]], Awaitable[str]]
"""``async (call, history) -> output`` (the same shape as `sandboxes.simulated.OutputSimulator`)."""


class ToolMappingError(ForensicsError):
    """A tool call cannot be turned into a sandbox operation."""


class ToolOutcome(BaseModel):
    """What one call produced: the text the subject sees, whether the harness flagged it
    as an error, how it was produced, and (for people) what was run."""

    model_config = ConfigDict(extra="forbid")

    output: str
    is_error: bool = False
    provenance: Provenance = "executed"
    action: str | None = None
    timed_out: bool = False


# --------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class PathMap:
    """Where the session's working directory lives in the sandbox. When the two differ
    (a session directory that cannot be recreated at its own path), absolute paths under
    the session root are mapped into the sandbox root on the way in (tool inputs), and
    back on the way out (outputs), so the subject sees the paths of its session and
    replayed outputs compare with the recorded ones."""

    session_root: str = "/workspace"
    sandbox_root: str = "/workspace"

    @property
    def identity(self) -> bool:
        return self.session_root == self.sandbox_root

    def to_sandbox(self, path: str, cwd: str | None = None) -> str:
        """A path from a tool input, as an absolute path in the sandbox (relative paths
        are taken from `cwd`, a sandbox path, defaulting to the sandbox root)."""
        if not path.startswith("/"):
            return posixpath.normpath(posixpath.join(cwd or self.sandbox_root, path))
        mapped = _swap_prefix(posixpath.normpath(path), self.session_root, self.sandbox_root)
        return mapped if mapped is not None else posixpath.normpath(path)

    def to_session(self, path: str) -> str:
        """A sandbox path as the session would have written it."""
        mapped = _swap_prefix(posixpath.normpath(path), self.sandbox_root, self.session_root)
        return mapped if mapped is not None else path

    def text_to_sandbox(self, text: str) -> str:
        """Free text (a shell command) with session paths mapped into the sandbox."""
        return text if self.identity else _swap_in_text(text, self.session_root, self.sandbox_root)

    def text_to_session(self, text: str) -> str:
        """Free text (an output) with sandbox paths mapped back to the session's."""
        return text if self.identity else _swap_in_text(text, self.sandbox_root, self.session_root)


def _swap_prefix(path: str, old: str, new: str) -> str | None:
    if path == old:
        return new
    if old == "/":
        return posixpath.join(new, path.lstrip("/"))
    if path.startswith(old.rstrip("/") + "/"):
        return new.rstrip("/") + path[len(old.rstrip("/")) :]
    return None


def _swap_in_text(text: str, old: str, new: str) -> str:
    """Replace `old` where it stands as a whole path component prefix."""
    pattern = re.compile(re.escape(old.rstrip("/")) + r"(?=/|$|[^\w.\-])")
    return pattern.sub(new.rstrip("/") or "/", text)


# --------------------------------------------------------------------------- recordings
@dataclass
class RecordedOutputs:
    """The outputs the original session got, by tool and exact input, consumed in order
    (a call made twice gets its two outputs). Simulated tools answer from here first."""

    by_call: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)

    @staticmethod
    def key(name: str, call_input: Mapping[str, Any]) -> tuple[str, str]:
        return name, json.dumps(call_input, sort_keys=True, ensure_ascii=False, default=str)

    @classmethod
    def from_transcript(cls, transcript: Transcript) -> RecordedOutputs:
        recorded = cls()
        for turn in transcript.turns():
            results = {r.tool_use_id: r for r in turn.results}
            for call in turn.tool_uses:
                result = results.get(call.id)
                if result is not None:
                    recorded.by_call.setdefault(cls.key(call.name, call.input), []).append(
                        (result.text, result.is_error)
                    )
        return recorded

    def take(self, name: str, call_input: Mapping[str, Any]) -> tuple[str, bool] | None:
        queue = self.by_call.get(self.key(name, call_input))
        return queue.pop(0) if queue else None


@dataclass
class ToolRun:
    """What the calls of one episode act on. `state` keeps per-episode harness state
    (the shell's working directory, an editor's undo history) keyed by the binding."""

    sandbox: Sandbox
    paths: PathMap = field(default_factory=PathMap)
    recorded: RecordedOutputs | None = None
    simulator: OutputSimulator | None = None
    state: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- bindings
@runtime_checkable
class ToolBinding(Protocol):
    """How one tool runs in a world (see the module doc)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> BindingKind: ...

    @property
    def terminal(self) -> bool:
        """Whether a call ends the episode (submit, ask-and-wait)."""
        ...

    @property
    def passive(self) -> bool: ...

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        """What the call runs, for people and for recorded-output lookup (None: nothing)."""
        ...

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        """Perform the call."""
        ...

    def comparable(self, text: str) -> str:
        """A recorded or replayed output reduced to what a replay compares."""
        ...


class CommandTool(BaseModel):
    """A tool that runs a shell command built from a template (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    command: str | None = Field(default="{command}", description="template; None for a passive tool")
    raw: list[str] = Field(default_factory=lambda: ["command"], description="input keys inserted unquoted")
    output: str = "{output}"
    result: str = "ok"
    """What a passive tool returns to the subject (e.g. "Submitted.")."""
    terminal: bool = False
    """Whether a call ends the episode (submit, ask-and-wait)."""
    timeout_s: float | None = None

    @property
    def passive(self) -> bool:
        return self.command is None

    @property
    def kind(self) -> BindingKind:
        return "passive" if self.command is None else "command"

    def render_command(self, call_input: Mapping[str, Any]) -> str:
        """The shell command for a call, or `ToolMappingError` naming the missing key."""
        if self.command is None:
            raise ToolMappingError(f"tool {self.name!r} is passive: it runs no command")
        needed = [name for _, name, _, _ in string.Formatter().parse(self.command) if name]
        values: dict[str, str] = {}
        for key in needed:
            if key not in call_input:
                raise ToolMappingError(f"tool {self.name!r} call has no input {key!r} (template {self.command!r})")
            value = call_input[key]
            text = value if isinstance(value, str) else str(value)
            values[key] = text if key in self.raw else shlex.quote(text)
        return self.command.format(**values)

    def render_output(self, result: ExecResult) -> str:
        """The result text the subject would have seen."""
        return self.output.format(
            output=result.output,
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code="" if result.exit_code is None else result.exit_code,
        )

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        return None if self.command is None else self.render_command(call_input)

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        if self.command is None:
            return ToolOutcome(output=self.result, provenance="passive")
        command = run.paths.text_to_sandbox(self.render_command(call_input))
        result = await run.sandbox.exec(command, timeout=self.timeout_s)
        return ToolOutcome(
            output=run.paths.text_to_session(self.render_output(result)),
            is_error=not result.ok,
            provenance=result.provenance,
            action=command,
            timed_out=result.timed_out,
        )

    def comparable(self, text: str) -> str:
        return text


BindingFallback = Callable[[str], ToolBinding | None]
"""Bindings for tools not listed by name (e.g. any ``mcp__*`` tool of Claude Code)."""


class ToolMapping:
    """Every tool of a world, by name, and what their calls share (see the module doc)."""

    def __init__(
        self,
        tools: Mapping[str, ToolBinding] | None = None,
        *,
        fallback: BindingFallback | None = None,
        paths: PathMap | None = None,
        recorded: RecordedOutputs | None = None,
        simulator: OutputSimulator | None = None,
        profile: str | None = None,
        schemas: Iterable[ToolSpec] = (),
        notes: Iterable[str] = (),
    ) -> None:
        self.tools: dict[str, ToolBinding] = dict(tools or {})
        self.fallback = fallback
        self.paths = paths or PathMap()
        self.recorded = recorded
        self.simulator = simulator
        self.profile = profile
        """The harness profile the bindings come from (None: declared or inferred)."""
        self.schemas = list(schemas)
        """The harness's tool definitions (for a prefix whose log did not record them)."""
        self.notes = list(notes)

    def __repr__(self) -> str:
        return f"ToolMapping(profile={self.profile!r}, tools={sorted(self.tools)})"

    def for_call(self, call: ToolUseBlock) -> ToolBinding:
        """The binding of a call's tool; an unknown tool is a `ToolMappingError`."""
        return self.for_name(call.name)

    def for_name(self, name: str) -> ToolBinding:
        binding = self.tools.get(name)
        if binding is None and self.fallback is not None:
            binding = self.fallback(name)
        if binding is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolMappingError(f"no command mapping for tool {name!r} (mapped: {known})")
        return binding

    def run_context(self, sandbox: Sandbox, state: Mapping[str, Any] | None = None) -> ToolRun:
        """A fresh `ToolRun` for one episode in `sandbox` (optionally continuing `state`,
        e.g. the shell's directory at the end of a replay)."""
        recorded = (
            RecordedOutputs(by_call={k: list(v) for k, v in self.recorded.by_call.items()}) if self.recorded else None
        )
        return ToolRun(
            sandbox=sandbox,
            paths=self.paths,
            recorded=recorded,
            simulator=self.simulator,
            state=json.loads(json.dumps(dict(state))) if state else {},
        )

    @classmethod
    def infer(cls, transcript: Transcript) -> ToolMapping:
        """A mapping guessed from the calls themselves: a tool whose calls all carry a
        single shell-command string (``command``/``cmd``/...) runs that string; any other
        tool is passive. Scenarios declare their mapping and real transcripts get a
        harness profile instead (`tools.harnesses`)."""
        tools: dict[str, ToolBinding] = {}
        by_name: dict[str, list[ToolUseBlock]] = {}
        for turn in transcript.turns():
            for call in turn.tool_uses:
                by_name.setdefault(call.name, []).append(call)
        for name, calls in by_name.items():
            key = next(
                (k for k in _COMMAND_KEYS if all(isinstance(c.input.get(k), str) for c in calls)),
                None,
            )
            if key is None:
                tools[name] = CommandTool(name=name, command=None, raw=[])
            else:
                tools[name] = CommandTool(name=name, command="{" + key + "}", raw=[key])
        return cls(tools=tools)


async def run_call(mapping: ToolMapping, call: ToolUseBlock, run: ToolRun) -> ToolOutcome:
    """Perform one call through its binding; an unknown tool or a malformed call comes
    back as an error outcome (the subject sees the error, as a harness would show it)."""
    try:
        binding = mapping.for_call(call)
    except ToolMappingError as exc:
        return ToolOutcome(output=f"Error: {exc}", is_error=True, provenance="error")
    try:
        return await binding.run(call.input, run)
    except ToolMappingError as exc:
        return ToolOutcome(output=f"Error: {exc}", is_error=True, provenance="error")
