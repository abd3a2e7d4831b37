"""Claude Code session logs: ``~/.claude/projects/<project>/<session-id>.jsonl``.

Claude Code appends one JSON record per line. The records that carry the conversation
are ``user`` and ``assistant``; each has a ``uuid`` and a ``parentUuid``, so a session
is a tree, not a list. This importer rebuilds the conversation much as Claude Code
does when it resumes a session:

* **Thread.** The main thread is the chain of ``parentUuid`` links from the *last*
  leaf (in file order) of the non-sidechain records back to its root, so the order of
  lines in the file does not matter. Any record with a ``uuid`` can be a link (system
  records, ``progress`` records), and a ``compact_boundary`` record, which starts a
  new root after ``/compact``, is followed across its ``logicalParentUuid`` so the
  whole session is kept; the summary message after it carries
  ``metadata["compact_summary"] = True`` because the model saw only that summary of
  what came before.
* **Forks.** When two records share a parent (the user pressed Esc twice and edited an
  earlier prompt), the branch not taken is kept in ``metadata["abandoned_branches"]``
  (its leaf, the record it forked from, and its messages), and counted in
  ``metadata["abandoned_branch_count"]``.
* **Merging.** Claude Code writes *one line per content block*, so consecutive
  assistant records with the same ``message.id`` become one assistant message (thinking,
  text and tool calls in order). Likewise the results of parallel tool calls, written
  one per line, become the one user message of tool results the API received.
* **Sidechains.** Records with ``isSidechain: true`` are subagent (``Task`` tool)
  conversations. They are not part of what the main model saw, so by default they are
  left out of ``messages`` and kept in ``metadata["sidechains"]`` as
  ``{"records", "first_uuid", "tool_use_id", "messages"}``; ``parse_lines(...,
  include_sidechains=True)`` splices them in before the result of the ``Task`` call
  that started them, with ``metadata["sidechain"] = True`` on each spliced message.
  A file that holds *only* sidechain records (a subagent's own ``agent-*.jsonl``) is
  read as that subagent's conversation (``metadata["subagent_log"] = True``).
* **Everything else.** ``summary`` records go to ``metadata["summaries"]``, ``system``
  records to ``metadata["system_records"]`` (with ``before_message``, the index of the
  message they precede, when they lie on the main thread), ``queue-operation``
  records to ``metadata["queue_operations"]``; records of any other type
  (``file-history-snapshot``, ``progress``, types newer than this code) are counted by
  type in ``metadata["skipped_records"]``. Per-record facts with no field
  (``toolUseResult`` as ``tool_use_results[tool_use_id]``, ``isMeta`` as ``is_meta``,
  ``usage``, ``requestId``, unknown envelope keys as ``extra``) go to the message's
  metadata, with the records' ``uuids`` and file ``lines``.
* **Not in the log.** Claude Code does not log its system prompt or its tool
  definitions: ``Transcript.system`` is None, and ``Transcript.tools`` lists the tool
  names seen in ``tool_use`` blocks with an empty description and a permissive schema
  (``metadata["tools_inferred"] = True``).

Errors: a line that is not JSON raises `FormatError` at ``line N``; a record of the
wrong shape at ``line N: message.content[0].type`` (the JSON path inside the record).
Content blocks are read as the Anthropic API writes them: text, image and tool_result
in user messages; text, thinking, redacted_thinking and tool_use in assistant
messages; text and image inside tool results. Any other block type is an error at its
location rather than being dropped; unknown *keys* on known blocks are kept in the
message's ``metadata["block_extras"]``.
The one exception is a cut-off *last* line with no newline after it (an interrupted
write, common when Claude Code is killed): it is skipped and
``metadata["truncated_last_line"]`` is True.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tools.errors import FormatError
from tools.formats.base import (
    Importer,
    JSONSyntaxError,
    LoadOptions,
    format_error_from_validation,
    parse_json_bounded,
    read_bounded,
    read_json,
)
from tools.settings import parse_limits
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

M = TypeVar("M", bound=BaseModel)

#: Record types that are turned into messages.
CONVERSATION_TYPES = frozenset({"user", "assistant"})

#: Schema given to tools inferred from ``tool_use`` names: any object is accepted.
INFERRED_TOOL_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": True}

#: Envelope fields that describe the session rather than one record. They are stored
#: once in ``Transcript.metadata`` (from the first record of the thread) and on a
#: message only where that message's value differs.
_SESSION_FIELDS: dict[str, str] = {
    "sessionId": "session_id",
    "cwd": "cwd",
    "gitBranch": "git_branch",
    "version": "claude_code_version",
    "userType": "user_type",
}

_NOTES = [
    "Claude Code does not log its system prompt: Transcript.system is None.",
    "Claude Code does not log tool definitions: tools are inferred from the tool_use names seen.",
]


# --------------------------------------------------------------------------------------
# Vendor shapes. Strict (JSON has exact types) and open to unknown keys, which are kept
# in message metadata rather than dropped.


def _text_to_blocks(value: Any) -> Any:
    """``content`` may be a plain string (a typed prompt) or a list of blocks."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list):
        return value
    raise ValueError("expected a string or a list of content blocks")


