"""OpenHands event streams: a conversation's events as a JSON array (the trajectory
download, ``save_trajectory_path``) or one event per line.

Each event is an action (``"action": "message" | "run" | "edit" | "read" | ...``, with
``args``) or an observation (``"observation": "run" | "edit" | "error" | ...``, with
``content`` and ``extras``, and ``cause`` = the id of the action it answers), both with
``id``, ``timestamp``, ``source`` (``agent``, ``user``, ``environment``) and, for those
produced by function calling, ``tool_call_metadata`` (``function_name``,
``tool_call_id``, the LLM ``model_response`` and ``total_calls_in_response``).

Mapping:

* ``system`` action → `Transcript.system` (``args.content``) and `Transcript.tools`
  (``args.tools``, OpenAI function definitions).
* ``message`` from the user → a user message (``args.content``, ``args.image_urls`` as
  images); from the agent without a tool call → assistant text.
* An agent action with ``tool_call_metadata`` → a `ToolUseBlock` keyed by
  ``tool_call_id`` whose input is the call's arguments as the model wrote them (from the
  ``model_response``; the action's ``args`` when the response is not logged). Actions of
  one model response (same ``model_response.id``) form one assistant message — parallel
  calls — headed by the response's text (``choices[0].message.content``, else the first
  action's ``thought``).
* An observation answering a call (by ``tool_call_metadata.tool_call_id``, else through
  ``cause``) → its `ToolResultBlock` (``content``); an ``error`` observation is an
  error, a ``run`` observation with a non-zero ``metadata.exit_code`` has status
  ``error``, a ``user_rejected`` observation (or an action whose
  ``confirmation_state`` is ``rejected``) marks the call ``rejected``.
* ``recall`` observations (workspace context, microagent knowledge) are shown to the
  model by OpenHands as a user message it renders itself, which the log does not hold:
  they become a user message with this importer's rendering of the observation,
  marked ``metadata["openhands_recall"]``.
* Bookkeeping events (``agent_state_changed``, ``null``, ``change_agent_state``,
  ``recall`` actions, ``condensation``...) are counted by kind and not made messages.

Every event's ``id``, ``timestamp``, ``source``, ``llm_metrics`` and remaining fields
are kept in its message's ``metadata["openhands"]["events"]``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, JSONSyntaxError, LoadOptions, parse_json_bounded, read_bounded, read_json
from tools.formats.common import arguments_input, kind_of, split_lines, validate_at
from tools.transcript import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ToolCallStatus,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

HARNESS = "openhands"

BOOKKEEPING = frozenset(
    {
        "agent_state_changed",
        "null",
        "change_agent_state",
        "condensation",
        "condensation_request",
        "recall",  # the action; the observation is read
    }
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Event(_Open):
    id: int | None = None
    timestamp: str | None = None
    source: str | None = None
    message: str | None = None
    action: str | None = None
    observation: str | None = None
    args: dict[str, Any] | None = None
    content: str | None = None
    extras: dict[str, Any] | None = None
    cause: int | None = None
    tool_call_metadata: dict[str, Any] | None = None
    llm_metrics: dict[str, Any] | None = None


def _call_of(event: _Event) -> str | None:
    meta = event.tool_call_metadata or {}
    value = meta.get("tool_call_id")
    return value if isinstance(value, str) else None


def _response(event: _Event) -> dict[str, Any]:
    meta = event.tool_call_metadata or {}
    response = meta.get("model_response")
    return response if isinstance(response, dict) else {}


def _response_message(response: dict[str, Any]) -> dict[str, Any]:
    choices = response.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    return message if isinstance(message, dict) else {}


def parse(data: Any, *, source: str = "<input>", skip_bad_lines: bool = False) -> Transcript:
    """A transcript from a parsed event list (or ``{"events": [...]}``)."""
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if not isinstance(data, list):
        raise FormatError(f"expected a list of OpenHands events, got {kind_of(data)}", source=source, location="$")
    return _build([(f"[{i}]", e) for i, e in enumerate(data)], source=source, tally=None, skip_bad_lines=skip_bad_lines)


def _build(items: list[tuple[str, Any]], *, source: str, tally: ImportTally | None, skip_bad_lines: bool) -> Transcript:
    tally = tally or ImportTally(format="openhands", source=source)
    if not items:
        raise FormatError("no events: expected an OpenHands event stream", source=source)
    system: str | None = None
    tools: list[ToolSpec] = []
    messages: list[Message] = []
    open_response: tuple[str, Message] | None = None  # (response id, assistant message)
    call_of_action: dict[int, str] = {}
    calls: dict[str, ToolUseBlock] = {}
    results: dict[str, ToolResultBlock] = {}
    rejected: set[str] = set()
    models: Counter[str] = Counter()
    agent_meta: dict[str, Any] = {}
    results_message: Message | None = None

    def event_facts(raw: dict[str, Any]) -> dict[str, Any]:
        keep = {"id", "timestamp", "source", "cause", "llm_metrics", "message"}
        return {k: v for k, v in raw.items() if k in keep and v is not None}

    for where, raw in items:
        try:
            event = validate_at(_Event, raw, source=source, where=where, what="an OpenHands event")
        except FormatError as err:
            if not skip_bad_lines:
                raise
            tally.skip_line(
                int(where.split()[1]) if where.startswith("line ") else 0, err.detail, json.dumps(raw)[:200]
            )
            continue
        kind = event.action or event.observation
        if event.action is None and event.observation is None:
            raise FormatError(
                "an event is an action (with 'action') or an observation (with 'observation')",
                source=source,
                location=where,
            )
        args = event.args or {}
        facts = event_facts(raw)
        if event.action == "system":
            content = args.get("content")
            system = content if isinstance(content, str) else system
            tally.count(messages=1, text=1)
            tally.keep("system prompt", {"messages": 1, "text": 1})
            tools = _tools(args.get("tools"), source, where) or tools
            agent_meta = {k: v for k, v in args.items() if k not in {"content", "tools"}}
            continue
        if event.action == "message" and event.source == "user":
            tally.count(messages=1)
            blocks = _user_blocks(args, event.message, tally)
            messages.append(Message(role="user", content=blocks, metadata={"openhands": {"events": [facts]}}))
            open_response = None
            results_message = None
            continue
        call_id = _call_of(event) if event.action is not None else None
        if event.action is not None and event.action not in BOOKKEEPING and (call_id or event.source == "agent"):
            response = _response(event)
            rid = response.get("id") if isinstance(response.get("id"), str) else None
            if isinstance(response.get("model"), str):
                models[response["model"]] += 1
            if open_response is not None and rid is not None and open_response[0] == rid:
                assistant = open_response[1]
                tally.merge(messages=1)
            else:
                assistant = Message(role="assistant", metadata={"openhands": {"events": []}})
                messages.append(assistant)
                open_response = (rid or f"event-{event.id}", assistant)
                results_message = None
                text = _response_message(response).get("content")
                if not isinstance(text, str) or not text:
                    thought = args.get("thought")
                    text = thought if isinstance(thought, str) and thought else None
                if event.action == "message" and not call_id:
                    content = args.get("content")
                    text = content if isinstance(content, str) else event.message
                if text:
                    tally.count(text=1)
                    assistant.content.append(TextBlock(text=text))
            tally.count(messages=1)
            assistant.metadata["openhands"]["events"].append({**facts, "action": event.action})
            if call_id:
                tally.count(tool_calls=1)
                block = ToolUseBlock(
                    id=call_id,
                    name=str((event.tool_call_metadata or {}).get("function_name", event.action)),
                    input=_input(event, response),
                )
                assistant.content.append(block)
                calls[call_id] = block
                if event.id is not None:
                    call_of_action[event.id] = call_id
                if args.get("confirmation_state") == "rejected":
                    rejected.add(call_id)
            continue
        if event.observation is not None:
            target = _call_of(event) or (call_of_action.get(event.cause) if event.cause is not None else None)
            if event.observation == "user_rejected" and target is not None:
                rejected.add(target)
            if target is not None and target in calls and target not in results:
                tally.count(messages=1, tool_results=1)
                status: ToolCallStatus = "ok"
                is_error = event.observation == "error"
                code = (
                    ((event.extras or {}).get("metadata") or {}).get("exit_code")
                    if isinstance((event.extras or {}).get("metadata"), dict)
                    else None
                )
                if is_error or (isinstance(code, int) and code > 0):
                    status = "error"
                if event.observation == "user_rejected":
                    status = "rejected"
                result = ToolResultBlock(
                    tool_use_id=target,
                    content=[TextBlock(text=event.content or "")],
                    is_error=is_error,
                    status=status,
                )
                results[target] = result
                if results_message is not None and messages and messages[-1] is results_message:
                    results_message.content.append(result)
                    results_message.metadata["openhands"]["events"].append(
                        {**facts, "observation": event.observation, "extras": event.extras}
                    )
                    tally.merge(messages=1)
                else:
                    results_message = Message(
                        role="user",
                        content=[result],
                        metadata={
                            "openhands": {
                                "events": [{**facts, "observation": event.observation, "extras": event.extras}]
                            }
                        },
                    )
                    messages.append(results_message)
                open_response = None
                continue
            if event.observation == "recall":
                tally.count(messages=1, other=1)
                tally.keep("recall observations (kept whole in message metadata)", {"other": 1})
                tally.synthesize("renderings of recall observations (OpenHands does not log its own)", {"text": 1})
                messages.append(
                    Message(
                        role="user",
                        content=[TextBlock(text=_render_recall(event))],
                        metadata={
                            "openhands_recall": True,
                            "openhands": {"events": [{**facts, "extras": event.extras}]},
                        },
                    )
                )
                open_response = None
                results_message = None
                continue
            if event.observation == "error" or (event.observation not in BOOKKEEPING and event.content):
                tally.count(messages=1, text=1)
                messages.append(
                    Message(
                        role="user",
                        content=[TextBlock(text=event.content or "")],
                        metadata={"openhands": {"events": [{**facts, "observation": event.observation}]}},
                    )
                )
                open_response = None
                results_message = None
                continue
        tally.skip_record(f"{'action' if event.action else 'observation'}:{kind}")
    for call_id in rejected:
        if call_id in results:
            results[call_id].status = "rejected"
    unanswered = [cid for cid in calls if cid not in results]
    for msg in messages:
        if msg.role == "assistant" and any(u.id in unanswered for u in msg.tool_uses):
            msg.metadata["unanswered_calls"] = [u.id for u in msg.tool_uses if u.id in unanswered]
    if any(cid in rejected for cid in unanswered):
        tally.note("some rejected calls have no observation; they stay unanswered")
    model = models.most_common(1)[0][0] if models else None
    metadata: dict[str, Any] = {"harness": HARNESS, "openhands": {"agent": agent_meta}}
    if len(models) > 1:
        metadata["models"] = dict(models)
    if not tools:
        names = dict.fromkeys(u.name for m in messages for u in m.tool_uses)
        tools = [ToolSpec(name=n, input_schema={"type": "object", "additionalProperties": True}) for n in names]
        metadata["tools_inferred"] = True
    transcript = Transcript(system=system, tools=tools, messages=messages, model=model, metadata=metadata)
    return tally.finish(transcript)


def _input(event: _Event, response: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments as the model wrote them, else the action's arguments."""
    call_id = _call_of(event)
    for call in _response_message(response).get("tool_calls") or []:
        if isinstance(call, dict) and call.get("id") == call_id and isinstance(call.get("function"), dict):
            value, _ = arguments_input(call["function"].get("arguments", {}))
            return value
    args = dict(event.args or {})
    for key in ("thought", "confirmation_state", "security_risk", "impl_source", "is_static", "hidden"):
        args.pop(key, None)
    return args


