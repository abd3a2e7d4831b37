"""Anthropic's schema-less client tools, run the way the reference implementation does.

* ``bash`` (tool type ``bash_20241022`` / ``bash_20250124``) is a persistent session: the
  working directory carries over between calls, ``restart: true`` resets it. The result
  is stdout; output on stderr makes the result an error holding the stderr text.
* ``str_replace_based_edit_tool`` (``text_editor_20250429`` / ``_20250728``) is the editor
  without ``undo_edit``; ``str_replace_editor`` (``text_editor_20241022`` /
  ``_20250124``) the editor with it (`tools.harnesses.editor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandboxes.base import ExecResult
from tools.harnesses.base import HarnessProfile, ShellTool, SimulatedTool, tool_names
from tools.harnesses.editor import EditorTool
from tools.toolmap import ToolBinding, ToolOutcome, ToolRun
from tools.transcript import Transcript

RESTARTED = "tool has been restarted."


def render(result: ExecResult, output: str) -> tuple[str, bool]:
    """The reference bash tool's result: stdout, or the stderr text as an error."""
    if result.timed_out:
        return "timed out: bash has not returned in 120.0 seconds and must be restarted", True
    if result.stderr:
        return result.stderr.rstrip("\n"), True
    return result.stdout.rstrip("\n"), False


@dataclass(frozen=True)
class AnthropicBash(ShellTool):
    """``bash`` with ``restart`` (a fresh session: the directory goes back to the start)."""

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        if call_input.get("restart") is True:
            run.state.pop(self.name, None)
            return ToolOutcome(output=RESTARTED, action="restart the bash session")
        return await super().run(call_input, run)

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        if call_input.get("restart") is True:
            return "restart the bash session"
        return super().describe(call_input)


def bindings() -> dict[str, ToolBinding]:
    return {
        "bash": AnthropicBash(name="bash", render=render, persist_cwd=True),
        "str_replace_based_edit_tool": EditorTool("str_replace_based_edit_tool", undo=False),
        "str_replace_editor": EditorTool("str_replace_editor", undo=True),
    }


def fallback(name: str) -> ToolBinding | None:
    return SimulatedTool(name)


def detect(transcript: Transcript) -> bool:
    names = tool_names(transcript)
    return "str_replace_based_edit_tool" in names or ("str_replace_editor" in names and "bash" in names)


PROFILE = HarnessProfile(
    name="anthropic-tools",
    description="Anthropic's bash and text editor tool types (str_replace_based_edit_tool, str_replace_editor)",
    bindings=bindings,
    fallback=fallback,
    schema_file="anthropic.yaml",
    detect=detect,
    aliases=("anthropic-tool-types",),
    open_tool_set=True,
)