def _result_to_items(value: Any) -> Any:
    """A tool result's ``content`` may be missing, a string, or a list of text/image
    items (where bare strings also occur)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list):
        return [{"type": "text", "text": item} if isinstance(item, str) else item for item in value]
    raise ValueError("expected a string or a list of text/image items")


class _Vendor(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Text(_Vendor):
    type: Literal["text"]
    text: str


class _Thinking(_Vendor):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class _RedactedThinking(_Vendor):
    type: Literal["redacted_thinking"]
    data: str


class _ImageSource(_Vendor):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class _Image(_Vendor):
    type: Literal["image"]
    source: _ImageSource


class _ToolUse(_Vendor):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


_ResultItem = Annotated[_Text | _Image, Field(discriminator="type")]


class _ToolResult(_Vendor):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[list[_ResultItem], BeforeValidator(_result_to_items)] = Field(default_factory=list)
    is_error: bool | None = None


_UserBlock = Annotated[_Text | _Image | _ToolResult, Field(discriminator="type")]
_AssistantBlock = Annotated[_Text | _Thinking | _RedactedThinking | _ToolUse, Field(discriminator="type")]


class _UserMessage(_Vendor):
    role: Literal["user"]
    content: Annotated[list[_UserBlock], BeforeValidator(_text_to_blocks)]


class _AssistantMessage(_Vendor):
    id: str | None = None
    type: Literal["message"] | None = None
    role: Literal["assistant"]
    model: str | None = None
    content: Annotated[list[_AssistantBlock], BeforeValidator(_text_to_blocks)]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] | None = None


class _Envelope(_Vendor):
    """Fields every conversational record carries."""

    uuid: str
    parentUuid: str | None = None
    logicalParentUuid: str | None = None
    isSidechain: bool = False
    timestamp: str | None = None
    sessionId: str | None = None
    cwd: str | None = None
    gitBranch: str | None = None
    version: str | None = None
    userType: str | None = None


class _UserRecord(_Envelope):
    type: Literal["user"]
    message: _UserMessage
    isMeta: bool = False
    isCompactSummary: bool = False
    toolUseResult: Any = None


class _AssistantRecord(_Envelope):
    type: Literal["assistant"]
    message: _AssistantMessage
    requestId: str | None = None


class _SystemRecord(_Vendor):
    """Only the fields that place a system record in the tree are checked."""

    type: Literal["system"]
    uuid: str | None = None
    parentUuid: str | None = None
    logicalParentUuid: str | None = None
    isSidechain: bool = False
    subtype: str | None = None


class _SummaryRecord(_Vendor):
    type: Literal["summary"]
    summary: str
    leafUuid: str | None = None


_ConversationRecord = _UserRecord | _AssistantRecord


# --------------------------------------------------------------------------------------
# Parsed records and the tree they form.


@dataclass
class _Entry:
    """One record: its line, its raw JSON and, for user/assistant records, the model."""

    line: int
    kind: str
    raw: dict[str, Any]
    uuid: str | None = None
    parent: str | None = None
    sidechain: bool = False
    record: _ConversationRecord | None = None

    @property
    def conversational(self) -> bool:
        return self.record is not None


@dataclass
class _Session:
    """Everything read from the file, before the thread is chosen."""

    source: str
    entries: list[_Entry] = field(default_factory=list)
    nodes: dict[str, _Entry] = field(default_factory=dict)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    system: list[_Entry] = field(default_factory=list)
    queue_operations: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    missing_parents: list[str] = field(default_factory=list)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _validate(model: type[M], data: Any, *, source: str, line: int) -> M:
    """Validate one record; errors are located as ``line N: json.path``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = format_error_from_validation(exc, source=source)
        raise FormatError(err.detail, source=source, location=f"line {line}: {err.location}") from None


