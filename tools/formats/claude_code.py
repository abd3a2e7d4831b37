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
  what came before. A record *without* a ``parentUuid`` key (logs converted by other
  tools, very old versions) hangs off the record before it in the file, so such a log
  is read in file order; a record without a ``uuid`` gets ``line:N``.
* **Parallel tool calls.** Claude Code writes *one line per content block*: the
  several ``tool_use`` blocks of one assistant message arrive as separate records
  sharing ``message.id``, and each ``tool_result`` in its own user record, whose
  ``parentUuid`` (and ``sourceToolAssistantUUID``) is the record of *its* call, not
  the previous result. Hook ``progress`` records hang off the calls too. So the tree
  branches at every parallel call. Records of one API message are merged by
  ``message.id`` wherever they lie in the thread, tool results are gathered into the
  one user message answering their assistant message (in the order of the calls), and
  a branch made only of such records (more blocks of a message on the thread, results
  of calls on the thread) is folded back into the thread rather than treated as a
  fork. A call that got no result although the conversation went on (the user
  interrupted it) gets a placeholder result, as Claude Code itself sends on resume.
* **Forks.** A real fork (the user pressed Esc twice and edited an earlier prompt:
  two branches with their own user text) keeps the branch not taken in
  ``metadata["abandoned_branches"]`` (its leaf, the record it forked from, and its
  messages), counted in ``metadata["abandoned_branch_count"]``.
* **Rejected and interrupted calls.** A result that says the user refused the call
  (``toolUseResult == "User rejected tool use"``, a ``toolDenialKind``, or the text
  "The user doesn't want to proceed with this tool use" / "...take this action",
  "Permission to use ... has been denied") gets ``status="rejected"``; one the user
  interrupted while it ran (a Bash ``toolUseResult`` with ``interrupted: true``, an
  "[Request interrupted by user" result, or a refusal of a call that had already
  reported progress) gets ``status="interrupted"``. Replay runs neither.
