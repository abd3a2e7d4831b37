"""The normalized transcript every part of the system reads.

Importers (`tools.formats`) turn vendor formats into a `Transcript`; edits, resampling
and reports address places in it with `Span`s. The model follows the Anthropic
Messages shape (tool results live in user messages) because it is the richest of the
formats we read: OpenAI's ``tool`` role and Inspect's ``ChatMessageTool`` map onto it
without loss.

Turn numbering: turn *k* is the *k*-th assistant message (0-based). `prefix(k)` is
the context the subject saw when it produced turn *k*.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.errors import TranscriptError

SCHEMA_VERSION = 1

ToolCallStatus = Literal["ok", "error", "rejected", "interrupted"]
"""What became of a tool call, as typed data on its `ToolResultBlock`:

* ``ok`` — it ran and returned normally;
* ``error`` — it ran and failed (``is_error``);
* ``rejected`` — it never ran: the user or a permission policy refused it (Claude Code's
  "The user doesn't want to proceed with this tool use", an OpenHands ``user_rejected``
  observation, a Codex approval denial);
* ``interrupted`` — it was cancelled while running (the user pressed Esc / Ctrl-C); it may
  have had partial effects, and its recorded output is incomplete.

Replay executes only ``ok`` and ``error`` calls: a ``rejected`` or ``interrupted`` call is
skipped, because what it did (nothing, or an unknown part) cannot be reproduced.
"""

ToolSide = Literal["client", "server"]
"""Who executed a tool call. ``client``: the agent harness ran it (the tools a sandbox
replays). ``server``: the model provider ran it inside the API call (Anthropic
``server_tool_use`` / ``mcp_tool_use`` with its ``*_tool_result``, OpenAI hosted tools such
as ``web_search_call``); its result is part of the same assistant message, and replay
answers it from the recorded result or the simulated backend, never by running it."""

REPLAYABLE_STATUSES: frozenset[str] = frozenset({"ok", "error"})
"""Statuses of calls that really ran to completion and can be re-executed."""


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class TextBlock(_Block):
    """Plain visible text."""

    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(_Block):
    """Chain of thought (reasoning). `redacted` marks content the provider withheld."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str | None = None
    redacted: bool = False


class ImageBlock(_Block):
    """An image, by inline base64 data or by URL. Kept so nothing is silently dropped."""

    type: Literal["image"] = "image"
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ToolUseBlock(_Block):
    """A tool call made by the assistant. `side` says who executed it (see `ToolSide`)."""

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    side: ToolSide = "client"


ToolResultItem = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(_Block):
    """The output of a tool call, addressed to it by `tool_use_id`.

    `is_error` is what the model was told (the API flag); `status` is what happened to
    the call (see `ToolCallStatus`). A result marked ``is_error`` with the default status
    gets status ``error``. A ``server`` result lives in the assistant message that made
    the call, right after it."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: list[ToolResultItem] = Field(default_factory=list)
    is_error: bool = False
    status: ToolCallStatus = "ok"
    side: ToolSide = "client"

    @model_validator(mode="after")
    def _error_status(self) -> ToolResultBlock:
        if self.is_error and self.status == "ok":
            self.status = "error"
        return self

    @property
    def text(self) -> str:
        """The result's text items joined by newlines (images are skipped)."""
        return "\n".join(item.text for item in self.content if isinstance(item, TextBlock))


class CompactionBlock(_Block):
    """A provider-side context compaction (Anthropic ``compaction`` blocks, OpenAI
    Responses ``compaction`` items): from here on the model saw `summary` (or, when only
    `encrypted_content` is recorded, an opaque summary) instead of the messages before it.
    The earlier messages stay in the transcript because they are what happened; the
    block marks where the model's view was cut. `signature` / `encrypted_content` are
    the provider's opaque payloads, sent back unchanged on export."""

    type: Literal["compaction"] = "compaction"
    summary: str | None = None
    encrypted_content: str | None = None
    signature: str | None = None


ContentBlock = Annotated[
    TextBlock | ThinkingBlock | ImageBlock | ToolUseBlock | ToolResultBlock | CompactionBlock,
    Field(discriminator="type"),
]


class Message(BaseModel):
    """One message. `metadata` keeps source facts that have no field here (e.g. an
    OpenAI mid-conversation system message is stored as a user message with
    ``metadata["source_role"] = "system"`` so exporters can restore it)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: list[ContentBlock] = Field(default_factory=list)
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """Visible text blocks joined by newlines (no thinking, no tool traffic)."""
        return "\n".join(b.text for b in self.content if isinstance(b, TextBlock))

    @property
    def thinking(self) -> str:
        """Thinking blocks joined by newlines."""
        return "\n".join(b.thinking for b in self.content if isinstance(b, ThinkingBlock))

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return [b for b in self.content if isinstance(b, ToolUseBlock)]

    @property
    def tool_results(self) -> list[ToolResultBlock]:
        return [b for b in self.content if isinstance(b, ToolResultBlock)]


class ToolSpec(BaseModel):
    """A tool offered to the subject, with its JSON-schema parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class GenerationConfig(BaseModel):
    """Sampling settings recorded with the transcript (all optional)."""

    model_config = ConfigDict(extra="allow")

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    thinking_budget: int | None = None