def _read_records(items: Sequence[tuple[int, Any]], source: str) -> _Session:
    """Validate every record and sort it into the session: tree nodes (anything with a
    uuid), summaries, system records, queue operations and skipped-type counts."""
    session = _Session(source=source)
    for line, obj in items:
        entry = _read_entry(line, obj, source)
        if entry.uuid is not None:
            seen = session.nodes.get(entry.uuid)
            if seen is not None:
                if seen.raw == obj:  # the same record written twice: harmless, counted
                    session.duplicates += 1
                    continue
                raise FormatError(
                    f"uuid {entry.uuid!r} was already used by the different record on line {seen.line}",
                    source=source,
                    location=f"line {line}: uuid",
                )
            session.nodes[entry.uuid] = entry
        session.entries.append(entry)
        if entry.kind == "system":
            session.system.append(entry)
        elif entry.kind == "summary":
            summary = _validate(_SummaryRecord, obj, source=source, line=line)
            item: dict[str, Any] = {"summary": summary.summary, "leafUuid": summary.leafUuid, "line": line}
            if summary.model_extra:
                item["extra"] = dict(summary.model_extra)
            session.summaries.append(item)
        elif entry.kind == "queue-operation":
            session.queue_operations.append({"line": line, "record": obj})
        elif not entry.conversational:
            session.skipped[entry.kind] += 1
    return session


