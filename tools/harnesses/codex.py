"""The Codex CLI's tools.

* ``shell`` (and ``local_shell``) takes an argv list (usually ``["bash", "-lc", ...]``;
  ``shell_command`` takes one string), an optional ``workdir`` and ``timeout_ms``. Its output is Codex's JSON envelope
  ``{"output": ..., "metadata": {"exit_code": N, "duration_seconds": S}}``; replays
  compare the output and the exit code, not the timing. An argv that invokes
  ``apply_patch`` (directly, or as a ``bash -lc`` heredoc) is applied natively, as Codex
  intercepts it.
* ``apply_patch`` applies Codex's patch format (`tools.harnesses.apply_patch`), reading
  and writing files through the sandbox.
* ``exec_command`` (unified exec) runs ``cmd`` in ``workdir``.
* ``update_plan`` is passive; ``view_image``, ``web_search`` and MCP tools are answered
  by the simulated backend.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandboxes.errors import SandboxError
from tools.harnesses.apply_patch import apply_patch
from tools.harnesses.base import HarnessProfile, PassiveTool, SimulatedTool, tool_names
from tools.toolmap import BindingKind, ToolBinding, ToolMappingError, ToolOutcome, ToolRun
from tools.transcript import Transcript

_HEREDOC = re.compile(
    r"^\s*(?:cd\s+(?P<cd>'[^']*'|\"[^\"]*\"|\S+)\s*&&\s*)?(?:apply_patch|applypatch)\s*<<\s*['\"]?(?P<tag>\w+)['\"]?\n"
    r"(?P<body>.*)\n(?P=tag)\s*$",
    re.DOTALL,
)
_TEXT_OUTPUT = re.compile(r"^(?:Exit code: (?P<code>-?\d+)\n)?(?:Wall time: [^\n]*\n)?(?:Output:\n)?", re.DOTALL)


def envelope(output: str, exit_code: int, duration: float) -> str:
    """Codex's function-call output for a command."""
    return json.dumps({"output": output, "metadata": {"exit_code": exit_code, "duration_seconds": round(duration, 1)}})