* **Sidechains.** Subagent (``Task`` / ``Agent`` tool) conversations are either
  records with ``isSidechain: true`` in the session file (older versions) or their own
  files, ``<session-id>/subagents/agent-<agentId>.jsonl`` or ``agent-<agentId>.jsonl``
  next to the session (read by `load` when present). They are not part of what the main
  model saw, so by default they are left out of ``messages`` and kept in
  ``metadata["sidechains"]`` as ``{"records", "first_uuid", "tool_use_id", "agent_id",
  "messages", "path"?}``, where ``tool_use_id`` links each one to the Task call that
  started it (by the call's ``prompt``, the result's ``toolUseResult.agentId`` or an
  ``agent_progress`` record); ``metadata["sidechain_of_tool_use"]`` maps call ids to
  indexes. ``include_sidechains=True`` splices them in before the result of their Task
  call, with ``metadata["sidechain"] = True`` on each spliced message. A file that holds
  *only* sidechain records (a subagent's own log) is read as that subagent's
  conversation (``metadata["subagent_log"] = True``).
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

Accounting: the import report (`tools.formats.accounting`) counts every record read,
every record merged into another message, the messages of abandoned branches and
sidechains kept in metadata, the non-conversation records by kind, and the placeholder
results it adds.

Errors: a line that is not JSON raises `FormatError` at ``line N``; a record of the
wrong shape at ``line N: message.content[0].type`` (the JSON path inside the record).
With ``skip_bad_lines`` such a line is skipped instead and listed in the report.
Content blocks are read as the Anthropic API writes them: text, image and tool_result
in user messages; text, thinking, redacted_thinking and tool_use in assistant
messages; text, image and ``tool_reference`` (kept as ``[tool reference] name`` text)
inside tool results. Any other block type is an error at its location rather than
being dropped; unknown *keys* on known blocks are kept in the message's
``metadata["block_extras"]``. The one exception is a cut-off *last* line with no
newline after it (an interrupted write, common when Claude Code is killed): it is
skipped, ``metadata["truncated_last_line"]`` is True, and the report says so.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tools.errors import FormatError
from tools.formats.accounting import ImportTally, SkippedLine, count_blocks, report_of
from tools.formats.base import (
    Importer,
    JSONSyntaxError,
    LoadOptions,
    format_error_from_validation,
    parse_json_bounded,
    read_bounded,
    read_json,
)
from tools.formats.common import split_lines
from tools.settings import parse_limits
from tools.transcript import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolCallStatus,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

M = TypeVar("M", bound=BaseModel)

#: Record types that are turned into messages.
CONVERSATION_TYPES = frozenset({"user", "assistant"})

#: Names of the tool that starts a subagent (renamed from Task to Agent in 2.1).
SUBAGENT_TOOLS = frozenset({"Task", "Agent"})

#: Schema given to tools inferred from ``tool_use`` names: any object is accepted.
INFERRED_TOOL_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": True}

#: The result Claude Code sends for a call that got none (it was interrupted).
INTERRUPTED_RESULT = "[Request interrupted by user for tool use]"

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

# Texts Claude Code writes as the result of a call that did not run.
_REJECTED_PREFIXES = (
    "The user doesn't want to proceed with this tool use",
    "The user doesn't want to take this action",
)
_DENIED = re.compile(r"^Permission to use \S+.* has been denied")
_INTERRUPTED = "[Request interrupted by user"
# Progress records that show a call was running (so a refusal of it is an interruption).
_RUNNING_PROGRESS = frozenset({"bash_progress", "mcp_progress", "agent_progress", "waiting_for_task"})


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


class _ToolReference(_Vendor):
    """A tool named by a ToolSearch result (2.1+)."""

    type: Literal["tool_reference"]
    tool_name: str


class _ToolUse(_Vendor):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


_ResultItem = Annotated[_Text | _Image | _ToolReference, Field(discriminator="type")]


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

    uuid: str | None = None
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
    sourceToolAssistantUUID: str | None = None


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
    tally: ImportTally
    skip_bad_lines: bool = False
    entries: list[_Entry] = field(default_factory=list)
    nodes: dict[str, _Entry] = field(default_factory=dict)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    system: list[_Entry] = field(default_factory=list)
    queue_operations: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    missing_parents: list[str] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    """Ids of tool calls that reported progress while running."""
    agent_calls: dict[str, str] = field(default_factory=dict)
    """Subagent id -> the Task call that started it (from ``agent_progress`` records)."""


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


def _read_records(items: Sequence[tuple[int, Any]], session: _Session) -> None:
    """Validate every record and sort it into the session: tree nodes (anything with a
    uuid), summaries, system records, queue operations and skipped-type counts. With
    ``skip_bad_lines`` a record that does not validate is skipped and reported."""
    source = session.source
    previous: _Entry | None = None
    for line, obj in items:
        try:
            entry = _read_entry(line, obj, source, previous)
            if entry.uuid is not None:
                seen = session.nodes.get(entry.uuid)
                if seen is not None and seen.raw != obj:
                    raise FormatError(
                        f"uuid {entry.uuid!r} was already used by the different record on line {seen.line}",
                        source=source,
                        location=f"line {line}: uuid",
                    )
            summary = _validate(_SummaryRecord, obj, source=source, line=line) if entry.kind == "summary" else None
        except FormatError as err:
            if not session.skip_bad_lines:
                raise
            session.tally.skip_line(line, f"{err.location}: {err.detail}", json.dumps(obj, ensure_ascii=False))
            continue
        if entry.uuid is not None:
            if entry.uuid in session.nodes:  # the same record written twice: harmless, counted
                session.duplicates += 1
                continue
            session.nodes[entry.uuid] = entry
        if entry.uuid is not None and entry.kind in ("user", "assistant", "system"):
            previous = entry
        session.entries.append(entry)
        if entry.kind != "user" and entry.kind != "assistant":
            session.tally.skip_record(entry.kind)
        if entry.kind == "system":
            session.system.append(entry)
        elif summary is not None:
            item: dict[str, Any] = {"summary": summary.summary, "leafUuid": summary.leafUuid, "line": line}
            if summary.model_extra:
                item["extra"] = dict(summary.model_extra)
            session.summaries.append(item)
        elif entry.kind == "queue-operation":
            session.queue_operations.append({"line": line, "record": obj})
        elif not entry.conversational:
            session.skipped[entry.kind] += 1
            if entry.kind == "progress":
                _note_progress(obj, session)


def _note_progress(obj: dict[str, Any], session: _Session) -> None:
    """What a progress record says about calls: that one was running, or which Task
    call started a subagent."""
    data = obj.get("data")
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    tool_use_id = obj.get("toolUseID")
    parent_tool = obj.get("parentToolUseID")
    if kind in _RUNNING_PROGRESS and isinstance(tool_use_id, str):
        session.running.add(tool_use_id)
    if kind == "agent_progress" and isinstance(data.get("agentId"), str):
        caller = parent_tool if isinstance(parent_tool, str) else tool_use_id
        if isinstance(caller, str):
            session.agent_calls.setdefault(data["agentId"], caller)


def _read_entry(line: int, obj: Any, source: str, previous: _Entry | None) -> _Entry:
    """One record with its place in the tree: its uuid, its parent (``parentUuid``, or
    ``logicalParentUuid`` across a compaction, or the record before it in the file when
    the record has no ``parentUuid`` key) and whether it is a sidechain record."""
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
        if entry.uuid is None:
            entry.uuid = f"line:{line}"
            placed.uuid = entry.uuid
        if "parentUuid" not in obj and "logicalParentUuid" not in obj and previous is not None:
            entry.parent = previous.uuid  # no link recorded: the file order is the thread
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


def _fold_parallel_branches(
    chain: list[_Entry], leaves: Sequence[_Entry], session: _Session, inside: Callable[[_Entry], bool]
) -> tuple[list[_Entry], list[_Entry]]:
    """Fold back into the thread the branches that parallel tool calls create: a branch
    whose conversational records are all more blocks of an assistant message on the
    thread (same ``message.id``) or results of calls on the thread. Returns the records
    to add (in branch order) and the leaves of the branches that remain real forks."""
    on_thread = {e.uuid for e in chain}
    message_ids = {e.record.message.id for e in chain if isinstance(e.record, _AssistantRecord) and e.record.message.id}
    calls = {
        b.id
        for e in chain
        if isinstance(e.record, _AssistantRecord)
        for b in e.record.message.content
        if isinstance(b, _ToolUse)
    }
    folded: list[_Entry] = []
    forks: list[_Entry] = []
    for leaf in leaves:
        branch = _branch_off(leaf, session, on_thread, inside)
        branch_ids = set(message_ids)
        branch_calls = set(calls)
        debris = True
        for entry in branch:
            record = entry.record
            if record is None:
                continue
            if isinstance(record, _AssistantRecord):
                if record.message.id is None or record.message.id not in branch_ids:
                    debris = False
                    break
                branch_calls.update(b.id for b in record.message.content if isinstance(b, _ToolUse))
            else:
                results = [b for b in record.message.content if isinstance(b, _ToolResult)]
                if record.isMeta or not results or any(r.tool_use_id not in branch_calls for r in results):
                    debris = False
                    break
                if any(not isinstance(b, _ToolResult) for b in record.message.content):
                    debris = False
                    break
        if not debris or not any(e.conversational for e in branch):
            forks.append(leaf)
            continue
        for entry in branch:
            if entry.uuid not in on_thread:
                on_thread.add(entry.uuid)
                folded.append(entry)
        message_ids = branch_ids
        calls = branch_calls
    return folded, forks


def _branch_off(
    leaf: _Entry, session: _Session, on_thread: set[str | None], inside: Callable[[_Entry], bool]
) -> list[_Entry]:
    """The records from where `leaf`'s branch leaves the thread down to `leaf` (walking
    up only until the thread, so folding many parallel branches of a long session stays
    linear in their length)."""
    branch: list[_Entry] = []
    seen: set[str | None] = set()
    node: _Entry | None = leaf
    while node is not None and node.uuid not in on_thread and node.uuid not in seen and inside(node):
        seen.add(node.uuid)
        branch.append(node)
        node = session.nodes.get(node.parent) if node.parent is not None else None
    branch.reverse()
    return branch


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
        if extra := _extras(item):
            block_extras[where] = extra
        if isinstance(item, _Text):
            items.append(TextBlock(text=item.text))
        elif isinstance(item, _ToolReference):
            block_extras[where] = {**block_extras.get(where, {}), "tool_reference": item.tool_name}
            items.append(TextBlock(text=f"[tool reference] {item.tool_name}"))
        else:
            items.append(_convert_image(item, where, block_extras))
    return ToolResultBlock(tool_use_id=block.tool_use_id, content=items, is_error=bool(block.is_error))


def _convert_image(image: _Image, where: str, block_extras: dict[str, Any]) -> ImageBlock:
    if extra := _extras(image.source):
        block_extras[f"{where}.source"] = extra
    src = image.source
    return ImageBlock(media_type=src.media_type, data=src.data, url=src.url)


def _call_status(result: ToolResultBlock, record: _UserRecord, running: set[str]) -> ToolCallStatus:
    """What became of the call a result answers, from what Claude Code recorded."""
    structured = record.toolUseResult
    if isinstance(structured, dict) and structured.get("interrupted") is True:
        return "interrupted"
    text = result.text.lstrip()
    if text.startswith(_INTERRUPTED):
        return "interrupted"
    refused = (
        structured == "User rejected tool use"
        or "toolDenialKind" in (record.model_extra or {})
        or text.startswith(_REJECTED_PREFIXES)
        or bool(_DENIED.match(text))
    )
    if refused:
        return "interrupted" if result.tool_use_id in running else "rejected"
    return "error" if result.is_error else "ok"


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
            "source_tool_assistant_uuid": record.sourceToolAssistantUUID,
        }
        if structured is not None and len(results) == 1:
            facts["tool_use_results"] = {results[0].tool_use_id: structured}
        else:
            facts["tool_use_result"] = structured
    return {key: value for key, value in facts.items() if value is not None}


