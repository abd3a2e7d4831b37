"""mini-swe-agent trajectories: ``{"info", "messages", "trajectory_format"}`` JSON.

``messages`` is exactly what the model was sent: ``system``, the task as ``user``,
then ``assistant`` responses and the observations as ``user`` (text mode) or ``tool``
(tool-call mode) messages; version 2 ends with an ``exit`` message. Mapping:

* Leading ``system`` messages → `Transcript.system`.
* ``assistant`` → the response's text, plus its action(s) as tool calls: the
  ``tool_calls`` it made (tool-call mode), or else the commands in ``extra.actions``
  (v2), or else the fenced command block of its text (``bash`` or
  ``mswea_bash_command``, how mini-swe-agent parses them; a response with several
  blocks was a format error and ran nothing, so it gets no call). A command parsed from text
  is a ``bash`` call ``{"command": ...}`` with ``metadata["actions_parsed_from_text"]``
  and counts as synthesized: the model wrote it as text, and resampling sends it back as
  a tool call.
* The ``user`` message after an assistant message with exactly one parsed action is
  that action's observation (mini-swe-agent renders the command's output, a timeout,
  or the submission into it) and becomes its tool result; after a response with no
  action or several (a format error) it stays a user message. ``tool`` messages answer
  their ``tool_call_id``. A non-zero ``returncode`` (from ``extra``, or the
  ``<returncode>`` tag) gives the result status ``error``.
* ``exit`` → kept in ``metadata["mini_swe_agent"]["exit"]`` (it is not sent to the
  model); ``info`` (exit status, submission, model stats, config) goes to metadata, and
  `Transcript.model` is ``info.config.model.model_name``.

``extra`` fields of messages (raw responses, costs, timestamps) are kept in each
message's ``metadata["mini_swe_agent"]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, LoadOptions, read_json
from tools.formats.common import arguments_input, validate_at
from tools.transcript import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

HARNESS = "mini-swe-agent"
ACTION_TOOL = "bash"

#: Fenced command blocks, as mini-swe-agent's text parsers find them.
ACTION_BLOCK = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.DOTALL)
_RETURNCODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Trajectory(_Open):
    messages: list[Any]
    info: dict[str, Any] | None = None
    trajectory_format: str | None = None


class _Msg(_Open):
    role: str
    content: str | list[Any] | None = None
    extra: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


def _blocks(content: str | list[Any] | None, where: str, source: str, tally: ImportTally | None) -> list[ContentBlock]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        if tally is not None:
            tally.count(text=1)
        return [TextBlock(text=content)]
    out: list[ContentBlock] = []
    for j, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            if tally is not None:
                tally.count(text=1)
            out.append(TextBlock(text=part["text"]))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            if tally is not None:
                tally.count(images=1)
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            out.append(ImageBlock(url=url if isinstance(url, str) else None))
        else:
            raise FormatError(
                "expected a text or image_url content part", source=source, location=f"{where}.content[{j}]"
            )
    return out


def parse(data: Any, *, source: str = "<input>") -> Transcript:
    """A transcript from a parsed mini-swe-agent trajectory."""
    traj = validate_at(_Trajectory, data, source=source, where="", what="a mini-swe-agent trajectory")
    tally = ImportTally(format="mini-swe-agent", source=source)
    system: list[str] = []
    messages: list[Message] = []
    pending: list[str] = []
    exit_message: dict[str, Any] | None = None
    parsed_actions = 0
    for i, raw in enumerate(traj.messages):
        where = f"messages[{i}]"
        msg = validate_at(_Msg, raw, source=source, where=where, what="a message")
        tally.count(messages=1)
        meta: dict[str, Any] = {}
        if msg.extra:
            meta["mini_swe_agent"] = msg.extra
        if msg.role == "exit":
            exit_message = dict(raw)
            tally.keep("the exit message (not sent to the model)", {"messages": 1})
            continue
        observation = msg.role == "tool" or (msg.role == "user" and len(pending) == 1 and messages != [])
        blocks = _blocks(msg.content, where, source, None if observation else tally)
        if msg.role == "system" and not messages:
            system.extend(b.text for b in blocks if isinstance(b, TextBlock))
            tally.keep("system prompt", {"messages": 1, "text": len(blocks)})
            continue
        if msg.role == "assistant":
            calls: list[ContentBlock] = []
            if msg.tool_calls:
                for j, call in enumerate(msg.tool_calls):
                    fn = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(call.get("id"), str) or not isinstance(fn, dict):
                        raise FormatError(
                            "expected a tool call with an id and a function",
                            source=source,
                            location=f"{where}.tool_calls[{j}]",
                        )
                    tally.count(tool_calls=1)
                    tool_input, _ = arguments_input(fn.get("arguments", {}))
                    calls.append(ToolUseBlock(id=call["id"], name=str(fn.get("name", ACTION_TOOL)), input=tool_input))
            else:
                commands = _extra_actions(msg.extra)
                if not commands:
                    found = _text_actions(blocks)
                    # mini-swe-agent runs a text response only when it holds exactly one
                    # command block; otherwise it answers with a format error.
                    commands = found if len(found) == 1 else []
                    if len(found) > 1:
                        meta["format_error"] = f"{len(found)} command blocks; none was run"
                for k, command in enumerate(commands):
                    calls.append(ToolUseBlock(id=f"mswea-{i}-{k}", name=ACTION_TOOL, input={"command": command}))
                if commands:
                    meta["actions_parsed_from_text"] = True
                    parsed_actions += len(commands)
                    tally.synthesize(
                        "tool calls parsed from the text of a text-based agent", {"tool_calls": len(commands)}
                    )
            messages.append(Message(role="assistant", content=[*blocks, *calls], metadata=meta))
            pending = [c.id for c in calls if isinstance(c, ToolUseBlock)]
            continue
        if observation:
            call_id = msg.tool_call_id or pending[0]
            items = [b for b in blocks if isinstance(b, TextBlock | ImageBlock)]
            text = "\n".join(b.text for b in items if isinstance(b, TextBlock))
            code = _returncode(msg.extra, text)
            if msg.role == "tool":
                tally.count(tool_results=1)
            else:  # an observation sent as a user message: its text becomes the result
                tally.count(text=len(items))
                tally.merge(text=len(items))
                tally.synthesize("tool results: observations sent as user messages", {"tool_results": 1})
            result = ToolResultBlock(
                tool_use_id=call_id, content=items, status="error" if code not in (None, 0) else "ok"
            )
            if code is not None:
                meta["returncode"] = code
            pending = [p for p in pending if p != call_id]
            last = messages[-1] if messages else None
            if (
                last is not None
                and last.role == "user"
                and last.content
                and all(isinstance(b, ToolResultBlock) for b in last.content)
            ):
                last.content.append(result)
                tally.merge(messages=1)
            else:
                messages.append(Message(role="user", content=[result], metadata=meta))
            continue
        if msg.role not in ("user", "system"):
            raise FormatError(
                f"unsupported role {msg.role!r}; expected system, user, assistant, tool or exit",
                source=source,
                location=f"{where}.role",
            )
        if msg.role == "system":
            meta["source_role"] = "system"
        pending = []
        messages.append(Message(role="user", content=blocks, metadata=meta))
    info = traj.info or {}
    if parsed_actions:
        tally.note(
            f"{parsed_actions} command(s) were parsed from the model's text: they appear as bash tool calls and the "
            "observation messages after them as their results"
        )
    config = info.get("config")
    model_config = config.get("model") if isinstance(config, dict) else None
    name = model_config.get("model_name") if isinstance(model_config, dict) else None
    model = name if isinstance(name, str) else None
    metadata: dict[str, Any] = {
        "harness": HARNESS,
        "mini_swe_agent": {"info": info, "trajectory_format": traj.trajectory_format},
        "tools_inferred": True,
    }
    if exit_message is not None:
        metadata["mini_swe_agent"]["exit"] = exit_message
    for key in ("exit_status", "submission"):
        if key in info:
            metadata[key] = info[key]
    names = dict.fromkeys(u.name for m in messages for u in m.tool_uses)
    transcript = Transcript(
        system="\n\n".join(system) if system else None,
        tools=[ToolSpec(name=n, input_schema={"type": "object", "additionalProperties": True}) for n in names],
        messages=messages,
        model=model,
        metadata=metadata,
    )
    return tally.finish(transcript)


def _extra_actions(extra: dict[str, Any] | None) -> list[str]:
    actions = extra.get("actions") if isinstance(extra, dict) else None
    if not isinstance(actions, list):
        return []
    out = []
    for action in actions:
        command = action.get("command") if isinstance(action, dict) else action
        if isinstance(command, str):
            out.append(command)
    return out


def _text_actions(blocks: list[ContentBlock]) -> list[str]:
    text = "\n".join(b.text for b in blocks if isinstance(b, TextBlock))
    return [m.strip() for m in ACTION_BLOCK.findall(text)]


def _returncode(extra: dict[str, Any] | None, text: str) -> int | None:
    if isinstance(extra, dict):
        for key in ("returncode", "exit_code"):
            if isinstance(extra.get(key), int):
                return int(extra[key])
        run = extra.get("other", {}).get("run_result") if isinstance(extra.get("other"), dict) else None
        if isinstance(run, dict) and isinstance(run.get("exit_code"), int):
            return int(run["exit_code"])
    match = _RETURNCODE.search(text)
    return int(match.group(1)) if match else None


def _sniff(path: Path, data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return False
    fmt = data.get("trajectory_format")
    if isinstance(fmt, str):
        return fmt.startswith("mini-swe-agent")
    info = data.get("info")
    return isinstance(info, dict) and ("mini_version" in info or "exit_status" in info) and "model" not in data


def refusal(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        return "a mini-swe-agent trajectory is a JSON object"
    if not isinstance(data.get("messages"), list):
        return "it has no 'messages' list"
    return "it has no trajectory_format 'mini-swe-agent...' nor an 'info' with mini_version/exit_status"


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


IMPORTER = Importer(
    name="mini-swe-agent",
    description="mini-swe-agent trajectory (JSON with info, messages, trajectory_format)",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"trajectory_format", "info", "mini_version"}),
    refusal=refusal,
)

__all__ = ["ACTION_BLOCK", "IMPORTER", "parse"]