def comparable(text: str) -> str:
    """The part of a command's output a replay compares: the output and the exit code,
    from the JSON envelope or the newer plain-text form."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and "output" in data:
        meta = data.get("metadata") or {}
        return f"exit {meta.get('exit_code')}\n{data['output']}"
    match = _TEXT_OUTPUT.match(text)
    if match and match.group(0):
        return f"exit {match.group('code')}\n{text[match.end() :]}"
    return text


def _patch_in(argv: list[str]) -> tuple[str, str | None] | None:
    """The patch text (and a ``cd`` directory) when an argv invokes apply_patch."""
    if len(argv) == 2 and argv[0] in {"apply_patch", "applypatch"}:
        return argv[1], None
    if len(argv) == 3 and argv[0] in {"bash", "sh", "zsh"} and argv[1] in {"-lc", "-c"}:
        match = _HEREDOC.match(argv[2])
        if match:
            cd = match.group("cd")
            return match.group("body"), shlex.split(cd)[0] if cd else None
    return None


@dataclass(frozen=True)
class CodexShell:
    """``shell`` / ``local_shell`` / ``exec_command`` (see the module doc)."""

    name: str
    command_key: str = "command"
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "command"

    @property
    def passive(self) -> bool:
        return False

    def _argv(self, call_input: Mapping[str, Any]) -> list[str]:
        value = call_input.get(self.command_key, call_input.get("cmd"))
        if isinstance(value, str):
            return ["bash", "-lc", value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise ToolMappingError(f"tool {self.name!r} call has no {self.command_key!r} argv list")

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        argv = self._argv(call_input)
        return argv[2] if len(argv) == 3 and argv[1] in {"-lc", "-c"} else shlex.join(argv)

    def comparable(self, text: str) -> str:
        return comparable(text)

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        argv = self._argv(call_input)
        workdir = call_input.get("workdir")
        cwd = run.paths.to_sandbox(workdir) if isinstance(workdir, str) and workdir else run.paths.sandbox_root
        action = self.describe(call_input)
        patch = _patch_in(argv)
        if patch is not None:
            text, cd = patch
            where = run.paths.to_sandbox(cd, cwd) if cd else cwd
            output, ok = await apply_patch(run, text, where, run.paths)
            return ToolOutcome(output=envelope(output, 0 if ok else 1, 0.0), is_error=not ok, action=action)
        timeout = call_input.get("timeout_ms", call_input.get("timeout"))
        seconds = float(timeout) / 1000 if isinstance(timeout, int | float) and not isinstance(timeout, bool) else 120.0
        mapped = [run.paths.text_to_sandbox(a) for a in argv]
        try:
            result = await run.sandbox.exec(mapped, timeout=min(max(seconds, 1.0), 600.0), workdir=cwd)
        except SandboxError as exc:
            return ToolOutcome(output=f"Error: {exc}", is_error=True, provenance="error", action=action)
        output = run.paths.text_to_session(result.output)
        code = result.exit_code if result.exit_code is not None else 124
        return ToolOutcome(
            output=envelope(output, code, result.duration_s),
            is_error=code != 0,
            provenance=result.provenance,
            action=action,
            timed_out=result.timed_out,
        )


@dataclass(frozen=True)
class CodexApplyPatch:
    """``apply_patch`` as a tool of its own (function or freeform): the patch is the one
    string input (``input``, ``patch``)."""

    name: str = "apply_patch"
    terminal: bool = False

    @property
    def kind(self) -> BindingKind:
        return "file"

    @property
    def passive(self) -> bool:
        return False

    def _patch(self, call_input: Mapping[str, Any]) -> str:
        for key in ("input", "patch"):
            if isinstance(call_input.get(key), str):
                return str(call_input[key])
        strings = [v for v in call_input.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
        raise ToolMappingError("apply_patch call has no patch text (`input`)")

    def describe(self, call_input: Mapping[str, Any]) -> str | None:
        files = re.findall(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", self._patch(call_input), re.MULTILINE)
        return "apply_patch " + ", ".join(files)

    def comparable(self, text: str) -> str:
        return comparable(text)

    async def run(self, call_input: Mapping[str, Any], run: ToolRun) -> ToolOutcome:
        workdir = call_input.get("workdir")
        cwd = run.paths.to_sandbox(workdir) if isinstance(workdir, str) and workdir else run.paths.sandbox_root
        output, ok = await apply_patch(run, self._patch(call_input), cwd, run.paths)
        return ToolOutcome(
            output=envelope(output, 0 if ok else 1, 0.0), is_error=not ok, action=self.describe(call_input)
        )


def bindings() -> dict[str, ToolBinding]:
    return {
        "shell": CodexShell("shell"),
        "local_shell": CodexShell("local_shell"),
        "container.exec": CodexShell("container.exec"),
        "shell_command": CodexShell("shell_command"),
        "exec_command": CodexShell("exec_command", command_key="cmd"),
        "apply_patch": CodexApplyPatch(),
        "update_plan": PassiveTool("update_plan", result="Plan updated"),
        "view_image": SimulatedTool("view_image"),
        "web_search": SimulatedTool("web_search"),
    }


def fallback(name: str) -> ToolBinding | None:
    return SimulatedTool(name)


def detect(transcript: Transcript) -> bool:
    meta = transcript.metadata
    if meta.get("harness") == "codex" or meta.get("source_format") in {"codex", "codex-cli"}:
        return True
    names = tool_names(transcript)
    return "apply_patch" in names or ("shell" in names and "update_plan" in names)


PROFILE = HarnessProfile(
    name="codex",
    description="Codex CLI (shell with argv and workdir, apply_patch, update_plan)",
    bindings=bindings,
    fallback=fallback,
    schema_file="codex.yaml",
    detect=detect,
    aliases=("codex-cli",),
)