@dataclass
class _Slot:
    """A message of the thread and, for an assistant message, the user message of the
    results that answer its calls."""

    message: Message
    results: Message | None = None


class _Builder:
    """Builds the messages of one thread (or branch, or sidechain) from its records.

    Records of one API message (same ``message.id``) are merged wherever they lie;
    tool-result records go to the results message of the assistant message that made
    their calls. `positions` receives, for each non-conversational record (by line),
    the slot it precedes, turned into a message index by `messages`."""

    def __init__(self, session: _Session, session_info: dict[str, Any]) -> None:
        self.session = session
        self.session_info = session_info
        self.tally = session.tally
        self.slots: list[_Slot] = []
        self.by_id: dict[str, _Slot] = {}
        self.owner: dict[str, _Slot] = {}
        self.positions: dict[int, int] = {}

    def add(self, entry: _Entry) -> None:
        record = entry.record
        if record is None:
            self.positions[entry.line] = len(self.slots)
            return
        self._count(record)
        if isinstance(record, _AssistantRecord):
            self._assistant(record, entry.line)
        else:
            self._user(record, entry.line)

    def _count(self, record: _ConversationRecord) -> None:
        units = Counter(_UNIT[b.type] for b in record.message.content)
        self.tally.count(messages=1, **units)

    def _assistant(self, record: _AssistantRecord, line: int) -> None:
        mid = record.message.id
        slot = self.by_id.get(mid) if mid is not None else None
        if slot is None:
            slot = _Slot(self._new(record, line))
            self.slots.append(slot)
            if mid is not None:
                self.by_id[mid] = slot
        else:
            self._append(slot.message, record, line)
        for block in slot.message.tool_uses:
            self.owner.setdefault(block.id, slot)

    def _user(self, record: _UserRecord, line: int) -> None:
        results = [b for b in record.message.content if isinstance(b, _ToolResult)]
        owners = {id(self.owner[r.tool_use_id]) for r in results if r.tool_use_id in self.owner}
        if results and not record.isMeta and len(owners) == 1 and all(r.tool_use_id in self.owner for r in results):
            slot = self.owner[results[0].tool_use_id]
            if slot.results is None:
                slot.results = self._new(record, line)
            else:
                self._append(slot.results, record, line)
            return
        last = self.slots[-1] if self.slots else None
        if (
            last is not None
            and results
            and not record.isMeta
            and last.message.role == "user"
            and last.message.content
            and all(isinstance(b, ToolResultBlock) for b in last.message.content)
            and all(isinstance(b, _ToolResult) for b in record.message.content)
            and bool(last.message.metadata.get("sidechain")) == record.isSidechain
        ):
            self._append(last.message, record, line)
            return
        self.slots.append(_Slot(self._new(record, line)))

    def _new(self, record: _ConversationRecord, line: int) -> Message:
        extras: dict[str, Any] = {}
        content = [_convert_block(b, i, extras) for i, b in enumerate(record.message.content)]
        self._mark(content, record)
        meta: dict[str, Any] = {"uuids": [record.uuid], "lines": [line], "timestamp": record.timestamp}
        meta.update(_record_facts(record))
        meta.update(_envelope_metadata(record, self.session_info))
        if extras:
            meta["block_extras"] = extras
        message_id = record.message.id if isinstance(record, _AssistantRecord) else record.uuid
        return Message(role=record.message.role, content=content, id=message_id, metadata=meta)

    def _append(self, message: Message, record: _ConversationRecord, line: int) -> None:
        """Add one more record's blocks to `message`. Dict-valued facts are merged; for
        the others the last record wins (Claude Code writes the final stop_reason and
        usage on the last block's line). A block already in the message (a tool call or
        result with the same id, written twice) is not added again."""
        self.tally.merge(messages=1)
        meta = message.metadata
        extras: dict[str, Any] = meta.get("block_extras", {})
        have_calls = {b.id for b in message.tool_uses}
        have_results = {b.tool_use_id for b in message.tool_results}
        for vendor in record.message.content:
            if (isinstance(vendor, _ToolUse) and vendor.id in have_calls) or (
                isinstance(vendor, _ToolResult) and vendor.tool_use_id in have_results
            ):
                self.tally.merge(**{_UNIT[vendor.type]: 1})
                continue
            block = _convert_block(vendor, len(message.content), extras)
            self._mark([block], record)
            message.content.append(block)
        meta["uuids"].append(record.uuid)
        meta["lines"].append(line)
        for key, value in {**_record_facts(record), **_envelope_metadata(record, self.session_info)}.items():
            if isinstance(value, dict) and isinstance(meta.get(key), dict) and key != "usage":
                meta[key] = {**meta[key], **value}
            else:
                meta[key] = value
        if extras:
            meta["block_extras"] = extras

    def _mark(self, blocks: list[ContentBlock], record: _ConversationRecord) -> None:
        if isinstance(record, _UserRecord):
            for block in blocks:
                if isinstance(block, ToolResultBlock):
                    block.status = _call_status(block, record, self.session.running)

    def messages(self, *, placeholders: bool = True) -> tuple[list[Message], dict[int, int]]:
        """The thread's messages, each assistant message followed by its results (in the
        order of its calls), and the positions of non-conversational records as message
        indexes. With `placeholders`, a client call left unanswered by a conversation
        that went on gets an ``interrupted`` placeholder result."""
        out: list[Message] = []
        starts: list[int] = []
        for n, slot in enumerate(self.slots):
            starts.append(len(out))
            out.append(slot.message)
            if placeholders and slot.message.role == "assistant" and n + 1 < len(self.slots):
                self._answer_unanswered(slot)
            if slot.results is not None:
                _order_results(slot.message, slot.results)
                out.append(slot.results)
        starts.append(len(out))
        return out, {line: starts[i] for line, i in self.positions.items()}

    def _answer_unanswered(self, slot: _Slot) -> None:
        answered = {r.tool_use_id for r in slot.results.tool_results} if slot.results is not None else set()
        missing = [u for u in slot.message.tool_uses if u.side == "client" and u.id not in answered]
        if not missing:
            return
        if slot.results is None:
            slot.results = Message(
                role="user", content=[], id=None, metadata={"placeholder_results": True, "uuids": [], "lines": []}
            )
            self.tally.synthesize("a user message to hold placeholder results", {"messages": 1})
        for use in missing:
            slot.results.content.append(
                ToolResultBlock(
                    tool_use_id=use.id,
                    content=[TextBlock(text=INTERRUPTED_RESULT)],
                    is_error=True,
                    status="interrupted",
                )
            )
        slot.results.metadata.setdefault("placeholder_for", []).extend(u.id for u in missing)
        self.tally.synthesize(
            "placeholder results for calls the log never answered (Claude Code sends the same on resume)",
            {"tool_results": len(missing)},
        )
        self.tally.warn(
            f"{len(missing)} tool call(s) got no result in the log although the conversation went on "
            f"({', '.join(u.id for u in missing)}); they are marked interrupted with a placeholder result"
        )


