"""Codex CLI rollouts: ``~/.codex/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl``.

Each line is ``{"timestamp", "type", "payload"}`` with ``type`` one of:

* ``session_meta`` — the session: ``id``, ``cwd``, ``cli_version``, ``originator``,
  ``source``, ``model_provider``, ``git``, and the system prompt as
  ``base_instructions.text`` (``instructions`` in older versions), which becomes
  `Transcript.system`. Everything else goes to ``metadata["codex"]["session"]``.
* ``response_item`` — a Responses API item exactly as Codex sent or received it
  (``message``, ``reasoning``, ``function_call`` / ``function_call_output`` — Codex's
  ``shell``, ``shell_command``, ``exec_command``, ``update_plan`` ... tools —,
  ``custom_tool_call`` / ``_output`` for ``apply_patch``, ``local_shell_call``,
  ``web_search_call``, ``compaction``), read by the same mapping as
  `tools.formats.openai_responses` (see there). ``ghost_snapshot`` items (the harness's
  own git snapshots, never shown to the model) are skipped and counted.
* ``turn_context`` — the settings of each user turn (``model``, ``cwd``,
  ``approval_policy``, ``sandbox_policy``, ``effort``, ``summary``, instructions): kept in
  ``metadata["codex"]["turn_contexts"]`` (with the index of the message it precedes);
  `Transcript.model` is the model most turns used.
* ``event_msg`` — what the UI showed (``user_message``, ``agent_message``,
  ``agent_reasoning``, ``token_count``, ``exec_command_end``, ``patch_apply_end``,
  ``turn_aborted``, ...). They repeat the items and are not messages; they are counted
  by type. Three are used: ``exec_command_end`` gives a call's exit code (a non-zero
  exit gives the result status ``error``), ``patch_apply_end`` whether a patch applied,
  and ``turn_aborted`` marks the calls of the aborted turn that got no output as
  ``interrupted`` (with a placeholder output, as Codex sends ``aborted`` on resume).
* ``compacted`` — a compaction: its ``message`` (the summary the model saw from then on)
  becomes a user message with ``metadata["compact_summary"] = True``; the
  ``replacement_history`` is kept in metadata.

Call statuses: an output ``exec command rejected by user`` / ``patch rejected by user``
(a human declined the approval prompt) or ``This action was rejected due to
unacceptable risk`` (the guardian) is ``rejected``; ``aborted`` is ``interrupted``.
Older rollouts without the envelope (a first line ``{"id", "timestamp",
"instructions"}`` then bare items, ``record_type: state`` lines) are read too.

A line that is not JSON, or a record of the wrong shape, is an error naming the line
(``line N: payload.call_id``); with ``skip_bad_lines`` it is skipped and listed in the
import report.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import (
    Importer,
    JSONSyntaxError,
    LoadOptions,
    parse_json_bounded,
    read_bounded,
)
from tools.formats.common import json_object, kind_of, shown, split_lines, unanswered_calls, validate_at
from tools.formats.openai_responses import ItemReader, finish, read_tools
from tools.transcript import Message, TextBlock, ToolResultBlock, Transcript

HARNESS = "codex"

RECORD_TYPES = frozenset({"session_meta", "response_item", "event_msg", "turn_context", "compacted"})

_REJECTED = (
    "exec command rejected by user",
    "patch rejected by user",
    "This action was rejected due to unacceptable risk",
)
_ABORTED = "aborted"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Record(_Open):
    type: str
    payload: Any = None
    timestamp: str | None = None


class _SessionMeta(_Open):
    id: str | None = None
    cwd: str | None = None
    cli_version: str | None = None
    instructions: str | None = None
    base_instructions: dict[str, Any] | None = None


class _Compacted(_Open):
    message: str
    replacement_history: list[Any] | None = None


def _status_of(kind: str, text: str, item: Any) -> str | None:
    """The status of a call from what Codex answered the model."""
    stripped = text.strip()
    if stripped.startswith(_REJECTED):
        return "rejected"
    if stripped == _ABORTED or stripped.startswith("aborted by user"):
        return "interrupted"
    if stripped.startswith("{"):  # older versions: {"output": ..., "metadata": {"exit_code": N}}
        parsed = json_object(stripped)
        meta = parsed.get("metadata") if parsed is not None else None
        if isinstance(meta, dict) and isinstance(meta.get("exit_code"), int) and meta["exit_code"] != 0:
            return "error"
    return None


def parse_records(
    items: list[tuple[int, Any]], *, source: str, tally: ImportTally | None = None, skip_bad_lines: bool = False
) -> Transcript:
    """A transcript from a rollout's records, each with its 1-based line number."""
    tally = tally or ImportTally(format="codex", source=source)
    reader = ItemReader(source, tally, status_of=_status_of)
    session: dict[str, Any] = {}
    instructions: str | None = None
    turn_contexts: list[dict[str, Any]] = []
    compactions: list[dict[str, Any]] = []
    exit_codes: dict[str, Any] = {}
    patch_failed: set[str] = set()
    models: Counter[str] = Counter()
    aborted = 0
    for line, raw in items:
        where = f"line {line}"
        state = tally.snapshot()
        try:
            if not isinstance(raw, dict):
                raise FormatError(
                    f"expected a JSON object (one rollout record per line), got {kind_of(raw)}",
                    source=source,
                    location=where,
                )
            if "payload" not in raw and "record_type" in raw:
                tally.skip_record(f"legacy {raw.get('record_type')}")
                continue
            if "payload" not in raw and "type" not in raw and "id" in raw:  # legacy first line: the session
                legacy = validate_at(_SessionMeta, raw, source=source, where=where, what="session metadata")
                session.update({k: v for k, v in raw.items() if k != "instructions"})
                instructions = instructions or legacy.instructions
                tally.skip_record("session_meta")
                continue
            if "payload" not in raw:  # legacy: a bare item
                reader.item(raw, where, extra_meta={"codex_lines": [line]})
                continue
            record = validate_at(_Record, raw, source=source, where=where, what="a rollout record")
            payload = record.payload
            at = f"{where}: payload"
            if record.type == "session_meta":
                header = validate_at(_SessionMeta, payload, source=source, where=at, what="session metadata")
                session.update({k: v for k, v in payload.items() if k not in {"instructions", "base_instructions"}})
                text = (header.base_instructions or {}).get("text") if header.base_instructions else None
                instructions = instructions or (text if isinstance(text, str) else None) or header.instructions
                tally.skip_record("session_meta")
            elif record.type == "response_item":
                if not isinstance(payload, dict):
                    raise FormatError(
                        f"expected an item (a JSON object), got {kind_of(payload)}", source=source, location=at
                    )
                if payload.get("type") == "ghost_snapshot":
                    tally.skip_record("response_item:ghost_snapshot")
                    continue
                reader.item(payload, at, extra_meta={"codex_lines": [line]})
            elif record.type == "turn_context":
                if not isinstance(payload, dict):
                    raise FormatError(
                        f"expected the turn's settings, got {kind_of(payload)}", source=source, location=at
                    )
                turn_contexts.append({"line": line, "before_message": len(reader.messages), **payload})
                if isinstance(payload.get("model"), str):
                    models[payload["model"]] += 1
                tally.skip_record("turn_context")
                reader.conversation.close()
            elif record.type == "event_msg":
                kind = payload.get("type") if isinstance(payload, dict) else None
                if not isinstance(kind, str):
                    raise FormatError(
                        f"expected an event with a 'type' (got {shown(payload)})", source=source, location=at
                    )
                tally.skip_record(f"event_msg:{kind}")
                call_id = payload.get("call_id")
                if kind == "exec_command_end" and isinstance(call_id, str):
                    exit_codes[call_id] = payload.get("exit_code")
                elif kind == "patch_apply_end" and isinstance(call_id, str) and payload.get("success") is False:
                    patch_failed.add(call_id)
                elif kind == "turn_aborted":
                    aborted += _abort(reader, payload, line)
            elif record.type == "compacted":
                item = validate_at(_Compacted, payload, source=source, where=at, what="a compaction record")
                tally.count(messages=1, text=1)
                history = item.replacement_history or []
                if history:
                    tally.count(other=1)
                    tally.keep("replacement histories of compactions (kept whole in metadata)", {"other": 1})
                compactions.append(
                    {"line": line, "before_message": len(reader.messages), "replacement_history": history}
                )
                reader.conversation.user(
                    Message(
                        role="user",
                        content=[TextBlock(text=item.message)],
                        metadata={"compact_summary": True, "codex_lines": [line]},
                    )
                )
            else:
                tally.skip_record(record.type)
                tally.warn(f"record type {record.type!r} is not known to this importer; skipped", location=where)
        except FormatError as err:
            if not skip_bad_lines:
                raise
            tally.restore(state)
            tally.skip_line(line, f"{err.location}: {err.detail}", json.dumps(raw, ensure_ascii=False)[:200])
    _apply_outcomes(reader.messages, exit_codes, patch_failed)
    meta: dict[str, Any] = {"session": session, "turn_contexts": turn_contexts}
    if compactions:
        meta["compactions"] = compactions
        tally.note(
            f"{len(compactions)} compaction(s): after each, the model saw the summary message instead of what came "
            "before it"
        )
    if aborted:
        tally.note(f"{aborted} call(s) of aborted turns are marked interrupted")
    tools, kept_tools = (
        read_tools(session.get("dynamic_tools"), source, tally) if session.get("dynamic_tools") else ([], {})
    )
    if kept_tools:
        meta["tools"] = kept_tools
    tally.note("Codex does not log its tool schemas; tools are inferred from the calls seen")
    extra: dict[str, Any] = {}
    for key, name in (("cwd", "cwd"), ("id", "session_id"), ("cli_version", "codex_version")):
        if isinstance(session.get(key), str):
            extra[name] = session[key]
    if instructions is None:
        tally.note("the rollout records no base instructions: Transcript.system holds only developer messages")
    model = models.most_common(1)[0][0] if models else None
    if len(models) > 1:
        extra["models"] = dict(models)
    return finish(
        reader,
        meta,
        instructions=instructions,
        tools=tools,
        model=model,
        generation={},
        shape="rollout",
        harness=HARNESS,
        key="codex",
        extra_metadata=extra,
    )


