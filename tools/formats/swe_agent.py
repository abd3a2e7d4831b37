"""SWE-agent trajectories: ``trajectories/<run>/<instance_id>/<instance_id>.traj``.

A ``.traj`` file is JSON: ``{"trajectory": [steps], "history": [items], "info": {...},
"replay_config": ..., "environment": ...}``. The conversation is read from
``history``, which is what the model was sent (system prompt, demonstrations, the
issue, each response and each observation):

* ``role: system`` items before the first other item become `Transcript.system`;
  later ones user messages with ``metadata["source_role"] = "system"``.
* ``role: user`` → a user message (demonstrations keep ``is_demo``; SWE-agent shows
  them to the model, so they stay in the conversation).
* ``role: assistant`` → an assistant message: its ``content`` (the model's raw output)
  as text, ``thinking_blocks`` as `ThinkingBlock`s, and its call(s): the
  ``tool_calls`` (function-calling configurations) or, for text parsers
  (``thought_action``, ``xml_thought_action``...), the parsed ``action`` as a
  ``bash`` call (``{"command": action}``: SWE-agent runs every action, tool-bundle
  commands included, in its shell session) with ``metadata["action_parsed_from_text"]``.
  Such a synthesized call is counted as synthesized in the import report, and resampling
  sends it back as a tool call although the model wrote it as text.
* ``role: tool`` (with ``tool_call_ids``) and the ``observation`` user message after
  a text action → tool results for those calls. An assistant item whose action is
  empty (a format error) has no call; the error message after it stays a user message.

Each assistant message's step facts (``thought``, ``action``, ``state``,
``execution_time``) come from the matching ``trajectory`` step when there is one, kept
in ``metadata["swe_agent"]``; ``info`` (exit status, submission, model stats, versions)
goes to transcript metadata. `Transcript.model` comes from the replay config's
``agent.model.name`` when present. SWE-agent logs no tool schemas: the tools are the
names called (``tools_inferred``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, LoadOptions, read_json
from tools.formats.common import arguments_input, json_object, validate_at
from tools.transcript import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

HARNESS = "swe-agent"
TEXT_ACTION_TOOL = "bash"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Traj(_Open):
    history: list[Any] | None = None
    trajectory: list[Any] | None = None
    info: dict[str, Any] | None = None
    replay_config: Any = None
    environment: Any = None


class _Item(_Open):
    role: str
    content: str | list[Any] | None = None
    message_type: str | None = None
    agent: str | None = None
    is_demo: bool = False
    thought: str | None = None
    action: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_ids: list[str] | None = None
    thinking_blocks: list[dict[str, Any]] | None = None


class _ToolCall(_Open):
    id: str
    function: dict[str, Any]


def _content(raw: str | list[Any] | None, where: str, source: str, tally: ImportTally | None) -> list[ContentBlock]:
    """Blocks for an item's content, counted as read into `tally` (None: not counted,
    for content that becomes part of a tool result)."""
    if tally is None:
        tally = ImportTally(format="swe-agent")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        tally.count(text=1)
        return [TextBlock(text=raw)]
    blocks: list[ContentBlock] = []
    for j, part in enumerate(raw):
        if isinstance(part, str):
            tally.count(text=1)
            blocks.append(TextBlock(text=part))
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            tally.count(text=1)
            blocks.append(TextBlock(text=part["text"]))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            tally.count(images=1)
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            blocks.append(ImageBlock(url=url if isinstance(url, str) else None))
        else:
            raise FormatError(
                "expected a text or image_url content part", source=source, location=f"{where}.content[{j}]"
            )
    return blocks


def parse(data: Any, *, source: str = "<input>") -> Transcript:
    """A transcript from a parsed ``.traj`` file."""
    traj = validate_at(_Traj, data, source=source, where="", what="a SWE-agent trajectory")
    tally = ImportTally(format="swe-agent", source=source)
    if not traj.history:
        raise FormatError(
            "the trajectory has no 'history' (the messages the model saw); trajectories from SWE-agent 0.7 and "
            "later record it",
            source=source,
            location="history",
        )
    steps = [s for s in traj.trajectory or [] if isinstance(s, dict)]
    step_index = 0
    system_texts: list[str] = []
    messages: list[Message] = []
    pending: list[str] = []  # calls of the last assistant message awaiting results
    synthesized = 0
    for i, raw in enumerate(traj.history):
        where = f"history[{i}]"
        item = validate_at(_Item, raw, source=source, where=where, what="a history item")
        tally.count(messages=1)
        observation = item.role == "tool" or (
            item.role == "user" and bool(pending) and not item.is_demo and _is_observation(item)
        )
        blocks = _content(item.content, where, source, None if observation else tally)
        meta: dict[str, Any] = {}
        if item.message_type:
            meta["message_type"] = item.message_type
        if item.agent:
            meta["agent"] = item.agent
        if item.is_demo:
            meta["is_demo"] = True
        if item.role == "system" and not messages:
            system_texts.extend(b.text for b in blocks if isinstance(b, TextBlock))
            tally.keep("system prompt", {"messages": 1, "text": len(blocks)})
            continue
        if item.role == "assistant":
            thinking: list[ContentBlock] = []
            for block in item.thinking_blocks or []:
                tally.count(thinking=1)
                thinking.append(
                    ThinkingBlock(
                        thinking=str(block.get("thinking", "")),
                        signature=block.get("signature") if isinstance(block.get("signature"), str) else None,
                        redacted=block.get("type") == "redacted_thinking",
                    )
                )
            calls: list[ContentBlock] = []
            if item.tool_calls:
                for j, raw_call in enumerate(item.tool_calls):
                    call = validate_at(
                        _ToolCall, raw_call, source=source, where=f"{where}.tool_calls[{j}]", what="a tool call"
                    )
                    tally.count(tool_calls=1)
                    tool_input, _ = arguments_input(call.function.get("arguments", {}))
                    calls.append(ToolUseBlock(id=call.id, name=str(call.function.get("name", "")), input=tool_input))
            elif item.action and item.action.strip() and not item.is_demo:
                calls.append(ToolUseBlock(id=f"swe-action-{i}", name=TEXT_ACTION_TOOL, input={"command": item.action}))
                meta["action_parsed_from_text"] = True
                tally.synthesize("tool calls parsed from the text of a text-based agent", {"tool_calls": 1})
                synthesized += 1
            if not item.is_demo and steps and step_index < len(steps):
                step = steps[step_index]
                step_index += 1
                meta["swe_agent"] = {
                    k: step[k] for k in ("thought", "action", "state", "execution_time", "extra_info") if k in step
                }
            elif item.thought is not None:
                meta["swe_agent"] = {"thought": item.thought, "action": item.action}
            msg = Message(role="assistant", content=[*thinking, *blocks, *calls], metadata=meta)
            messages.append(msg)
            pending = [c.id for c in calls if isinstance(c, ToolUseBlock)]
            continue
        if observation:
            ids = item.tool_call_ids or pending[:1]
            if not ids:
                raise FormatError(
                    "a tool message must name the call it answers (tool_call_ids)",
                    source=source,
                    location=f"{where}.tool_call_ids",
                )
            items = [b for b in blocks if isinstance(b, TextBlock | ImageBlock)]
            results = [ToolResultBlock(tool_use_id=call_id, content=list(items)) for call_id in ids]
            if item.role == "tool":
                tally.count(tool_results=1)
            else:  # an observation sent as a user message: its text becomes the result
                tally.count(text=len(items))
                tally.merge(text=len(items))
                tally.synthesize("tool results: observations sent as user messages", {"tool_results": 1})
            if len(results) > 1:
                tally.synthesize(
                    "tool results repeating one observation for several calls", {"tool_results": len(results) - 1}
                )
            pending = [p for p in pending if p not in ids]
            last = messages[-1] if messages else None
            if (
                last is not None
                and last.role == "user"
                and last.content
                and all(isinstance(b, ToolResultBlock) for b in last.content)
            ):
                last.content.extend(results)
                tally.merge(messages=1)
            else:
                messages.append(Message(role="user", content=list(results), metadata=meta))
            continue
        if item.role not in ("user", "system"):
            raise FormatError(
                f"unsupported role {item.role!r}; expected system, user, assistant or tool",
                source=source,
                location=f"{where}.role",
            )
        if item.role == "system":
            meta["source_role"] = "system"
        pending = []
        messages.append(Message(role="user", content=blocks, metadata=meta))
    if synthesized:
        tally.note(
            f"{synthesized} action(s) were parsed from the model's text (a text-based parser): they appear as bash "
            "tool calls, and the observations after them as their results"
        )
    info = traj.info or {}
    model = _model_name(traj.replay_config)
    metadata: dict[str, Any] = {
        "harness": HARNESS,
        "swe_agent": {
            "info": info,
            "environment": traj.environment,
            "steps": len(steps),
            **({"replay_config": traj.replay_config} if traj.replay_config is not None else {}),
        },
        "tools_inferred": True,
    }
    for key in ("exit_status", "submission"):
        if key in info:
            metadata[key] = info[key]
    names = dict.fromkeys(u.name for m in messages for u in m.tool_uses)
    transcript = Transcript(
        system="\n\n".join(system_texts) if system_texts else None,
        tools=[ToolSpec(name=n, input_schema={"type": "object", "additionalProperties": True}) for n in names],
        messages=messages,
        model=model,
        metadata=metadata,
    )
    return tally.finish(transcript)


def _is_observation(item: _Item) -> bool:
    return item.message_type in (None, "observation")


def _model_name(replay_config: Any) -> str | None:
    config = json_object(replay_config) if isinstance(replay_config, str) else replay_config
    if not isinstance(config, dict):
        return None
    agent = config.get("agent")
    model = agent.get("model") if isinstance(agent, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    return name if isinstance(name, str) else None


def _sniff(path: Path, data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("history"), list)
        and isinstance(data.get("trajectory"), list)
        and "messages" not in data
    )


def refusal(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        return "a .traj file is a JSON object"
    if not isinstance(data.get("trajectory"), list):
        return "it has no 'trajectory' list of steps"
    return "it has no 'history' list (the messages the model saw)"


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


IMPORTER = Importer(
    name="swe-agent",
    description="SWE-agent trajectory (.traj: trajectory steps and the model's history)",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"trajectory", "history", "info", "replay_config", "environment"}),
    refusal=refusal,
)

__all__ = ["IMPORTER", "parse"]