_UNIT: dict[str, str] = {
    "text": "text",
    "thinking": "thinking",
    "redacted_thinking": "thinking",
    "image": "images",
    "tool_use": "tool_calls",
    "tool_result": "tool_results",
}


def _order_results(assistant: Message, results: Message) -> None:
    """Results in the order of the calls they answer; anything else after them."""
    order = {u.id: i for i, u in enumerate(assistant.tool_uses)}
    late = len(order)
    keyed = [
        (order.get(b.tool_use_id, late) if isinstance(b, ToolResultBlock) else late + 1, n, b)
        for n, b in enumerate(results.content)
    ]
    keyed.sort(key=lambda item: (item[0], item[1]))
    if [n for _, n, _ in keyed] != list(range(len(keyed))):
        results.content = [b for _, _, b in keyed]
        # block_extras are keyed by position: renumber them with the blocks.
        extras = results.metadata.get("block_extras")
        if isinstance(extras, dict):
            moved: dict[str, Any] = {}
            new_index = {old: new for new, (_, old, _) in enumerate(keyed)}
            for key, value in extras.items():
                head, dot, rest = key.partition(".")
                if head.isdigit() and int(head) in new_index:
                    moved[str(new_index[int(head)]) + dot + rest] = value
                else:
                    moved[key] = value
            results.metadata["block_extras"] = moved