class Span(BaseModel):
    """An exact place in a transcript: message, block, an optional field path inside
    the block (a tool_use input key path, or a tool_result item index), and a
    character range in that text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: int
    block: int
    field: tuple[str | int, ...] = ()
    start: int
    end: int


class SpanMatch(BaseModel):
    """A `Span` together with the text it covers."""

    span: Span
    text: str


class Turn(BaseModel):
    """One assistant turn: the assistant message and the results its calls received."""

    index: int
    message_index: int
    message: Message
    results: list[ToolResultBlock] = Field(default_factory=list)

    @property
    def tool_uses(self) -> list[ToolUseBlock]:
        return self.message.tool_uses


class Transcript(BaseModel):
    """A whole conversation with its system prompt, tools and generation settings."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    system: str | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    model: str | None = None
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    metadata: dict[str, Any] = Field(default_factory=dict)

    # ----------------------------------------------------------------- turns
    def turns(self) -> list[Turn]:
        """Assistant turns in order, each with the tool results that answered it."""
        out: list[Turn] = []
        for i, msg in enumerate(self.messages):
            if msg.role != "assistant":
                continue
            ids = {u.id for u in msg.tool_uses}
            # Server-side results sit in the assistant message itself, after their call.
            results: list[ToolResultBlock] = [r for r in msg.tool_results if r.tool_use_id in ids]
            for later in self.messages[i + 1 :]:
                if later.role == "assistant":
                    break
                results.extend(r for r in later.tool_results if r.tool_use_id in ids)
            out.append(Turn(index=len(out), message_index=i, message=msg, results=results))
        return out

    def turn(self, k: int) -> Turn:
        """Turn *k*; negative *k* counts from the end like a list index."""
        turns = self.turns()
        try:
            return turns[k]
        except IndexError:
            raise TranscriptError(f"turn {k} does not exist: the transcript has {len(turns)} assistant turns") from None

    def prefix(self, k: int) -> Transcript:
        """The transcript truncated before turn *k*: what the subject saw when it
        produced that turn. ``prefix(len(turns()))`` is the whole transcript."""
        turns = self.turns()
        if k < 0 or k > len(turns):
            raise TranscriptError(f"cannot take the prefix before turn {k}: valid turns are 0..{len(turns)}")
        cut = turns[k].message_index if k < len(turns) else len(self.messages)
        return self.model_copy(update={"messages": [m.model_copy(deep=True) for m in self.messages[:cut]]}, deep=True)

    def tool_use(self, tool_use_id: str) -> tuple[int, ToolUseBlock]:
        """The message index and block of the tool call with this id."""
        for i, msg in enumerate(self.messages):
            for block in msg.tool_uses:
                if block.id == tool_use_id:
                    return i, block
        raise TranscriptError(f"no tool call with id {tool_use_id!r}")

    def tool_result(self, tool_use_id: str) -> tuple[int, ToolResultBlock] | None:
        """The message index and block of the first result answering this call, if any."""
        for i, msg in enumerate(self.messages):
            for block in msg.tool_results:
                if block.tool_use_id == tool_use_id:
                    return i, block
        return None

    def tool_status(self, tool_use_id: str) -> ToolCallStatus | None:
        """What became of a call (its result's status); None when it got no result."""
        found = self.tool_result(tool_use_id)
        return found[1].status if found is not None else None

    def turn_of(self, tool_use_id: str) -> int:
        """The index of the assistant turn that made this tool call."""
        for turn in self.turns():
            if any(u.id == tool_use_id for u in turn.tool_uses):
                return turn.index
        raise TranscriptError(f"no tool call with id {tool_use_id!r}")

    # ---------------------------------------------------------------- search
    def text_fields(self) -> Iterator[tuple[Span, str]]:
        """Every searchable text in the transcript with a span covering it whole.

        Text and thinking blocks are one field each; a tool call contributes each
        string leaf of its input (field = key path); a tool result each text item
        (field = (item index,)).
        """
        for mi, msg in enumerate(self.messages):
            for bi, block in enumerate(msg.content):
                if isinstance(block, TextBlock):
                    yield Span(message=mi, block=bi, start=0, end=len(block.text)), block.text
                elif isinstance(block, ThinkingBlock):
                    yield Span(message=mi, block=bi, start=0, end=len(block.thinking)), block.thinking
                elif isinstance(block, ToolUseBlock):
                    for path, leaf in _string_leaves(block.input, ()):
                        yield Span(message=mi, block=bi, field=path, start=0, end=len(leaf)), leaf
                elif isinstance(block, ToolResultBlock):
                    for ii, item in enumerate(block.content):
                        if isinstance(item, TextBlock):
                            yield Span(message=mi, block=bi, field=(ii,), start=0, end=len(item.text)), item.text

    def find(
        self,
        pattern: str | re.Pattern[str],
        *,
        flags: int = 0,
        roles: set[str] | None = None,
        block_types: set[str] | None = None,
    ) -> list[SpanMatch]:
        """Every match of a regular expression, as spans, optionally restricted to
        message roles (``{"assistant"}``) and block types (``{"thinking"}``)."""
        regex = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        matches: list[SpanMatch] = []
        for span, text in self.text_fields():
            msg = self.messages[span.message]
            if roles is not None and msg.role not in roles:
                continue
            if block_types is not None and msg.content[span.block].type not in block_types:
                continue
            for m in regex.finditer(text):
                matches.append(
                    SpanMatch(
                        span=span.model_copy(update={"start": m.start(), "end": m.end()}),
                        text=m.group(0),
                    )
                )
        return matches

    def span_text(self, span: Span) -> str:
        """The text a span covers; raises `TranscriptError` if it points nowhere."""
        return self.field_text(span)[span.start : span.end]

    def field_text(self, span: Span) -> str:
        """The whole text of the field a span lies in."""
        try:
            block = self.messages[span.message].content[span.block]
        except IndexError:
            raise TranscriptError(
                f"span points at message {span.message} block {span.block}, which does not exist"
            ) from None
        text: Any
        if isinstance(block, TextBlock):
            text = block.text
        elif isinstance(block, ThinkingBlock):
            text = block.thinking
        elif isinstance(block, ToolUseBlock):
            text = block.input
            for key in span.field:
                try:
                    text = text[key]
                except (KeyError, IndexError, TypeError):
                    raise TranscriptError(f"span field {span.field!r} does not exist in tool call {block.id}") from None
        elif isinstance(block, ToolResultBlock):
            if len(span.field) != 1 or not isinstance(span.field[0], int) or span.field[0] >= len(block.content):
                raise TranscriptError(f"span field {span.field!r} does not name a text item of the tool result")
            item = block.content[span.field[0]]
            text = item.text if isinstance(item, TextBlock) else None
        else:
            text = None
        if not isinstance(text, str):
            raise TranscriptError(f"span {span!r} does not point at text")
        if not 0 <= span.start <= span.end <= len(text):
            raise TranscriptError(f"span range {span.start}:{span.end} is outside a text of length {len(text)}")
        return text

    # ---------------------------------------------------------------- render
    def render(self, *, max_chars: int | None = None, flagged_turn: int | None = None) -> str:
        """A readable plain-text view (for people, logs and, quoted, for LLM prompts).

        Each message is headed with its index, role and turn number; thinking is
        shown as ``[thinking]``, tool calls as ``[tool_use name id] {json}``.
        `max_chars` truncates each field with a visible marker.
        """

        def clip(text: str) -> str:
            if max_chars is not None and len(text) > max_chars:
                return text[:max_chars] + f" …[{len(text) - max_chars} more chars]"
            return text

        lines: list[str] = []
        if self.system:
            lines += ["=== system ===", clip(self.system), ""]
        if self.tools:
            lines.append("=== tools: " + ", ".join(t.name for t in self.tools) + " ===")
            lines.append("")
        turn = 0
        for mi, msg in enumerate(self.messages):
            head = f"=== [{mi}] {msg.role}"
            if msg.role == "assistant":
                head += f" (turn {turn})"
                if flagged_turn is not None and turn == flagged_turn:
                    head += "  <<< FLAGGED"
                turn += 1
            if msg.metadata.get("source_role"):
                head += f" [source role: {msg.metadata['source_role']}]"
            lines.append(head + " ===")
            for block in msg.content:
                lines.append(render_block(block, clip))
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def render_block(block: ContentBlock, clip: Any = lambda s: s) -> str:
    """One block as readable text."""
    if isinstance(block, TextBlock):
        return str(clip(block.text))
    if isinstance(block, ThinkingBlock):
        return "[thinking" + (" redacted" if block.redacted else "") + "] " + str(clip(block.thinking))
    if isinstance(block, ToolUseBlock):
        side = " server" if block.side == "server" else ""
        return f"[tool_use {block.name} {block.id}{side}] " + str(clip(json.dumps(block.input, ensure_ascii=False)))
    if isinstance(block, CompactionBlock):
        summary = block.summary if block.summary is not None else "(opaque summary)"
        return "[compaction] " + str(clip(summary))
    if isinstance(block, ToolResultBlock):
        flag = f" {block.status}" if block.status != "ok" else (" error" if block.is_error else "")
        if block.side == "server":
            flag += " server"
        images = sum(1 for i in block.content if isinstance(i, ImageBlock))
        extra = f" (+{images} image)" if images else ""
        return f"[tool_result {block.tool_use_id}{flag}]{extra} " + str(clip(block.text))
    return f"[image {block.media_type or block.url or ''}]"


def _string_leaves(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _string_leaves(sub, (*path, str(key)))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _string_leaves(sub, (*path, i))