def _abort(reader: ItemReader, payload: dict[str, Any], line: int) -> int:
    """Answer the calls of the aborted turn that got no output, as Codex does on resume."""
    missing = unanswered_calls(reader.messages)
    for call_id in missing:
        reader.conversation.result(
            ToolResultBlock(
                tool_use_id=call_id, content=[TextBlock(text=_ABORTED)], is_error=True, status="interrupted"
            )
        )
    if missing:
        reader.tally.synthesize("placeholder outputs for calls of aborted turns", {"tool_results": len(missing)})
        reader.tally.warn(
            f"the turn was aborted ({payload.get('reason', 'no reason given')}) with {len(missing)} call(s) "
            "unanswered; they are marked interrupted",
            location=f"line {line}",
        )
    reader.conversation.close()
    return len(missing)


def _apply_outcomes(messages: list[Message], exit_codes: dict[str, Any], patch_failed: set[str]) -> None:
    for msg in messages:
        for result in msg.tool_results:
            code = exit_codes.get(result.tool_use_id)
            if result.status == "ok" and (result.tool_use_id in patch_failed or (isinstance(code, int) and code != 0)):
                result.status = "error"
            if code is not None:
                msg.metadata.setdefault("codex_exit_codes", {})[result.tool_use_id] = code


# ---------------------------------------------------------------------- entry points
def parse_lines(lines: list[str], *, source: str = "<input>", skip_bad_lines: bool = False) -> Transcript:
    """A transcript from a rollout's lines."""
    tally = ImportTally(format="codex", source=source)
    items: list[tuple[int, Any]] = []
    for index, text in enumerate(lines):
        line = index + 1
        if not text.strip():
            continue
        try:
            items.append((line, parse_json_bounded(text, source=source, location=f"line {line}", line_offset=index)))
        except JSONSyntaxError as exc:
            if index == len(lines) - 1 and not text.endswith("\n"):
                tally.warn(
                    "the last line was cut off mid-write and skipped (an interrupted write)", location=f"line {line}"
                )
                continue
            if skip_bad_lines:
                tally.skip_line(line, f"invalid JSON: {exc.reason} (column {exc.column})", text)
                continue
            raise FormatError(
                f"invalid JSON: {exc.reason} (column {exc.column}); expected one rollout record per line "
                "(pass --skip-bad-lines to read the rest of the file)",
                source=source,
                location=f"line {line}",
            ) from None
        except FormatError as err:
            if not skip_bad_lines:
                raise
            tally.skip_line(line, err.detail, text)
    if not items:
        raise FormatError("no records: expected a Codex rollout (one JSON record per line)", source=source)
    return parse_records(items, source=source, tally=tally, skip_bad_lines=skip_bad_lines)