def _build_messages(
    entries: Sequence[_Entry], session: _Session, session_info: dict[str, Any]
) -> tuple[list[Message], dict[int, int]]:
    builder = _Builder(session, session_info)
    for entry in entries:
        builder.add(entry)
    return builder.messages()


def _dump(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in messages]


# --------------------------------------------------------------------------------------
# Sidechains (Task subagents).


@dataclass
class _Sidechain:
    root_uuid: str | None
    records: int
    messages: list[Message]
    abandoned: int
    tool_use_id: str | None = None
    agent_id: str | None = None
    path: str | None = None
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
        inside = _member_of({e.uuid for e in members})
        chain, leaves = _pick_thread(conversational, session, inside)
        folded, forks = _fold_parallel_branches(chain, leaves, session, inside)
        messages, _ = _build_messages([*chain, *folded], session, session_info)
        out.append(_Sidechain(root_uuid=roots[key].uuid, records=len(members), messages=messages, abandoned=len(forks)))
        taken = {e.uuid for e in [*chain, *folded]}
        for leaf in forks:
            branch = [e for e in _chain(leaf, session, inside) if e.uuid not in taken]
            taken.update(e.uuid for e in branch)
            fork_messages, _ = _build_messages(branch, session, session_info)
            session.tally.keep("abandoned branches of sidechains", count_blocks(fork_messages))
    return out


def _member_of(ids: set[str | None]) -> Callable[[_Entry], bool]:
    return lambda entry: entry.uuid in ids