def _user_blocks(args: dict[str, Any], message: str | None, tally: ImportTally) -> list[ContentBlock]:
    content = args.get("content")
    text = content if isinstance(content, str) else (message or "")
    blocks: list[ContentBlock] = []
    if text:
        tally.count(text=1)
        blocks.append(TextBlock(text=text))
    for url in args.get("image_urls") or []:
        if isinstance(url, str):
            tally.count(images=1)
            if url.startswith("data:") and "," in url:
                head, data = url[5:].split(",", 1)
                blocks.append(ImageBlock(media_type=head.split(";", 1)[0] or None, data=data))
            else:
                blocks.append(ImageBlock(url=url))
    return blocks


def _render_recall(event: _Event) -> str:
    extras = event.extras or {}
    parts = [event.content or ""]
    for key in ("repo_name", "repo_directory", "repo_instructions", "additional_agent_instructions", "date"):
        value = extras.get(key)
        if isinstance(value, str) and value:
            parts.append(f"{key}: {value}")
    for item in extras.get("microagent_knowledge") or []:
        if isinstance(item, dict) and isinstance(item.get("content"), str):
            parts.append(f"[{item.get('name', 'knowledge')}] {item['content']}")
    return "\n".join(p for p in parts if p)


def _tools(raw: Any, source: str, where: str) -> list[ToolSpec]:
    if not isinstance(raw, list):
        return []
    specs: list[ToolSpec] = []
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise FormatError("expected an OpenAI function tool", source=source, location=f"{where}.args.tools[{i}]")
        spec = ToolSpec(name=fn["name"], description=str(fn.get("description") or ""))
        if isinstance(fn.get("parameters"), dict):
            spec.input_schema = fn["parameters"]
        specs.append(spec)
    return specs