def _read_entry(line: int, obj: Any, source: str) -> _Entry:
    """One record with its place in the tree: its uuid, its parent (``parentUuid``, or
    ``logicalParentUuid`` across a compaction) and whether it is a sidechain record."""
    if not isinstance(obj, dict):
        raise FormatError(
            f"expected a JSON object (one Claude Code record per line), got {type(obj).__name__}",
            source=source,
            location=f"line {line}",
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FormatError(
            f"expected a string naming the record type, e.g. 'user' or 'assistant' (got {_show(kind)})",
            source=source,
            location=f"line {line}: type",
        )
    entry = _Entry(line=line, kind=kind, raw=obj)
    placed: _UserRecord | _AssistantRecord | _SystemRecord | None = None
    if kind == "user":
        placed = entry.record = _validate(_UserRecord, obj, source=source, line=line)
    elif kind == "assistant":
        placed = entry.record = _validate(_AssistantRecord, obj, source=source, line=line)
    elif kind == "system":
        placed = _validate(_SystemRecord, obj, source=source, line=line)
    if placed is not None:
        entry.uuid = placed.uuid
        entry.parent = placed.parentUuid or placed.logicalParentUuid
        entry.sidechain = placed.isSidechain
    elif kind not in {"summary", "queue-operation"}:
        # file-history-snapshot, progress, and types newer than this code are not read,
        # but some carry a uuid and take part in the parent chain.
        uuid, parent = obj.get("uuid"), obj.get("parentUuid")
        entry.uuid = uuid if isinstance(uuid, str) else None
        entry.parent = parent if isinstance(parent, str) else None
        entry.sidechain = obj.get("isSidechain") is True
    return entry


def _leaves(members: Sequence[_Entry], nodes: dict[str, _Entry], inside: Callable[[_Entry], bool]) -> list[_Entry]:
    """The members no other member descends from, in file order. Ancestors are marked
    once each, so this is linear in the number of records even for long sessions."""
    has_child: set[str] = set()
    for entry in members:
        parent = entry.parent
        while parent is not None and parent not in has_child:
            node = nodes.get(parent)
            if node is None or not inside(node):
                break
            has_child.add(parent)
            parent = node.parent
    return [e for e in members if e.uuid not in has_child]


def _chain(leaf: _Entry, session: _Session, inside: Callable[[_Entry], bool]) -> list[_Entry]:
    """The records from the root down to `leaf`, following parent links while they
    stay `inside`; a parent that is not in the file ends the chain and is recorded."""
    chain: list[_Entry] = []
    seen: set[str] = set()
    entry: _Entry | None = leaf
    while entry is not None:
        if entry.uuid is not None:
            if entry.uuid in seen:
                raise FormatError(
                    f"the parentUuid chain loops back to record {entry.uuid!r}",
                    source=session.source,
                    location=f"line {entry.line}: parentUuid",
                )
            seen.add(entry.uuid)
        chain.append(entry)
        parent = entry.parent
        if parent is None:
            break
        entry = session.nodes.get(parent)
        if entry is None:
            session.missing_parents.append(parent)
        elif not inside(entry):
            entry = None
    chain.reverse()
    return chain


def _pick_thread(
    members: Sequence[_Entry], session: _Session, inside: Callable[[_Entry], bool]
) -> tuple[list[_Entry], list[_Entry]]:
    """The chain ending at the last leaf, and the other leaves (abandoned branches)."""
    leaves = _leaves(members, session.nodes, inside)
    if not leaves:
        first = members[0]
        raise FormatError(
            "every record has a descendant, so the parentUuid links form a loop",
            source=session.source,
            location=f"line {first.line}: parentUuid",
        )
    leaf = leaves[-1]
    return _chain(leaf, session, inside), leaves[:-1]


# --------------------------------------------------------------------------------------
# Records to messages.


def _extras(model: BaseModel) -> dict[str, Any]:
    return dict(model.model_extra or {})


def _convert_block(
    block: _Text | _Thinking | _RedactedThinking | _Image | _ToolUse | _ToolResult,
    index: int,
    block_extras: dict[str, Any],
) -> ContentBlock:
    """One vendor block as a transcript block; unknown keys go to `block_extras`."""
    if extra := _extras(block):
        block_extras[str(index)] = extra
    if isinstance(block, _Text):
        return TextBlock(text=block.text)
    if isinstance(block, _Thinking):
        return ThinkingBlock(thinking=block.thinking, signature=block.signature)
    if isinstance(block, _RedactedThinking):
        # The encrypted payload is kept where a signature goes so it can be sent back.
        return ThinkingBlock(thinking="", signature=block.data, redacted=True)
    if isinstance(block, _Image):
        return _convert_image(block, f"{index}", block_extras)
    if isinstance(block, _ToolUse):
        return ToolUseBlock(id=block.id, name=block.name, input=block.input)
    items: list[TextBlock | ImageBlock] = []
    for j, item in enumerate(block.content):
        where = f"{index}.content[{j}]"
        if isinstance(item, _Text):
            if extra := _extras(item):
                block_extras[where] = extra
            items.append(TextBlock(text=item.text))
        else:
            if extra := _extras(item):
                block_extras[where] = extra
            items.append(_convert_image(item, where, block_extras))
    return ToolResultBlock(tool_use_id=block.tool_use_id, content=items, is_error=bool(block.is_error))


def _convert_image(image: _Image, where: str, block_extras: dict[str, Any]) -> ImageBlock:
    if extra := _extras(image.source):
        block_extras[f"{where}.source"] = extra
    src = image.source
    return ImageBlock(media_type=src.media_type, data=src.data, url=src.url)


def _envelope_metadata(record: _ConversationRecord, session_info: dict[str, Any]) -> dict[str, Any]:
    """Per-record facts: session fields that differ from the session's, unknown keys."""
    meta: dict[str, Any] = {}
    for source_key, meta_key in _SESSION_FIELDS.items():
        value = getattr(record, source_key)
        if value is not None and value != session_info.get(meta_key):
            meta[meta_key] = value
    if record.isSidechain:
        meta["sidechain"] = True
    if extra := _extras(record):
        meta["extra"] = extra
    if extra := _extras(record.message):
        meta["message_extra"] = extra
    return meta


def _build_messages(
    chain: Sequence[_Entry], session_info: dict[str, Any], positions: dict[int, int] | None = None
) -> list[Message]:
    """Messages for a chain of records. Claude Code writes an assistant message one
    content block per line, and the results of parallel tool calls one per line; both
    are merged back into the single message the API exchanged. `positions` receives,
    for each non-conversational record on the chain (by line), the index of the
    message that follows it."""
    messages: list[Message] = []
    for entry in chain:
        record = entry.record
        if record is None:
            if positions is not None:
                positions[entry.line] = len(messages)
        elif messages and _continues(messages[-1], record):
            _append(messages[-1], record, entry.line, session_info)
        else:
            messages.append(_new_message(record, entry.line, session_info))
    return messages


def _continues(last: Message, record: _ConversationRecord) -> bool:
    """Whether `record` is more of the message `last`: another content block of the
    same API message, or another tool result answering the same assistant message."""
    if last.role != record.message.role or bool(last.metadata.get("sidechain")) != record.isSidechain:
        return False
    if isinstance(record, _AssistantRecord):
        return record.message.id is not None and last.id == record.message.id
    return (
        not record.isMeta
        and bool(record.message.content)
        and all(isinstance(b, _ToolResult) for b in record.message.content)
        and bool(last.content)
        and all(isinstance(b, ToolResultBlock) for b in last.content)
    )


def _new_message(record: _ConversationRecord, line: int, session_info: dict[str, Any]) -> Message:
    extras: dict[str, Any] = {}
    content = [_convert_block(b, i, extras) for i, b in enumerate(record.message.content)]
    meta: dict[str, Any] = {"uuids": [record.uuid], "lines": [line], "timestamp": record.timestamp}
    meta.update(_record_facts(record))
    meta.update(_envelope_metadata(record, session_info))
    if extras:
        meta["block_extras"] = extras
    message_id = record.message.id if isinstance(record, _AssistantRecord) else record.uuid
    return Message(role=record.message.role, content=content, id=message_id, metadata=meta)


def _append(message: Message, record: _ConversationRecord, line: int, session_info: dict[str, Any]) -> None:
    """Add one more record's blocks to `message`. Dict-valued facts are merged; for
    the others the last record wins (Claude Code writes the final stop_reason and usage
    on the last block's line)."""
    meta = message.metadata
    extras: dict[str, Any] = meta.get("block_extras", {})
    offset = len(message.content)
    message.content.extend(_convert_block(b, offset + i, extras) for i, b in enumerate(record.message.content))
    meta["uuids"].append(record.uuid)
    meta["lines"].append(line)
    for key, value in {**_record_facts(record), **_envelope_metadata(record, session_info)}.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict) and key != "usage":
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    if extras:
        meta["block_extras"] = extras


