"""ATIF, the Agent Trajectory Interchange Format (Harbor RFC 0001, ``ATIF-v1.x``).

A trajectory is ``{"schema_version", "session_id", "agent": {"name", "version",
"model_name"}, "steps": [...], "final_metrics", "notes", "extra"}``; each step has a
``step_id``, a ``source`` (``system``, ``user`` or ``agent``), a ``message``, and for agent
steps optionally ``reasoning_content``, ``tool_calls`` (``tool_call_id``,
``function_name``, ``arguments``), an ``observation`` (``results``: ``source_call_id``,
``content``, ``subagent_trajectory_ref``) and ``metrics``.

Mapping:

* ``system`` steps before any other step → `Transcript.system`; later ones user messages
  with ``metadata["source_role"] = "system"`` (with their observation, if any, as text).
* ``user`` steps → user messages.
* ``agent`` steps → an assistant message: ``reasoning_content`` as a `ThinkingBlock`
  (ATIF keeps no signature), ``message`` as text, each tool call as a `ToolUseBlock`.
  The step's observation follows as a user message of tool results (by
  ``source_call_id``); a result without a ``source_call_id`` (an action that was not a
  tool call) is text in that message. A result that points at a subagent trajectory
  keeps the references in the result message's ``metadata["atif"]``; embedded
  ``subagent_trajectories`` (v1.7) are kept in transcript metadata, counted as kept.
* ``agent.name`` is the harness (``metadata["harness"]``: Harbor names agents
  ``claude-code``, ``openhands``, ``mini-swe-agent``, ``terminus``...), ``model_name``
  (the step's, else the agent's) the model; ``metrics``, ``extra`` and unknown fields go
  to message metadata, ``final_metrics``, ``notes`` and ``extra`` to transcript metadata.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally, count_blocks
from tools.formats.base import Importer, LoadOptions, read_json
from tools.formats.common import arguments_input, validate_at
from tools.transcript import (
    ContentBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

#: Agent names Harbor uses, mapped onto this project's harness names.
_HARNESS_NAMES = {
    "claude-code": "claude-code",
    "claude_code": "claude-code",
    "codex": "codex",
    "openhands": "openhands",
    "mini-swe-agent": "mini-swe-agent",
    "mini_swe_agent": "mini-swe-agent",
    "swe-agent": "swe-agent",
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Agent(_Open):
    name: str
    version: str | None = None
    model_name: str | None = None


class _Trajectory(_Open):
    schema_version: str
    session_id: str | None = None
    agent: _Agent
    steps: list[Any]
    notes: str | None = None
    final_metrics: dict[str, Any] | None = None
    subagent_trajectories: list[Any] | None = None


class _ToolCall(_Open):
    tool_call_id: str
    function_name: str
    arguments: Any = None


class _Result(_Open):
    source_call_id: str | None = None
    content: str | None = None
    subagent_trajectory_ref: list[dict[str, Any]] | None = None


class _Observation(_Open):
    results: list[_Result]


class _Step(_Open):
    step_id: int
    source: str
    message: str | list[Any] = ""
    timestamp: str | None = None
    model_name: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None
    observation: _Observation | None = None
    metrics: dict[str, Any] | None = None


def _text(message: str | list[Any]) -> str:
    """ATIF 1.6+ allows a message as a list of content parts; their texts are joined."""
    if isinstance(message, str):
        return message
    texts = [str(p.get("text", "")) for p in message if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(texts)


def parse(data: Any, *, source: str = "<input>") -> Transcript:
    """A transcript from a parsed ATIF trajectory."""
    traj = validate_at(_Trajectory, data, source=source, where="", what="an ATIF trajectory")
    tally = ImportTally(format="atif", source=source)
    system: list[str] = []
    messages: list[Message] = []
    models: Counter[str] = Counter()
    for i, raw in enumerate(traj.steps):
        where = f"steps[{i}]"
        step = validate_at(_Step, raw, source=source, where=where, what="a step")
        tally.count(messages=1)
        text = _text(step.message)
        meta: dict[str, Any] = {"atif": {"step_id": step.step_id}}
        for key in ("timestamp", "metrics", "extra", "reasoning_effort"):
            if key in raw and raw[key] is not None:
                meta["atif"][key] = raw[key]
        if step.source == "system" and not messages and not step.observation:
            if text:
                tally.count(text=1)
                tally.keep("system prompt", {"messages": 1, "text": 1})
                system.append(text)
            else:
                tally.keep("system prompt", {"messages": 1})
            continue
        if step.source in ("system", "user"):
            blocks: list[ContentBlock] = []
            if text:
                tally.count(text=1)
                blocks.append(TextBlock(text=text))
            if step.source == "system":
                meta["source_role"] = "system"
            for result in step.observation.results if step.observation else []:
                tally.count(text=1)
                blocks.append(TextBlock(text=result.content or ""))
            messages.append(Message(role="user", content=blocks, metadata=meta))
            continue
        if step.source != "agent":
            raise FormatError(
                f"unsupported step source {step.source!r}; expected system, user or agent",
                source=source,
                location=f"{where}.source",
            )
        model = step.model_name or traj.agent.model_name
        if model:
            models[model] += 1
        blocks = []
        if step.reasoning_content:
            tally.count(thinking=1)
            blocks.append(ThinkingBlock(thinking=step.reasoning_content))
        if text:
            tally.count(text=1)
            blocks.append(TextBlock(text=text))
        for call in step.tool_calls or []:
            tally.count(tool_calls=1)
            tool_input, _ = arguments_input(call.arguments if call.arguments is not None else {})
            blocks.append(ToolUseBlock(id=call.tool_call_id, name=call.function_name, input=tool_input))
        messages.append(Message(role="assistant", content=blocks, metadata=meta))
        if step.observation is None or not step.observation.results:
            continue
        tally.synthesize("user messages holding each agent step's observation", {"messages": 1})
        called = {c.tool_call_id for c in step.tool_calls or []}
        content: list[ContentBlock] = []
        refs: dict[str, Any] = {}
        for j, result in enumerate(step.observation.results):
            if result.subagent_trajectory_ref:
                refs[result.source_call_id or f"result {j}"] = result.subagent_trajectory_ref
            body = result.content
            if body is None and result.subagent_trajectory_ref:
                body = (
                    "[subagent trajectory: "
                    + ", ".join(str(r.get("session_id")) for r in result.subagent_trajectory_ref if isinstance(r, dict))
                    + "]"
                )
            if result.source_call_id is not None:
                if result.source_call_id not in called:
                    raise FormatError(
                        f"result for {result.source_call_id!r}, which this step did not call",
                        source=source,
                        location=f"{where}.observation.results[{j}].source_call_id",
                    )
                tally.count(tool_results=1)
                content.append(ToolResultBlock(tool_use_id=result.source_call_id, content=[TextBlock(text=body or "")]))
            else:
                tally.count(text=1)
                content.append(TextBlock(text=body or ""))
        result_meta: dict[str, Any] = {"atif": {"observation_of_step": step.step_id}}
        if refs:
            result_meta["atif"]["subagent_trajectory_refs"] = refs
        messages.append(Message(role="user", content=content, metadata=result_meta))
    harness = _HARNESS_NAMES.get(traj.agent.name.lower(), traj.agent.name)
    metadata: dict[str, Any] = {
        "harness": harness,
        "atif": {
            "schema_version": traj.schema_version,
            "session_id": traj.session_id,
            "agent": traj.agent.model_dump(exclude_none=True),
            **({"final_metrics": traj.final_metrics} if traj.final_metrics else {}),
            **({"notes": traj.notes} if traj.notes else {}),
            **({"extra": data["extra"]} if isinstance(data, dict) and data.get("extra") else {}),
        },
        "tools_inferred": True,
    }
    if traj.subagent_trajectories:
        subs = []
        for k, sub in enumerate(traj.subagent_trajectories):
            inner = parse(sub, source=f"{source} subagent_trajectories[{k}]")
            subs.append(
                {
                    "session_id": inner.metadata["atif"]["session_id"],
                    "messages": [m.model_dump(mode="json") for m in inner.messages],
                }
            )
            tally.count(**dict(count_blocks(inner.messages).nonzero().items()))
            tally.keep("subagent trajectories", count_blocks(inner.messages))
        metadata["atif"]["subagent_trajectories"] = subs
    names = dict.fromkeys(u.name for m in messages for u in m.tool_uses)
    transcript = Transcript(
        system="\n\n".join(system) if system else None,
        tools=[ToolSpec(name=n, input_schema={"type": "object", "additionalProperties": True}) for n in names],
        messages=messages,
        model=models.most_common(1)[0][0] if models else traj.agent.model_name,
        metadata=metadata,
    )
    return tally.finish(transcript)


def _sniff(path: Path, data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("schema_version"), str)
        and data["schema_version"].startswith("ATIF")
        and isinstance(data.get("steps"), list)
    )


def refusal(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        return "an ATIF trajectory is a JSON object"
    version = data.get("schema_version")
    if not isinstance(version, str) or not version.startswith("ATIF"):
        return f"its schema_version is {version!r}, not 'ATIF-v1.x'"
    return "it has no 'steps' list"


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


IMPORTER = Importer(
    name="atif",
    description="ATIF agent trajectory (Harbor's Agent Trajectory Interchange Format, ATIF-v1.x JSON)",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"schema_version", "session_id", "agent", "steps", "final_metrics", "notes"}),
    refusal=refusal,
)

__all__ = ["IMPORTER", "parse"]
