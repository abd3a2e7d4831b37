"""Inspect AI's standard tools, as its sandbox runs them.

* ``bash`` runs ``bash --login -c COMMAND`` in a fresh shell (no state between calls);
  the result is stderr (and a newline) followed by stdout, not flagged on a non-zero
  exit; a timeout is a tool error.
* ``python`` runs ``python3 -`` with the code on stdin, rendered the same way.
* ``text_editor`` is the ``str_replace`` editor with ``view``, ``create``,
  ``str_replace``, ``insert`` and ``undo_edit`` (`tools.harnesses.editor`).
* ``think`` is passive; ``submit`` is passive and ends the episode. A task's own tools
  run their shell-string input when they have one (as `ToolMapping.infer` guesses);
  anything else (web search, browsers, ``bash_session``) is answered by the simulated
  backend.
"""

from __future__ import annotations

from sandboxes.base import ExecResult
from tools.harnesses.base import HarnessProfile, PassiveTool, ShellTool, SimulatedTool, tool_names
from tools.harnesses.editor import EditorTool
from tools.toolmap import ToolBinding
from tools.transcript import Transcript

TIMEOUT_MESSAGE = "Command timed out before completing."


def render(result: ExecResult, output: str) -> tuple[str, bool]:
    """Inspect's bash/python result: stderr first (with a newline), then stdout."""
    if result.timed_out:
        return TIMEOUT_MESSAGE, True
    text = f"{result.stderr}\n" if result.stderr else ""
    return text + result.stdout, False


def bindings() -> dict[str, ToolBinding]:
    return {
        "bash": ShellTool(
            name="bash", alt_keys=("cmd",), render=render, shell=("bash", "--login", "-c"), default_timeout_s=180.0
        ),
        "python": ShellTool(
            name="python",
            command_key="code",
            render=render,
            stdin_program=("bash", "--login", "-c", "python3 -"),
            default_timeout_s=180.0,
        ),
        "text_editor": EditorTool("text_editor", undo=True),
        "think": PassiveTool("think", result=""),
        "submit": PassiveTool("submit", result="", terminal=True),
    }


def fallback(name: str) -> ToolBinding | None:
    return SimulatedTool(name)


def detect(transcript: Transcript) -> bool:
    meta = transcript.metadata
    if meta.get("harness") == "inspect" or meta.get("source_format") == "inspect":
        return True
    return "text_editor" in tool_names(transcript)


PROFILE = HarnessProfile(
    name="inspect",
    description="Inspect AI (bash, python, text_editor with view/create/str_replace/insert/undo_edit)",
    bindings=bindings,
    fallback=fallback,
    schema_file="inspect.yaml",
    detect=detect,
    aliases=("inspect_ai", "inspect-ai"),
    open_tool_set=True,
)