def _record_facts(record: _ConversationRecord) -> dict[str, Any]:
    """The facts of one record that have no transcript field (only those that are set).

    A user record's ``toolUseResult`` (Claude Code's structured result: stdout, stderr,
    file contents, subagent usage...) is keyed by the id of the call it answers, under
    ``tool_use_results``; a record without exactly one tool_result keeps it as
    ``tool_use_result``."""
    if isinstance(record, _AssistantRecord):
        api = record.message
        facts = {
            "model": api.model,
            "stop_reason": api.stop_reason,
            "stop_sequence": api.stop_sequence,
            "usage": api.usage,
            "request_id": record.requestId,
            # Written by Claude Code, not the model (e.g. an API error shown as a reply).
            "synthetic": True if api.model == "<synthetic>" else None,
        }
    else:
        results = [b for b in record.message.content if isinstance(b, _ToolResult)]
        structured = record.toolUseResult
        facts = {
            "is_meta": record.isMeta or None,
            "compact_summary": record.isCompactSummary or None,
        }
        if structured is not None and len(results) == 1:
            facts["tool_use_results"] = {results[0].tool_use_id: structured}
        else:
            facts["tool_use_result"] = structured
    return {key: value for key, value in facts.items() if value is not None}


def _dump(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in messages]


# --------------------------------------------------------------------------------------
# Sidechains (Task subagents).


@dataclass
class _Sidechain:
    root: _Entry
    records: int
    messages: list[Message]
    abandoned: int
    tool_use_id: str | None = None
    insert_at: int | None = None