def _place_sidechains(sidechains: list[_Sidechain], main: list[Message], agent_calls: dict[str, str]) -> None:
    """Find where each sidechain belongs in the main thread: before the result of the
    Task call that started it — found by its agent id (the call's structured result or
    an ``agent_progress`` record), else by the call's ``prompt`` input being the
    sidechain's first user text — else before the first later message by timestamp,
    else at the end."""
    calls: dict[str, tuple[int, str]] = {}
    call_index: dict[str, int] = {}
    for i, msg in enumerate(main):
        for use in msg.tool_uses:
            call_index[use.id] = i
            prompt = use.input.get("prompt")
            if isinstance(prompt, str):
                calls.setdefault(prompt, (i, use.id))
    results: dict[str, int] = {}
    by_agent = dict(agent_calls)
    for i, msg in enumerate(main):
        for result in msg.tool_results:
            results.setdefault(result.tool_use_id, i)
        structured = msg.metadata.get("tool_use_results")
        if isinstance(structured, dict):
            for tool_use_id, value in structured.items():
                if isinstance(value, dict) and isinstance(value.get("agentId"), str):
                    by_agent.setdefault(value["agentId"], tool_use_id)
    for side in sidechains:
        first = side.messages[0] if side.messages else None
        tool_use_id = by_agent.get(side.agent_id) if side.agent_id is not None else None
        if tool_use_id is None and side.tool_use_id is not None:
            tool_use_id = side.tool_use_id
        if tool_use_id is None and first is not None and first.role == "user" and first.text in calls:
            tool_use_id = calls[first.text][1]
        if tool_use_id is not None and tool_use_id in call_index:
            side.tool_use_id = tool_use_id
            side.insert_at = results.get(tool_use_id, call_index[tool_use_id] + 1)
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
        messages, _ = _build_messages(branch, session, session_info)
        session.tally.keep("abandoned branches", count_blocks(messages))
        out.append(
            {
                "leaf_uuid": leaf.uuid,
                "fork_uuid": fork,
                "records": len(branch),
                "messages": _dump(messages),
            }
        )
        main_ids.update(e.uuid for e in branch if e.uuid is not None)
    return out


@dataclass(frozen=True)
class SubagentFile:
    """A subagent's own log found next to a session, already read."""

    path: str
    agent_id: str | None
    transcript: Transcript


def _build(
    items: Sequence[tuple[int, Any]],
    *,
    source: str,
    include_sidechains: bool,
    truncated: bool,
    tally: ImportTally,
    skip_bad_lines: bool = False,
    subagent_files: Sequence[SubagentFile] = (),
) -> Transcript:
    session = _Session(source=source, tally=tally, skip_bad_lines=skip_bad_lines)
    _read_records(items, session)
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

    if len(main_members) > 1 and all(e.parent is None for e in main_members):
        # Every record is a root: the log has no links (a converted or very old log), so
        # the file order is the thread.
        for before, after in itertools.pairwise(main_members):
            after.parent = before.uuid
        tally.note("no record names a parent (parentUuid), so the conversation was read in file order")

    def everything(entry: _Entry) -> bool:
        return True

    chain, leaves = _pick_thread(main_members, session, everything)
    folded, abandoned_leaves = _fold_parallel_branches(chain, leaves, session, everything)
    # The chain ends at a conversational leaf, so it holds at least one record.
    first = next(e.record for e in chain if e.record is not None)
    session_info: dict[str, Any] = {}
    for source_key, meta_key in _SESSION_FIELDS.items():
        value = getattr(first, source_key)
        if value is not None:
            session_info[meta_key] = value

    main, positions = _build_messages([*chain, *folded], session, session_info)
    main_ids = {e.uuid for e in [*chain, *folded] if e.uuid is not None}
    if folded:
        tally.note(
            f"{sum(1 for e in folded if e.conversational)} record(s) of parallel tool calls branched off the "
            "parentUuid chain and were folded back into their messages"
        )

    abandoned = _abandoned_branches(abandoned_leaves, session, main_ids, session_info)
    sidechains = [] if subagent_log else _sidechains(session, main_ids, session_info)
    in_file_roots = {side.root_uuid for side in sidechains}
    for sub in subagent_files:
        root = sub.transcript.metadata.get("first_uuid")
        if root is not None and root in in_file_roots:
            tally.note(f"{sub.path} repeats a sidechain already in the session file; it was not read twice")
            continue
        sub_report = report_of(sub.transcript)
        if sub_report is not None:
            tally.count(**sub_report.read.nonzero())
            tally.merge(**sub_report.merged.nonzero())
            for where, counts in sub_report.kept.items():
                tally.keep(f"subagent files: {where}", counts)
            for why, counts in sub_report.synthesized.items():
                tally.synthesize(why, counts.nonzero())
            for warning in sub_report.warnings:
                tally.warn(f"(subagent {sub.path}) {warning.message}", location=warning.location)
        sidechains.append(
            _Sidechain(
                root_uuid=root if isinstance(root, str) else None,
                records=sum(len(m.metadata.get("uuids", [])) for m in sub.transcript.messages),
                messages=[m.model_copy(deep=True) for m in sub.transcript.messages],
                abandoned=int(sub.transcript.metadata.get("abandoned_branch_count", 0)),
                agent_id=sub.agent_id,
                path=sub.path,
            )
        )
    _place_sidechains(sidechains, main, session.agent_calls)
    sidechain_meta: list[dict[str, Any]] = []
    for side in sidechains:
        item: dict[str, Any] = {"records": side.records, "first_uuid": side.root_uuid, "tool_use_id": side.tool_use_id}
        if side.agent_id is not None:
            item["agent_id"] = side.agent_id
        if side.path is not None:
            item["path"] = side.path
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
            tally.keep("sidechains", count_blocks(side.messages))
    unlinked = [i for i, side in enumerate(sidechains) if side.tool_use_id is None]
    if unlinked:
        tally.warn(f"{len(unlinked)} subagent conversation(s) could not be linked to the Task call that started them")

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
        "harness": "claude-code",
        "leaf_uuid": chain[-1].uuid,
        "first_uuid": chain[0].uuid,
        "summaries": session.summaries,
        "system_records": system_records,
        "queue_operations": session.queue_operations,
        "skipped_records": dict(session.skipped),
        "sidechain_count": len(sidechains),
        "sidechains": sidechain_meta,
        "sidechain_of_tool_use": {s.tool_use_id: i for i, s in enumerate(sidechains) if s.tool_use_id is not None},
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
        tally.note(f"{session.duplicates} record(s) were written twice; each was read once")
    if session.missing_parents:
        metadata["missing_parents"] = sorted(set(session.missing_parents))
        tally.warn(
            f"{len(metadata['missing_parents'])} parentUuid(s) point at records not in the file; the thread starts "
            "after the gap"
        )
    if abandoned:
        tally.note(f"{len(abandoned)} abandoned branch(es) (edited or rewound prompts) are kept in metadata")
    if truncated:
        tally.warn("the last line was cut off mid-write and skipped (an interrupted write)")
    for note in _NOTES:
        tally.note(note)
    transcript = Transcript(
        system=None, tools=_infer_tools(messages), messages=messages, model=model, metadata=metadata
    )
    return tally.finish(transcript)


