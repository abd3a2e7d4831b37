"""How the subject's tool calls become commands in a sandbox, and how results are
rendered back as the harness showed them.

A scenario declares one `CommandTool` per tool: a command template over the call's
input (values shell-quoted, except the keys listed in `raw`, which are the agent's own
shell text) and an output template (``{output}``, ``{stdout}``, ``{stderr}``,
``{exit_code}``). Tools with no command (e.g. ``submit``) are `passive`: they end or
annotate an episode and are not executed.
"""

from __future__ import annotations

import shlex
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.base import ExecResult
from tools.errors import ForensicsError
from tools.transcript import ToolUseBlock, Transcript

_COMMAND_KEYS = ("command", "cmd", "bash", "script")


class ToolMappingError(ForensicsError):
    """A tool call cannot be turned into a command."""


class CommandTool(BaseModel):
    """One tool's mapping onto the sandbox."""

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

    def render_command(self, call_input: dict[str, Any]) -> str:
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


class ToolMapping(BaseModel):
    """Every tool of a scenario, by name."""

    model_config = ConfigDict(extra="forbid")

    tools: dict[str, CommandTool] = Field(default_factory=dict)

    def for_call(self, call: ToolUseBlock) -> CommandTool:
        """The mapping of a call's tool; unknown tools are a `ToolMappingError`."""
        try:
            return self.tools[call.name]
        except KeyError:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolMappingError(f"no command mapping for tool {call.name!r} (mapped: {known})") from None

    @classmethod
    def infer(cls, transcript: Transcript) -> ToolMapping:
        """A mapping guessed from the calls themselves: a tool whose calls all carry a
        single shell-command string (``command``/``cmd``/...) runs that string; any other
        tool is passive. Scenarios should declare their mapping instead."""
        tools: dict[str, CommandTool] = {}
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