def parse_lines(lines: list[str], *, source: str = "<input>", skip_bad_lines: bool = False) -> Transcript:
    tally = ImportTally(format="openhands", source=source)
    items: list[tuple[str, Any]] = []
    for index, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            items.append((f"line {index + 1}", parse_json_bounded(text, source=source, line_offset=index)))
        except FormatError as err:
            if not skip_bad_lines:
                raise FormatError(
                    f"{err.detail} (pass --skip-bad-lines to read the rest of the file)",
                    source=source,
                    location=f"line {index + 1}",
                ) from None
            tally.skip_line(index + 1, err.detail, text)
    return _build(items, source=source, tally=tally, skip_bad_lines=skip_bad_lines)


def _looks_like_event(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and (isinstance(value.get("action"), str) or isinstance(value.get("observation"), str))
        and ("source" in value or "cause" in value or "args" in value or "extras" in value)
    )


def _sniff(path: Path, data: Any) -> bool:
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    return isinstance(data, list) and bool(data) and sum(map(_looks_like_event, data)) >= max(1, len(data) // 2)


def refusal(path: Path, data: Any) -> str:
    items = data.get("events") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return "an OpenHands trajectory is a list of events"
    first = next((v for v in items if isinstance(v, dict)), None)
    if (first is not None and "kind" in first) or (first is not None and "event_type" in first):
        return "these are OpenHands SDK (V1) events ('kind'/'event_type'); this importer reads the V0 event stream"
    return "its items are not events with 'action'/'observation' and 'source'/'args'/'extras'"


def _load(path: Path, options: LoadOptions) -> Transcript:
    from tools.settings import parse_limits

    if path.suffix.lower() == ".jsonl":
        data = read_bounded(path, int(parse_limits().max_transcript_bytes), what="an OpenHands event log (.jsonl)")
        return parse_lines(split_lines(data, source=str(path)), source=str(path), skip_bad_lines=options.skip_bad_lines)
    try:
        return parse(read_json(path), source=str(path), skip_bad_lines=options.skip_bad_lines)
    except JSONSyntaxError:
        data = read_bounded(path, int(parse_limits().max_transcript_bytes))
        return parse_lines(split_lines(data, source=str(path)), source=str(path), skip_bad_lines=options.skip_bad_lines)


IMPORTER = Importer(
    name="openhands",
    description="OpenHands event stream (trajectory JSON array, or JSON lines of events)",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"action", "observation", "source", "args", "extras", "cause", "tool_call_metadata"}),
    refusal=refusal,
    line_based=True,
)

__all__ = ["IMPORTER", "parse", "parse_lines"]
