"""SWE-agent's and OpenHands' tools.

mini-swe-agent: ``bash`` in a fresh subshell per action, observed as
``<returncode>N</returncode>`` and the output.

SWE-agent: ``bash`` (the observation is the combined output, or SWE-agent's
"Your command ran successfully and did not produce any output." when there is none),
``str_replace_editor`` (the editor with ``undo_edit``) and ``submit`` (ends the episode).

OpenHands: ``execute_bash`` (the output followed by ``[The command completed with exit
code N.]``, the working directory persisting between calls), ``str_replace_editor``,
``execute_ipython_cell`` (the code run by python3), ``think`` (passive), ``finish``
(ends the episode); browsing is answered by the simulated backend.
"""

from __future__ import annotations

from sandboxes.base import ExecResult
from tools.harnesses.base import HarnessProfile, PassiveTool, ShellTool, SimulatedTool, tool_names
from tools.harnesses.editor import EditorTool
from tools.toolmap import ToolBinding
from tools.transcript import Transcript

NO_OUTPUT = "Your command ran successfully and did not produce any output."


def render_mini(result: ExecResult, output: str) -> tuple[str, bool]:
    """mini-swe-agent's observation: the return code, then the output."""
    code = result.exit_code if result.exit_code is not None else -1
    if result.timed_out:
        return f"The last command timed out and has been killed.\n<output>\n{output}\n</output>", True
    return f"<returncode>{code}</returncode>\n<output>\n{output}</output>", code != 0


def render_swe(result: ExecResult, output: str) -> tuple[str, bool]:
    if result.timed_out:
        return f"{output}\nThe command took too long to execute and was killed.".lstrip("\n"), True
    return (output if output.strip() else NO_OUTPUT), False


def render_openhands(result: ExecResult, output: str) -> tuple[str, bool]:
    if result.timed_out:
        return f"{output.rstrip()}\n[The command timed out.]".lstrip("\n"), True
    code = result.exit_code if result.exit_code is not None else -1
    return f"{output.rstrip()}\n[The command completed with exit code {code}.]".lstrip("\n"), code != 0


def swe_bindings() -> dict[str, ToolBinding]:
    return {
        "bash": ShellTool(name="bash", render=render_swe, persist_cwd=True),
        "str_replace_editor": EditorTool("str_replace_editor", undo=True),
        "submit": PassiveTool("submit", result="", terminal=True),
    }


def mini_bindings() -> dict[str, ToolBinding]:
    # every action runs in a fresh subshell: nothing (not even the directory) carries over
    return {"bash": ShellTool(name="bash", render=render_mini, persist_cwd=False)}


def openhands_bindings() -> dict[str, ToolBinding]:
    return {
        "execute_bash": ShellTool(
            name="execute_bash", render=render_openhands, persist_cwd=True, timeout_key="timeout"
        ),
        "str_replace_editor": EditorTool("str_replace_editor", undo=True),
        "execute_ipython_cell": ShellTool(
            name="execute_ipython_cell", command_key="code", render=render_swe, stdin_program=("python3", "-")
        ),
        "think": PassiveTool("think", result="Your thought has been logged."),
        "finish": PassiveTool("finish", result="", terminal=True),
    }


def fallback(name: str) -> ToolBinding | None:
    return SimulatedTool(name)


def detect_swe(transcript: Transcript) -> bool:
    meta = transcript.metadata
    if meta.get("harness") == "swe-agent" or meta.get("source_format") == "swe-agent":
        return True
    names = tool_names(transcript)
    return "str_replace_editor" in names and "submit" in names


def detect_openhands(transcript: Transcript) -> bool:
    meta = transcript.metadata
    if meta.get("harness") == "openhands" or meta.get("source_format") in {"openhands", "atif"}:
        return True
    return "execute_bash" in tool_names(transcript)


SWE_AGENT = HarnessProfile(
    name="swe-agent",
    description="SWE-agent (bash, str_replace_editor, submit)",
    bindings=swe_bindings,
    fallback=fallback,
    schema_file="swe_agent.yaml",
    detect=detect_swe,
    aliases=("sweagent", "swe_agent"),
)


def detect_mini(transcript: Transcript) -> bool:
    meta = transcript.metadata
    return meta.get("harness") == "mini-swe-agent" or meta.get("source_format") == "mini-swe-agent"


MINI_SWE_AGENT = HarnessProfile(
    name="mini-swe-agent",
    description="mini-swe-agent (one bash action per step, each in a fresh subshell)",
    bindings=mini_bindings,
    fallback=fallback,
    schema_file="mini_swe_agent.yaml",
    detect=detect_mini,
    aliases=("mini_swe_agent", "mini"),
)

OPENHANDS = HarnessProfile(
    name="openhands",
    description="OpenHands (execute_bash, str_replace_editor, execute_ipython_cell, think, finish)",
    bindings=openhands_bindings,
    fallback=fallback,
    schema_file="openhands.yaml",
    detect=detect_openhands,
    aliases=("open-hands",),
)