def _sidechains(session: _Session, main_ids: set[str], session_info: dict[str, Any]) -> list[_Sidechain]:
    """Group the sidechain records that are not on the main thread by their root and
    rebuild each group's conversation with the same leaf rule as the main thread."""

    def in_sidechain(entry: _Entry) -> bool:
        return entry.sidechain and entry.uuid not in main_ids

    groups: dict[int, list[_Entry]] = {}
    roots: dict[int, _Entry] = {}
    root_of: dict[str, _Entry] = {}  # memo: linear even for long subagent conversations
    for entry in session.entries:
        if entry.uuid is None or not in_sidechain(entry):
            continue
        path: dict[str, _Entry] = {}
        node = entry
        while True:
            if node.uuid in root_of:
                root = root_of[node.uuid]
                break
            if node.uuid in path:
                raise FormatError(
                    f"the parentUuid chain loops back to record {node.uuid!r}",
                    source=session.source,
                    location=f"line {node.line}: parentUuid",
                )
            path[node.uuid or ""] = node
            parent = session.nodes.get(node.parent) if node.parent is not None else None
            if parent is None or not in_sidechain(parent):
                root = node
                break
            node = parent
        root_of.update(dict.fromkeys(path, root))
        groups.setdefault(root.line, []).append(entry)
        roots[root.line] = root

    out: list[_Sidechain] = []
    for key in sorted(groups):
        members = groups[key]
        conversational = [e for e in members if e.conversational]
        if not conversational:
            continue
        chain, abandoned = _pick_thread(conversational, session, _member_of({e.uuid for e in members}))
        out.append(
            _Sidechain(
                root=roots[key],
                records=len(members),
                messages=_build_messages(chain, session_info),
                abandoned=len(abandoned),
            )
        )
    return out


def _member_of(ids: set[str | None]) -> Callable[[_Entry], bool]:
    return lambda entry: entry.uuid in ids


def _place_sidechains(sidechains: list[_Sidechain], main: list[Message]) -> None:
    """Find where each sidechain belongs in the main thread: before the result of the
    tool call whose ``prompt`` input is the sidechain's first user text (how Task starts
    a subagent), else before the first later message by timestamp, else at the end."""
    calls: dict[str, tuple[int, str]] = {}
    for i, msg in enumerate(main):
        for use in msg.tool_uses:
            prompt = use.input.get("prompt")
            if isinstance(prompt, str):
                calls.setdefault(prompt, (i, use.id))
    results: dict[str, int] = {}
    for i, msg in enumerate(main):
        for result in msg.tool_results:
            results.setdefault(result.tool_use_id, i)
    for side in sidechains:
        first = side.messages[0] if side.messages else None
        if first is not None and first.role == "user" and first.text in calls:
            call_index, tool_use_id = calls[first.text]
            side.tool_use_id = tool_use_id
            side.insert_at = results.get(tool_use_id, call_index + 1)
            continue
        start = first.metadata.get("timestamp") if first is not None else None
        side.insert_at = len(main)
        if isinstance(start, str):
            for i, msg in enumerate(main):
                stamp = msg.metadata.get("timestamp")
                if isinstance(stamp, str) and stamp > start:
                    side.insert_at = i
                    break


def _splice(sidechains: list[_Sidechain], main: list[Message]) -> tuple[list[Message], list[tuple[int, int]]]:
    """The main messages with each sidechain's messages inserted at its place, and
    the range each sidechain ended up in."""
    by_place: dict[int, list[int]] = {}
    for n, side in enumerate(sidechains):
        by_place.setdefault(side.insert_at if side.insert_at is not None else len(main), []).append(n)
    out: list[Message] = []
    ranges: list[tuple[int, int]] = [(0, 0)] * len(sidechains)
    for i in range(len(main) + 1):
        for n in by_place.get(i, []):
            start = len(out)
            for msg in sidechains[n].messages:
                msg.metadata["sidechain"] = True
                msg.metadata["sidechain_index"] = n
                out.append(msg)
            ranges[n] = (start, len(out))
        if i < len(main):
            out.append(main[i])
    return out, ranges


# --------------------------------------------------------------------------------------
# Assembly.


def _infer_tools(messages: Iterable[Message]) -> list[ToolSpec]:
    names: dict[str, None] = {}
    for msg in messages:
        for use in msg.tool_uses:
            names.setdefault(use.name, None)
    return [ToolSpec(name=name, description="", input_schema=dict(INFERRED_TOOL_SCHEMA)) for name in names]