def parse(data: Any, *, source: str = "<input>", skip_bad_lines: bool = False) -> Transcript:
    """A transcript from already-parsed records (a list, one per line)."""
    if not isinstance(data, list):
        raise FormatError(f"expected a list of rollout records, got {kind_of(data)}", source=source, location="$")
    if not data:
        raise FormatError("no records: expected a Codex rollout", source=source)
    return parse_records(list(enumerate(data, start=1)), source=source, skip_bad_lines=skip_bad_lines)


def _sniff(path: Path, data: Any) -> bool:
    """The first records of a rollout (a list): envelopes of known record types."""
    if not isinstance(data, list) or not data:
        return False
    envelopes = [r for r in data if isinstance(r, dict) and "payload" in r and r.get("type") in RECORD_TYPES]
    return len(envelopes) >= max(1, len(data) // 2)


def refusal(path: Path, data: Any) -> str:
    if not isinstance(data, list):
        return "a Codex rollout is JSON lines, one {timestamp, type, payload} record per line"
    if not data:
        return "the file holds no records"
    first = data[0]
    if isinstance(first, dict) and "payload" not in first:
        return "its records have no 'payload' (a Codex record is {timestamp, type, payload})"
    kinds = sorted({str(r.get("type")) for r in data if isinstance(r, dict)} - RECORD_TYPES)
    return f"record types {', '.join(kinds) or 'none'} are not session_meta/response_item/event_msg/turn_context"


def _load(path: Path, options: LoadOptions) -> Transcript:
    from tools.settings import parse_limits

    if options.sample_id is not None or options.epoch is not None:
        raise FormatError("a Codex rollout holds one session; sample and epoch apply to Inspect logs", source=str(path))
    data = read_bounded(path, int(parse_limits().max_transcript_bytes), what="a Codex rollout (.jsonl)")
    return parse_lines(split_lines(data, source=str(path)), source=str(path), skip_bad_lines=options.skip_bad_lines)


IMPORTER = Importer(
    name="codex",
    description="Codex CLI rollout (~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl)",
    sniff=_sniff,
    load=_load,
    markers=frozenset(
        {
            "payload",
            "timestamp",
            "type:session_meta",
            "type:response_item",
            "type:event_msg",
            "type:turn_context",
            "type:compacted",
        }
    ),
    refusal=refusal,
    line_based=True,
)

__all__ = ["IMPORTER", "parse", "parse_lines", "parse_records"]