# --------------------------------------------------------------------------------------
# Public entry points.


def parse(
    data: Any,
    *,
    source: str = "<input>",
    include_sidechains: bool = False,
    skip_bad_lines: bool = False,
) -> Transcript:
    """A transcript from already-parsed records (a list of dicts, one per line; errors
    name ``line N`` counting from 1). `include_sidechains` splices subagent
    conversations into the messages instead of keeping them in metadata only."""
    if not isinstance(data, list):
        raise FormatError(
            f"expected a list of Claude Code records, got {type(data).__name__}", source=source, location="$"
        )
    if not data:
        raise FormatError("no records: expected a Claude Code session log", source=source)
    tally = ImportTally(format="claude-code", source=source)
    return _build(
        list(enumerate(data, start=1)),
        source=source,
        include_sidechains=include_sidechains,
        truncated=False,
        tally=tally,
        skip_bad_lines=skip_bad_lines,
    )


def parse_lines(
    lines: Iterable[str],
    *,
    source: str = "<input>",
    include_sidechains: bool = False,
    skip_bad_lines: bool = False,
    subagent_files: Sequence[SubagentFile] = (),
) -> Transcript:
    """A transcript from the lines of a session log, as read from the file (each with
    its newline). Blank lines are ignored. A last line that does not parse and has no
    newline after it is an interrupted write: it is skipped and
    ``metadata["truncated_last_line"]`` is set; any other bad line is an error, or, with
    `skip_bad_lines`, skipped and listed in the import report."""
    all_lines = list(lines)
    tally = ImportTally(format="claude-code", source=source)
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
                excerpt = text.strip()[:120]
                tally.skipped_lines.append(
                    SkippedLine(line=line, reason="cut off mid-write (no newline after the last line)", excerpt=excerpt)
                )
                continue
            if skip_bad_lines:
                tally.skip_line(line, f"invalid JSON: {exc.reason} (column {exc.column})", text)
                continue
            raise FormatError(
                f"invalid JSON: {exc.reason} (column {exc.column}); expected one JSON record per line "
                "(pass --skip-bad-lines to read the rest of the file)",
                source=source,
                location=f"line {line}",
            ) from None
        except FormatError as err:  # over a parse limit (depth, integer size, surrogates)
            if not skip_bad_lines:
                raise
            tally.skip_line(line, err.detail, text)
    if not items:
        what = "its only line is cut off (an interrupted write)" if truncated else "it is empty"
        if tally.skipped_lines and not truncated:
            what = f"every line was skipped as bad ({len(tally.skipped_lines)})"
        raise FormatError(f"no records: {what}; expected a Claude Code session log", source=source)
    return _build(
        items,
        source=source,
        include_sidechains=include_sidechains,
        truncated=truncated,
        tally=tally,
        skip_bad_lines=skip_bad_lines,
        subagent_files=subagent_files,
    )