def _abandoned_branches(
    leaves: Sequence[_Entry], session: _Session, main_ids: set[str], session_info: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each abandoned leaf's branch: the records from where it left the main thread
    (``fork_uuid``; None for a separate tree) down to the leaf, as messages. The
    branches' records are added to `main_ids` so they are not read as sidechains."""
    out: list[dict[str, Any]] = []
    for leaf in leaves:
        branch = _chain(leaf, session, lambda e: e.uuid not in main_ids)
        fork = branch[0].parent if branch[0].parent in main_ids else None
        out.append(
            {
                "leaf_uuid": leaf.uuid,
                "fork_uuid": fork,
                "records": len(branch),
                "messages": _dump(_build_messages(branch, session_info)),
            }
        )
        main_ids.update(e.uuid for e in branch if e.uuid is not None)
    return out


def _build(items: Sequence[tuple[int, Any]], *, source: str, include_sidechains: bool, truncated: bool) -> Transcript:
    session = _read_records(items, source)
    conversational = [e for e in session.entries if e.conversational]
    if not conversational:
        raise FormatError(
            "no user or assistant records: expected a Claude Code session log with a conversation in it",
            source=source,
        )
    main_members = [e for e in conversational if not e.sidechain]
    subagent_log = not main_members
    if subagent_log:
        main_members = conversational  # a subagent's own agent-*.jsonl file

    chain, abandoned_leaves = _pick_thread(main_members, session, lambda e: True)
    # The chain ends at a conversational leaf, so it holds at least one record.
    first = next(e.record for e in chain if e.record is not None)
    session_info: dict[str, Any] = {}
    for source_key, meta_key in _SESSION_FIELDS.items():
        value = getattr(first, source_key)
        if value is not None:
            session_info[meta_key] = value

    positions: dict[int, int] = {}
    main = _build_messages(chain, session_info, positions)
    main_ids = {e.uuid for e in chain if e.uuid is not None}

    abandoned = _abandoned_branches(abandoned_leaves, session, main_ids, session_info)
    sidechains = [] if subagent_log else _sidechains(session, main_ids, session_info)
    _place_sidechains(sidechains, main)
    sidechain_meta: list[dict[str, Any]] = []
    for side in sidechains:
        item: dict[str, Any] = {"records": side.records, "first_uuid": side.root.uuid, "tool_use_id": side.tool_use_id}
        if side.abandoned:
            item["abandoned_branch_count"] = side.abandoned
        sidechain_meta.append(item)
    if include_sidechains and sidechains:
        messages, ranges = _splice(sidechains, main)
        for item, (start, end) in zip(sidechain_meta, ranges, strict=True):
            item["message_range"] = [start, end]
        # `before_message` must point into the spliced list, at the same main message.
        index_of = {id(m): i for i, m in enumerate(messages)}
        main_index = [index_of[id(m)] for m in main] + [len(messages)]
        positions = {line: main_index[i] for line, i in positions.items()}
    else:
        messages = main
        for item, side in zip(sidechain_meta, sidechains, strict=True):
            item["messages"] = _dump(side.messages)

    models = Counter(
        m.metadata["model"]
        for m in main
        if m.role == "assistant" and m.metadata.get("model") not in (None, "<synthetic>")
    )
    model = models.most_common(1)[0][0] if models else None

    system_records = [
        {"line": e.line, "record": e.raw, **({"before_message": positions[e.line]} if e.line in positions else {})}
        for e in session.system
    ]
    compactions = sum(1 for e in session.system if e.line in positions and e.raw.get("subtype") == "compact_boundary")

    metadata: dict[str, Any] = {
        **session_info,
        "leaf_uuid": chain[-1].uuid,
        "summaries": session.summaries,
        "system_records": system_records,
        "queue_operations": session.queue_operations,
        "skipped_records": dict(session.skipped),
        "sidechain_count": len(sidechains),
        "sidechains": sidechain_meta,
        "sidechains_included": include_sidechains and bool(sidechains),
        "abandoned_branch_count": len(abandoned),
        "abandoned_branches": abandoned,
        "truncated_last_line": truncated,
        "tools_inferred": True,
        "notes": list(_NOTES),
    }
    if subagent_log:
        metadata["subagent_log"] = True
    if compactions:
        metadata["compactions"] = compactions
    if len(models) > 1:
        metadata["models"] = dict(models)
    if session.duplicates:
        metadata["duplicate_records"] = session.duplicates
    if session.missing_parents:
        metadata["missing_parents"] = sorted(set(session.missing_parents))
    return Transcript(system=None, tools=_infer_tools(messages), messages=messages, model=model, metadata=metadata)


# --------------------------------------------------------------------------------------
# Public entry points.


def parse(data: Any, *, source: str = "<input>", include_sidechains: bool = False) -> Transcript:
    """A transcript from already-parsed records (a list of dicts, one per line; errors
    name ``line N`` counting from 1). `include_sidechains` splices subagent
    conversations into the messages instead of keeping them in metadata only."""
    if not isinstance(data, list):
        raise FormatError(
            f"expected a list of Claude Code records, got {type(data).__name__}", source=source, location="$"
        )
    if not data:
        raise FormatError("no records: expected a Claude Code session log", source=source)
    return _build(list(enumerate(data, start=1)), source=source, include_sidechains=include_sidechains, truncated=False)


def parse_lines(lines: Iterable[str], *, source: str = "<input>", include_sidechains: bool = False) -> Transcript:
    """A transcript from the lines of a session log, as read from the file (each with
    its newline). Blank lines are ignored. A last line that does not parse and has no
    newline after it is an interrupted write: it is skipped and
    ``metadata["truncated_last_line"]`` is set; any other bad line is an error."""
    all_lines = list(lines)
    items: list[tuple[int, Any]] = []
    truncated = False
    for index, text in enumerate(all_lines):
        line = index + 1
        if not text.strip():
            continue
        try:
            items.append((line, parse_json_bounded(text, source=source, location=f"line {line}", line_offset=index)))
        except JSONSyntaxError as exc:
            if index == len(all_lines) - 1 and not text.endswith("\n"):
                truncated = True
                continue
            raise FormatError(
                f"invalid JSON: {exc.reason} (column {exc.column}); expected one JSON record per line",
                source=source,
                location=f"line {line}",
            ) from None
    if not items:
        what = "its only line is cut off (an interrupted write)" if truncated else "it is empty"
        raise FormatError(f"no records: {what}; expected a Claude Code session log", source=source)
    return _build(items, source=source, include_sidechains=include_sidechains, truncated=truncated)


def parse_bytes(data: bytes, *, source: str = "<input>", include_sidechains: bool = False) -> Transcript:
    """A transcript from a session log's bytes. Lines are split on ``\\n`` only (so
    line numbers match an editor's); bytes that are not UTF-8 are an error except in
    an unterminated last line, where they are part of the interrupted write."""
    parts = data.split(b"\n")
    lines: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        try:
            text = part.decode("utf-8-sig" if index == 0 else "utf-8")
        except UnicodeDecodeError as exc:
            if not last:
                raise FormatError(
                    f"not UTF-8 text (byte {exc.start} of the line)", source=source, location=f"line {index + 1}"
                ) from None
            text = part.decode("utf-8", errors="replace")
        lines.append(text if last else text + "\n")
    return parse_lines(lines, source=source, include_sidechains=include_sidechains)


def _sniff(path: Path, data: Any) -> bool:
    """A whole-file JSON value that is one Claude Code user/assistant record (the
    registry already sends every ``.jsonl`` file here without sniffing)."""
    if not isinstance(data, dict):
        return False
    kind = data.get("type")
    return isinstance(kind, str) and kind in CONVERSATION_TYPES and ("sessionId" in data or "parentUuid" in data)


def _load(path: Path, options: LoadOptions) -> Transcript:
    source = str(path)
    if options.sample_id is not None or options.epoch is not None:
        raise FormatError(
            "a Claude Code session log holds one conversation; sample and epoch apply only to Inspect logs",
            source=source,
        )
    if path.suffix.lower() != ".jsonl":
        # A single record saved as (possibly pretty-printed) JSON, which `_sniff` accepts.
        try:
            whole = read_json(path)
        except JSONSyntaxError:
            whole = None
        if isinstance(whole, dict):
            return _build([(1, whole)], source=source, include_sidechains=False, truncated=False)
    data = read_bounded(path, int(parse_limits().max_transcript_bytes), what="a Claude Code session log (.jsonl)")
    return parse_bytes(data, source=source)


IMPORTER = Importer(
    name="claude-code",
    description="Claude Code session log (~/.claude/projects/<project>/<session-id>.jsonl)",
    sniff=_sniff,
    load=_load,
)