def parse_bytes(
    data: bytes,
    *,
    source: str = "<input>",
    include_sidechains: bool = False,
    skip_bad_lines: bool = False,
    subagent_files: Sequence[SubagentFile] = (),
) -> Transcript:
    """A transcript from a session log's bytes (see `split_lines` and `parse_lines`)."""
    return parse_lines(
        split_lines(data, source=source),
        source=source,
        include_sidechains=include_sidechains,
        skip_bad_lines=skip_bad_lines,
        subagent_files=subagent_files,
    )


def _sniff(path: Path, data: Any) -> bool:
    """A whole-file JSON value that is one Claude Code user/assistant record, or the
    first records of a ``.jsonl`` log (a list) of which some are Claude Code records."""
    if isinstance(data, list):
        return any(_looks_like_record(item, any_kind=True) for item in data)
    return _looks_like_record(data, any_kind=False)


def _looks_like_record(data: Any, *, any_kind: bool) -> bool:
    if not isinstance(data, dict) or isinstance(data.get("payload"), dict):
        return False
    kind = data.get("type")
    if not isinstance(kind, str):
        return False
    if kind in CONVERSATION_TYPES:
        return isinstance(data.get("message"), dict) and ("sessionId" in data or "parentUuid" in data or "uuid" in data)
    return any_kind and (
        kind in {"summary", "file-history-snapshot", "queue-operation"}
        or (kind in {"system", "progress"} and "sessionId" in data)
    )


def refusal(path: Path, data: Any) -> str:
    """Why `_sniff` refused, for the detection error."""
    if isinstance(data, list):
        if not data:
            return "the file holds no records"
        return "no line is a Claude Code record (a JSON object with type 'user'/'assistant', a message and a uuid)"
    if not isinstance(data, dict):
        return "expected Claude Code records: JSON objects, one per line"
    if data.get("type") not in CONVERSATION_TYPES:
        return f"'type' is {_show(data.get('type'))}, not 'user' or 'assistant'"
    return "a Claude Code record has 'message' and 'sessionId'/'parentUuid'/'uuid'"


_AGENT_FILE = re.compile(r"^agent-(?P<id>[A-Za-z0-9_.-]+)\.jsonl$")


def find_subagent_files(session_path: Path) -> list[Path]:
    """The subagent logs that belong to a session: ``<session-id>/subagents/agent-*.jsonl``
    (2.1+), and ``agent-*.jsonl`` beside the session whose records name its session id
    (earlier versions). A subagent's own log has none."""
    if _AGENT_FILE.match(session_path.name):
        return []
    found: list[Path] = []
    nested = session_path.with_suffix("") / "subagents"
    if nested.is_dir():
        found.extend(sorted(p for p in nested.iterdir() if _AGENT_FILE.match(p.name) and p.is_file()))
    session_id = session_path.stem
    for candidate in sorted(session_path.parent.glob("agent-*.jsonl")):
        if candidate in found or not candidate.is_file() or not _AGENT_FILE.match(candidate.name):
            continue
        try:
            with candidate.open("rb") as handle:
                head = handle.readline(64 * 1024)
        except OSError:
            continue
        try:
            first = parse_json_bounded(head.decode("utf-8", errors="replace"), source=str(candidate))
        except FormatError:
            continue
        if isinstance(first, dict) and first.get("sessionId") == session_id:
            found.append(candidate)
    return found


def _read_subagents(session_path: Path, options: LoadOptions) -> list[SubagentFile]:
    out: list[SubagentFile] = []
    for path in find_subagent_files(session_path):
        match = _AGENT_FILE.match(path.name)
        data = read_bounded(path, int(parse_limits().max_transcript_bytes), what="a subagent log")
        transcript = parse_bytes(data, source=str(path), skip_bad_lines=options.skip_bad_lines)
        out.append(SubagentFile(path=str(path), agent_id=match.group("id") if match else None, transcript=transcript))
    return out


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
            tally = ImportTally(format="claude-code", source=source)
            return _build([(1, whole)], source=source, include_sidechains=False, truncated=False, tally=tally)
    data = read_bounded(path, int(parse_limits().max_transcript_bytes), what="a Claude Code session log (.jsonl)")
    return parse_bytes(
        data, source=source, skip_bad_lines=options.skip_bad_lines, subagent_files=_read_subagents(path, options)
    )


IMPORTER = Importer(
    name="claude-code",
    description="Claude Code session log (~/.claude/projects/<project>/<session-id>.jsonl), with its subagent logs",
    sniff=_sniff,
    load=_load,
    markers=frozenset(
        {
            "parentUuid",
            "sessionId",
            "uuid",
            "isSidechain",
            "userType",
            "toolUseResult",
            "requestId",
            "type:user",
            "type:assistant",
            "type:summary",
            "type:file-history-snapshot",
            "type:progress",
        }
    ),
    refusal=refusal,
    line_based=True,
)

__all__ = [
    "IMPORTER",
    "INTERRUPTED_RESULT",
    "SubagentFile",
    "find_subagent_files",
    "parse",
    "parse_bytes",
    "parse_lines",
    "refusal",
]
