"""Anthropic Messages API: read request and response bodies into a `Transcript`, and write
a transcript back out as the arguments of ``client.messages.create``.

Three shapes are read (`parse` tells them apart):

* a **request body**, as sent to ``POST /v1/messages``: ``{"model", "system", "messages",
  "tools", "max_tokens", "thinking", ...}``;
* a request body with a ``"response"`` key holding the Message the API answered (how
  proxies and agent harnesses commonly log one call): the response becomes the final
  assistant message;
* a **bare response** object (``"type": "message"``): a one-message transcript.

How Anthropic maps onto the transcript
--------------------------------------
* ``system``: a string is kept as is. A list of text blocks is joined with a blank line
  (`SYSTEM_BLOCK_SEPARATOR`) and the block lengths are recorded in
  ``metadata["anthropic"]["system_blocks"]``, so the exporter can split the prompt into
  the same blocks again (unless it was edited in between; then it is sent as one string).
* Message content given as a string is one `TextBlock`. ``text``, ``image``,
  ``thinking``, ``tool_use`` and ``tool_result`` blocks map one-to-one (a tool result's
  string content becomes one text item). ``redacted_thinking`` becomes
  ``ThinkingBlock(redacted=True, thinking="", signature=<data>)``: the encrypted payload
  is, like a signature, opaque and only meaningful when handed back to the API, so it
  lives in the field that already means "pass this back unchanged".
* Images: a ``base64`` source gives ``media_type`` + ``data``, a ``url`` source ``url``.
  Other sources (Files API ids) and block types with no place in the transcript
  (``document``, ``search_result``, ``container_upload``, ...) are a `FormatError` naming
  their location.
* Server-side tools (run by the API inside the call): ``server_tool_use`` and
  ``mcp_tool_use`` become `ToolUseBlock(side="server")`; their results
  (``web_search_tool_result``, ``web_fetch_tool_result``, ``code_execution_tool_result``,
  ``bash_code_execution_tool_result``, ``text_editor_code_execution_tool_result``,
  ``tool_search_tool_result``, ``mcp_tool_result``) become `ToolResultBlock(side="server")`
  in the same assistant message, with the result rendered as readable text (titles and
  URLs of search results, stdout/stderr/return code, ...) and ``is_error`` set for the
  API's ``*_error`` results. The block's original ``type`` and ``content`` are kept in
  ``Message.metadata["anthropic"]["fields"]`` (as for other blocks), and the exporter
  sends that original content back, because parts of it (``encrypted_content`` of search
  results) are opaque and required. An MCP result is rebuilt from the transcript's text
  instead, so an edit to it is exported. Replay never runs a server call.
* ``compaction`` blocks become `CompactionBlock` (summary, ``encrypted_content``,
  ``signature``; ``tool_changes`` are kept with the block's fields) and are sent back as
  they came.
* ``cache_control`` markers on blocks, tools and system blocks are prompt-caching
  plumbing with no effect on what the model sees. They are dropped; the JSON paths where
  they were are listed in ``metadata["anthropic"]["cache_control"]``. They are not
  re-emitted.
* Fields the transcript has no place for on a block (``citations``, ``caller``, ...) or a
  message are kept in ``Message.metadata["anthropic"]["fields"]`` (keyed by the block's
  path inside the message, e.g. ``"content[2]"`` or ``"content[1].content[0]"``, with the
  block's Anthropic ``type``) and ``["message_fields"]``; the exporter re-attaches them
  to a block of the same type at the same place. Null-valued unknown fields say nothing
  and are skipped.
* Tools: a custom tool becomes a `ToolSpec`. An Anthropic-defined tool (``"type":
  "bash_20250124"``, ``"web_search_20250305"``, ...) has its schema built into the API;
  it becomes ``ToolSpec(name=...)`` with no description and an empty object schema, and
  its definition is kept in ``metadata["anthropic"]["tools"][name]`` (as are extra fields
  of custom tools such as ``strict``), from which the exporter restores it.
* Generation: ``max_tokens``, ``temperature``, ``top_p`` and ``thinking``'s
  ``budget_tokens`` fill `GenerationConfig`; ``top_k`` and ``stop_sequences`` are
  generation extras. Every other top-level key (``metadata``, ``tool_choice``,
  ``service_tier``, a ``thinking`` config other than a plain budget, ``stream``,
  Bedrock's ``anthropic_version``, ...) is kept in ``metadata["anthropic"]["request"]``.
* Response: ``id`` goes to `Message.id`; ``stop_reason``, ``stop_sequence``, ``usage``,
  ``model`` and any other non-null response field go into `Message.metadata`. A response
  that continues a prefilled assistant message stays a separate message.

Lenient import, strict export
-----------------------------
The importer reads what was recorded even where the API would have refused it (a
thinking block without a signature, a tool call in a user message), because an
investigation must be able to read what happened. The exporter raises `ExportError` for
anything the API cannot accept structurally: thinking without its signature, thinking or
tool calls outside assistant messages, tool results outside user messages, tool calls
and results that do not pair up, images without a usable source, settings with no
Messages API parameter. Numeric limits that vary by model (budget vs ``max_tokens``,
temperature with thinking) are left to the API to judge.

A user message whose ``metadata["source_role"]`` is ``"system"`` or ``"developer"`` (an
OpenAI mid-conversation instruction) cannot be a system message in the Messages API,
which has one system prompt before the conversation. Moving it there would change when
the model saw it, so it stays in place as a user message and each of its text blocks is
wrapped as ``<system-message>…</system-message>`` (`FOLDED_ROLE_TEMPLATE`): the model sees
the instruction at the same point and can tell it did not come from the user.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, assert_never

from pydantic import BaseModel, ConfigDict

from tools.errors import ExportError, FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, LoadOptions, read_json, validate
from tools.transcript import (
    CompactionBlock,
    ContentBlock,
    GenerationConfig,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolResultItem,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

SYSTEM_BLOCK_SEPARATOR: Final = "\n\n"
"""Joins the blocks of a list-form ``system`` prompt into `Transcript.system`."""

DEFAULT_MAX_TOKENS: Final = 4096
"""``max_tokens`` sent when the transcript records none (the API requires one)."""

FOLDED_ROLE_TEMPLATE: Final = "<{role}-message>\n{text}\n</{role}-message>"
"""How the text of a user message that was a system/developer message is sent."""

FOLDED_ROLES: Final = frozenset({"system", "developer"})

SERVER_TOOL_USE_TYPES: Final = ("server_tool_use", "mcp_tool_use")
"""Anthropic block types of tool calls the API itself executes."""

SERVER_RESULT_TYPES: Final = (
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_result",
)
"""Anthropic block types of the results of server-side tool calls."""

SUPPORTED_BLOCK_TYPES: Final = (
    "text",
    "image",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    *SERVER_TOOL_USE_TYPES,
    *SERVER_RESULT_TYPES,
    "compaction",
)

IMAGE_MEDIA_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
"""The image media types the Messages API accepts inline."""

GENERATION_EXTRAS: Final = frozenset({"top_k", "stop_sequences"})
"""`GenerationConfig` extras that are Messages API parameters."""

# Request keys kept on import but not sent again: the export is for one non-streaming
# call to the first-party API; Bedrock/Vertex put their version and betas in the body.
_NOT_REEMITTED: Final = frozenset({"stream", "anthropic_version", "anthropic_beta", "thinking"})

# Block types of the Messages API, supported here or not: used only to recognise files.
_ANTHROPIC_BLOCK_TYPES: Final = frozenset(
    {
        *SUPPORTED_BLOCK_TYPES,
        "document",
        "search_result",
        "container_upload",
        "tool_reference",
        "mcp_tool_listing",
    }
)
# Top-level keys an Anthropic body never has: OpenAI chat payload keys, and the native
# transcript's markers (its messages would otherwise pass for Anthropic ones).
_FOREIGN_TOP_KEYS: Final = frozenset(
    {
        "format",
        "schema_version",
        "choices",
        "object",
        "n",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "max_completion_tokens",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "reasoning_effort",
        "modalities",
        "store",
        "user",
    }
)
# Keys only OpenAI chat messages have.
_OPENAI_MESSAGE_KEYS: Final = frozenset({"tool_calls", "tool_call_id", "function_call", "name", "refusal", "audio"})


# --------------------------------------------------------------- vendor shape
class _Vendor(BaseModel):
    """An Anthropic-shaped object: JSON types checked strictly, unknown fields kept in
    ``model_extra`` so they can be preserved rather than lost."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Cacheable(_Vendor):
    """An object that may carry a ``cache_control`` marker (dropped, location recorded)."""

    cache_control: dict[str, Any] | None = None


class _TextIn(_Cacheable):
    type: Literal["text"]
    text: str


class _ImageIn(_Cacheable):
    type: Literal["image"]
    source: dict[str, Any]


class _ThinkingIn(_Cacheable):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class _RedactedThinkingIn(_Cacheable):
    type: Literal["redacted_thinking"]
    data: str


class _ToolUseIn(_Cacheable):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class _ToolResultIn(_Cacheable):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Any = None  # a string or a list of text/image blocks; dispatched by `_Reader.result_items`
    is_error: bool | None = None


class _ServerToolUseIn(_Cacheable):
    type: Literal["server_tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class _MCPToolUseIn(_Cacheable):
    type: Literal["mcp_tool_use"]
    id: str
    name: str
    server_name: str
    input: dict[str, Any]


class _ServerResultIn(_Cacheable):
    """The result of a server-side tool: ``content`` is the API's own union (a list of
    search results, an execution result, an ``*_error`` object...), rendered to text by
    `_render_server_result` and kept whole for export."""

    type: Literal[
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    ]
    tool_use_id: str
    content: dict[str, Any] | list[Any]


class _MCPResultIn(_Cacheable):
    type: Literal["mcp_tool_result"]
    tool_use_id: str
    content: Any = None  # a string or a list of text blocks
    is_error: bool | None = None


class _CompactionIn(_Cacheable):
    type: Literal["compaction"]
    content: str | None = None
    encrypted_content: str | None = None
    signature: str | None = None


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Base64SourceIn(_Source):
    type: Literal["base64"]
    media_type: str
    data: str


class _UrlSourceIn(_Source):
    type: Literal["url"]
    url: str


class _MessageIn(_Vendor):
    role: Literal["user", "assistant"]
    content: Any  # a string or a list of blocks; dispatched by `_Reader.content`


class _ToolIn(_Cacheable):
    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class _ThinkingEnabledIn(_Vendor):
    type: Literal["enabled"]
    budget_tokens: int


class _RequestIn(_Vendor):
    model: str | None = None  # Bedrock and Vertex bodies name the model in the URL instead
    messages: list[Any]
    system: Any = None
    tools: list[Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    thinking: dict[str, Any] | None = None
    response: Any = None


class _ResponseIn(_Vendor):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: Any
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] | None = None


_BlockIn = (
    _TextIn
    | _ImageIn
    | _ThinkingIn
    | _RedactedThinkingIn
    | _ToolUseIn
    | _ToolResultIn
    | _ServerToolUseIn
    | _MCPToolUseIn
    | _ServerResultIn
    | _MCPResultIn
    | _CompactionIn
)
_ItemIn = _TextIn | _ImageIn
_SourceIn = _Base64SourceIn | _UrlSourceIn

_BLOCK_MODELS: Final[Mapping[str, type[_BlockIn]]] = {
    "text": _TextIn,
    "image": _ImageIn,
    "thinking": _ThinkingIn,
    "redacted_thinking": _RedactedThinkingIn,
    "tool_use": _ToolUseIn,
    "tool_result": _ToolResultIn,
    "server_tool_use": _ServerToolUseIn,
    "mcp_tool_use": _MCPToolUseIn,
    **dict.fromkeys(SERVER_RESULT_TYPES[:-1], _ServerResultIn),
    "mcp_tool_result": _MCPResultIn,
    "compaction": _CompactionIn,
}
_UNIT_OF_BLOCK: Final[Mapping[str, str]] = {
    "text": "text",
    "image": "images",
    "thinking": "thinking",
    "redacted_thinking": "thinking",
    "tool_use": "tool_calls",
    "server_tool_use": "tool_calls",
    "mcp_tool_use": "tool_calls",
    "tool_result": "tool_results",
    **dict.fromkeys(SERVER_RESULT_TYPES, "tool_results"),
    "compaction": "other",
}
"""The import-accounting unit each block type counts as."""

_ITEM_MODELS: Final[Mapping[str, type[_ItemIn]]] = {"text": _TextIn, "image": _ImageIn}
_SOURCE_MODELS: Final[Mapping[str, type[_SourceIn]]] = {"base64": _Base64SourceIn, "url": _UrlSourceIn}
_SYSTEM_MODELS: Final[Mapping[str, type[_TextIn]]] = {"text": _TextIn}

M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------------- import
def parse(data: Any, *, source: str = "<input>") -> Transcript:
    """A transcript from an already-parsed request body, request + ``"response"``, or
    bare response object. Raises `FormatError` (naming `source` and the JSON path) on
    anything else."""
    if not isinstance(data, dict):
        raise FormatError(
            f"expected a JSON object holding a Messages API request or response (got {_json_kind(data)})",
            source=source,
            location="$",
        )
    reader = _Reader(source)
    if "messages" not in data and data.get("type") == "message":
        transcript = reader.bare_response(data)
    else:
        transcript = reader.request(data)
    transcript.metadata.setdefault("harness", "anthropic")
    return reader.tally.finish(transcript)


@dataclass
class _Reader:
    """One parse: the source name for errors and the cache_control locations seen."""

    source: str
    cache_control: list[str] = field(default_factory=list)
    tally: ImportTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = ImportTally(format="anthropic", source=self.source)

    # ------------------------------------------------------------ top level
    def request(self, data: dict[str, Any]) -> Transcript:
        req = validate(_RequestIn, data, source=self.source)
        system, system_blocks = self.system(req.system)
        if system is not None:
            # A list of system blocks is joined into the one system prompt.
            pieces = len(system_blocks) if system_blocks is not None else 1
            self.tally.count(text=pieces)
            self.tally.keep("system prompt", {"text": min(pieces, 1)})
            self.tally.merge(text=max(pieces - 1, 0))
        tools, tool_fields = self.tools(req.tools)
        messages = [self.message(raw, f"messages[{i}]") for i, raw in enumerate(req.messages)]
        shape = "request"
        if req.response is not None:
            messages.append(self.response(req.response, "response"))
            shape = "request+response"

        passthrough = dict(req.model_extra or {})
        budget: int | None = None
        if req.thinking is not None:
            if req.thinking.get("type") == "enabled":
                enabled = validate(_ThinkingEnabledIn, req.thinking, source=self.source, prefix="thinking")
                budget = enabled.budget_tokens
                if enabled.model_extra:  # e.g. "display": kept so the export sends it again
                    passthrough["thinking"] = req.thinking
            else:  # disabled / adaptive / a newer kind: no budget to record
                passthrough["thinking"] = req.thinking

        settings: dict[str, Any] = {
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "thinking_budget": budget,
        }
        if req.top_k is not None:
            settings["top_k"] = req.top_k
        if req.stop_sequences is not None:
            settings["stop_sequences"] = req.stop_sequences

        meta: dict[str, Any] = {"shape": shape}
        if passthrough:
            meta["request"] = passthrough
        if system_blocks is not None:
            meta["system_blocks"] = system_blocks
        if tool_fields:
            meta["tools"] = tool_fields
        if self.cache_control:
            meta["cache_control"] = self.cache_control
        return Transcript(
            system=system,
            tools=tools,
            messages=messages,
            model=req.model,
            generation=GenerationConfig.model_validate(settings),
            metadata={"anthropic": meta},
        )

    def bare_response(self, data: dict[str, Any]) -> Transcript:
        message = self.response(data, "")
        meta: dict[str, Any] = {"shape": "response"}
        if self.cache_control:
            meta["cache_control"] = self.cache_control
        model = message.metadata.get("model")
        return Transcript(
            messages=[message], model=model if isinstance(model, str) else None, metadata={"anthropic": meta}
        )

    # ---------------------------------------------------------------- parts
    def system(self, raw: Any) -> tuple[str | None, list[dict[str, Any]] | None]:
        """The system prompt, and for a list of blocks each block's length and fields."""
        if raw is None or isinstance(raw, str):
            return raw, None
        if not isinstance(raw, list):
            raise self.fail(f"expected a string or a list of text blocks (got {_json_kind(raw)})", "system")
        texts: list[str] = []
        blocks: list[dict[str, Any]] = []
        for i, item in enumerate(raw):
            where = f"system[{i}]"
            _, block = self.tagged(item, _SYSTEM_MODELS, where, "system block")
            texts.append(block.text)
            blocks.append({"chars": len(block.text), **self.extras(block, where)})
        return SYSTEM_BLOCK_SEPARATOR.join(texts), blocks

    def tools(self, raw: list[Any] | None) -> tuple[list[ToolSpec], dict[str, dict[str, Any]]]:
        """Tool specs, and per tool name the definition fields a `ToolSpec` cannot hold."""
        specs: list[ToolSpec] = []
        stored: dict[str, dict[str, Any]] = {}
        seen: dict[str, int] = {}
        for i, item in enumerate(raw or []):
            where = f"tools[{i}]"
            tool = self.check(_ToolIn, item, where, "a tool definition")
            if tool.name in seen:
                raise self.fail(
                    f"duplicate tool name {tool.name!r} (also at tools[{seen[tool.name]}]); tool names must be unique",
                    f"{where}.name",
                )
            seen[tool.name] = i
            extra = self.extras(tool, where)
            if tool.type is None or tool.type == "custom":
                if tool.input_schema is None:
                    raise self.fail("this field is required for a custom tool", f"{where}.input_schema")
                specs.append(
                    ToolSpec(name=tool.name, description=tool.description or "", input_schema=tool.input_schema)
                )
                fields = {"type": tool.type, **extra} if tool.type else extra
            else:  # Anthropic-defined: the API knows its schema; keep the definition to send it again
                specs.append(ToolSpec(name=tool.name))
                declared = {"description": tool.description, "input_schema": tool.input_schema}
                fields = {"type": tool.type, **{k: v for k, v in declared.items() if v is not None}, **extra}
            if fields:
                stored[tool.name] = fields
        return specs, stored

    def message(self, raw: Any, where: str) -> Message:
        msg = self.check(_MessageIn, raw, where, "a message")
        self.tally.count(messages=1)
        fields: dict[str, dict[str, Any]] = {}
        content = self.content(msg.content, f"{where}.content", "content", fields)
        anthropic: dict[str, Any] = {}
        if fields:
            anthropic["fields"] = fields
        message_fields = self.extras(msg, where)
        if message_fields:
            anthropic["message_fields"] = message_fields
        return Message(role=msg.role, content=content, metadata={"anthropic": anthropic} if anthropic else {})

    def response(self, raw: Any, where: str) -> Message:
        """A Messages API response as an assistant message with its id and stop facts."""
        resp = self.check(_ResponseIn, raw, where, "a Messages API response (type 'message')")
        self.tally.count(messages=1)
        fields: dict[str, dict[str, Any]] = {}
        content = self.content(resp.content, _join(where, "content"), "content", fields)
        facts = {
            "model": resp.model,
            "stop_reason": resp.stop_reason,
            "stop_sequence": resp.stop_sequence,
            "usage": resp.usage,
        }
        metadata: dict[str, Any] = {**self.extras(resp, where), **{k: v for k, v in facts.items() if v is not None}}
        if fields:
            metadata["anthropic"] = {"fields": fields}
        return Message(role="assistant", content=content, id=resp.id, metadata=metadata)

    def content(self, raw: Any, where: str, rel: str, fields: dict[str, dict[str, Any]]) -> list[ContentBlock]:
        """Message content: a string is one text block, a list is blocks by ``type``.
        `rel` is the path inside the message, the key for preserved fields."""
        if isinstance(raw, str):
            self.tally.count(text=1)
            return [TextBlock(text=raw)]
        if not isinstance(raw, list):
            raise self.fail(f"expected a string or a list of content blocks (got {_json_kind(raw)})", where)
        blocks: list[ContentBlock] = []
        for j, item in enumerate(raw):
            block_where, block_rel = f"{where}[{j}]", f"{rel}[{j}]"
            kind, vendor = self.tagged(item, _BLOCK_MODELS, block_where, "content block")
            self.tally.count(**{_UNIT_OF_BLOCK[kind]: 1})
            self.keep_fields(vendor, kind, block_where, block_rel, fields)
            if isinstance(vendor, _MCPToolUseIn):
                fields.setdefault(block_rel, {"type": kind})["server_name"] = vendor.server_name
            elif isinstance(vendor, _ServerResultIn):
                fields.setdefault(block_rel, {"type": kind})["content"] = vendor.content
            elif isinstance(vendor, _MCPResultIn):
                fields.setdefault(block_rel, {"type": kind})
            blocks.append(self.block(vendor, block_where, block_rel, fields))
        return blocks

    def block(self, vendor: _BlockIn, where: str, rel: str, fields: dict[str, dict[str, Any]]) -> ContentBlock:
        if isinstance(vendor, _TextIn):
            return TextBlock(text=vendor.text)
        if isinstance(vendor, _ImageIn):
            return self.image(vendor, where)
        if isinstance(vendor, _ThinkingIn):
            return ThinkingBlock(thinking=vendor.thinking, signature=vendor.signature)
        if isinstance(vendor, _RedactedThinkingIn):
            return ThinkingBlock(thinking="", signature=vendor.data, redacted=True)
        if isinstance(vendor, _ToolUseIn):
            return ToolUseBlock(id=vendor.id, name=vendor.name, input=vendor.input)
        if isinstance(vendor, _ToolResultIn):
            items = self.result_items(vendor.content, f"{where}.content", f"{rel}.content", fields)
            return ToolResultBlock(tool_use_id=vendor.tool_use_id, content=items, is_error=bool(vendor.is_error))
        if isinstance(vendor, _ServerToolUseIn | _MCPToolUseIn):
            return ToolUseBlock(id=vendor.id, name=vendor.name, input=vendor.input, side="server")
        if isinstance(vendor, _ServerResultIn):
            text, failed = _render_server_result(vendor.type, vendor.content)
            return ToolResultBlock(
                tool_use_id=vendor.tool_use_id, content=[TextBlock(text=text)], is_error=failed, side="server"
            )
        if isinstance(vendor, _MCPResultIn):
            items = self.result_items(vendor.content, f"{where}.content", f"{rel}.content", fields)
            return ToolResultBlock(
                tool_use_id=vendor.tool_use_id, content=items, is_error=bool(vendor.is_error), side="server"
            )
        if isinstance(vendor, _CompactionIn):
            return CompactionBlock(
                summary=vendor.content, encrypted_content=vendor.encrypted_content, signature=vendor.signature
            )
        assert_never(vendor)

    def result_items(self, raw: Any, where: str, rel: str, fields: dict[str, dict[str, Any]]) -> list[ToolResultItem]:
        """A tool result's content: absent or null is empty, a string is one text item."""
        if raw is None:
            return []
        if isinstance(raw, str):
            return [TextBlock(text=raw)]
        if not isinstance(raw, list):
            raise self.fail(f"expected a string or a list of text and image blocks (got {_json_kind(raw)})", where)
        items: list[ToolResultItem] = []
        for k, item in enumerate(raw):
            item_where, item_rel = f"{where}[{k}]", f"{rel}[{k}]"
            kind, vendor = self.tagged(item, _ITEM_MODELS, item_where, "tool result content block")
            self.keep_fields(vendor, kind, item_where, item_rel, fields)
            items.append(TextBlock(text=vendor.text) if isinstance(vendor, _TextIn) else self.image(vendor, item_where))
        return items

    def image(self, vendor: _ImageIn, where: str) -> ImageBlock:
        _, source = self.tagged(vendor.source, _SOURCE_MODELS, f"{where}.source", "image source")
        if isinstance(source, _Base64SourceIn):
            return ImageBlock(media_type=source.media_type, data=source.data)
        return ImageBlock(url=source.url)

    # -------------------------------------------------------------- helpers
    def fail(self, message: str, location: str) -> FormatError:
        return FormatError(message, source=self.source, location=location or "$")

    def check(self, model: type[M], data: Any, where: str, what: str) -> M:
        """Validate one object, first making sure it is an object at all (pydantic's own
        message for that would name our private model class)."""
        if not isinstance(data, dict):
            raise self.fail(f"expected {what} (a JSON object), got {_json_kind(data)}", where)
        return validate(model, data, source=self.source, prefix=where)

    def tagged(self, data: Any, models: Mapping[str, type[M]], where: str, what: str) -> tuple[str, M]:
        """Validate an object whose ``type`` picks its model; an unknown ``type`` is an
        error at ``<where>.type`` listing the accepted ones."""
        if not isinstance(data, dict):
            raise self.fail(f"expected a {what} (a JSON object), got {_json_kind(data)}", where)
        kind = data.get("type")
        model = models.get(kind) if isinstance(kind, str) else None
        if model is None or not isinstance(kind, str):
            accepted = ", ".join(repr(k) for k in models)
            if "type" not in data:
                message = f"this field is required: the {what} type, one of {accepted}"
            else:
                message = f"unsupported {what} type {_shown(kind)}; this importer reads {accepted}"
            raise self.fail(message, _join(where, "type"))
        return kind, validate(model, data, source=self.source, prefix=where)

    def extras(self, obj: _Vendor, where: str) -> dict[str, Any]:
        """The object's non-null unknown fields; records a dropped cache_control."""
        if isinstance(obj, _Cacheable) and obj.cache_control is not None:
            self.cache_control.append(where or "$")
        return {k: v for k, v in (obj.model_extra or {}).items() if v is not None}

    def keep_fields(self, vendor: _Vendor, kind: str, where: str, rel: str, fields: dict[str, dict[str, Any]]) -> None:
        extra = self.extras(vendor, where)
        if extra:
            fields[rel] = {"type": kind, **extra}


# ---------------------------------------------------------------------- export
def to_anthropic_body(transcript: Transcript) -> dict[str, Any]:
    """The JSON body of a Messages API request carrying this transcript: what goes over
    the wire, and what `parse` reads back to an equal transcript (content, system, tools
    and generation; message ids and response facts are not part of a request).

    Request keys recorded on import are sent again, except ``stream`` (this is one
    non-streaming call) and the Bedrock/Vertex body fields ``anthropic_version`` and
    ``anthropic_beta``, which the first-party API does not take in the body
    (`to_anthropic_params` sends the betas as a header).

    The body shares no objects with the transcript, so a caller may edit it freely.

    Raises `ExportError` for anything the API cannot express (see the module docstring).
    """
    body: dict[str, Any] = _fresh(_Writer(transcript).body())
    return body


def to_anthropic_params(transcript: Transcript) -> dict[str, Any]:
    """Keyword arguments for ``client.messages.create(**params)`` (non-streaming).

    The body from `to_anthropic_body`, split for the installed SDK: keys its ``create``
    takes as keywords stay top-level (``model``, ``max_tokens``, ``system``, ``messages``,
    ``tools``, ``thinking``, ...); keys it has no keyword for (``temperature``, ``top_p``
    and ``top_k`` in recent SDKs) go in ``extra_body``, which the SDK merges into the
    request, so the API receives the same body whichever SDK version is installed. Betas
    recorded from a Bedrock/Vertex body (``anthropic_beta``) become the
    ``anthropic-beta`` header in ``extra_headers``.

    The same kwargs work with ``client.messages.stream(**params)``. Without streaming the
    SDK refuses calls it expects to run past ten minutes (large ``max_tokens``) unless
    the client or the call sets an explicit ``timeout``; that transport choice is the
    caller's, so no ``timeout`` is added here.
    """
    body = to_anthropic_body(transcript)
    keywords = _sdk_create_keywords()
    params = {k: v for k, v in body.items() if k in keywords}
    extra_body = {k: v for k, v in body.items() if k not in keywords}
    if extra_body:
        params["extra_body"] = extra_body
    betas = _as_dict(_as_dict(transcript.metadata.get("anthropic")).get("request")).get("anthropic_beta")
    if isinstance(betas, list) and betas and all(isinstance(b, str) for b in betas):
        params["extra_headers"] = {"anthropic-beta": ",".join(betas)}
    return params


@functools.cache
def _sdk_create_keywords() -> frozenset[str]:
    """The keyword arguments the installed SDK's ``messages.create`` accepts (its
    ``MessageCreateParams`` keys), less ``stream``: the export is non-streaming."""
    from anthropic.types.message_create_params import MessageCreateParamsNonStreaming as Params

    return frozenset((Params.__required_keys__ | Params.__optional_keys__) - {"stream"})


class _Writer:
    """One export; `meta` is the transcript's ``metadata["anthropic"]`` (maybe empty)."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.meta = _as_dict(transcript.metadata.get("anthropic"))

    def body(self) -> dict[str, Any]:
        t = self.transcript
        if not t.model:
            raise ExportError("the transcript records no model; set `model` to the Claude model to call")
        if not t.messages:
            raise ExportError("the transcript has no messages; the Messages API needs at least one")
        _check_tool_pairing(t.messages)
        body: dict[str, Any] = {"model": t.model, "max_tokens": self.max_tokens()}
        system = self.system()
        if system is not None:
            body["system"] = system
        body["messages"] = [self.message(i, msg) for i, msg in enumerate(t.messages)]
        if t.tools:
            body["tools"] = self.tools()
        body.update(self.generation())
        for key, value in _as_dict(self.meta.get("request")).items():
            if key not in _NOT_REEMITTED and key not in body:
                body[key] = value
        return body

    def max_tokens(self) -> int:
        """The recorded limit; else `DEFAULT_MAX_TOKENS`, raised above a thinking budget
        that would not leave room for an answer (the API requires max_tokens > budget)."""
        generation = self.transcript.generation
        if generation.max_tokens is not None:
            return generation.max_tokens
        budget = generation.thinking_budget
        if budget is not None and budget >= DEFAULT_MAX_TOKENS:
            return budget + DEFAULT_MAX_TOKENS
        return DEFAULT_MAX_TOKENS

    def system(self) -> str | list[dict[str, Any]] | None:
        """The system prompt, split into the original blocks where they are known and
        the text still matches their lengths."""
        text = self.transcript.system
        if text is None:
            return None
        blocks = self.meta.get("system_blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            return text
        pieces = _split_system(text, [b.get("chars") for b in blocks])
        if pieces is None:
            return text
        return [
            {"type": "text", "text": piece, **{k: v for k, v in block.items() if k not in {"chars", "type", "text"}}}
            for piece, block in zip(pieces, blocks, strict=True)
        ]

    def tools(self) -> list[dict[str, Any]]:
        stored = _as_dict(self.meta.get("tools"))
        out: list[dict[str, Any]] = []
        for i, spec in enumerate(self.transcript.tools):
            fields = _as_dict(stored.get(spec.name))
            kind = fields.get("type")
            if kind is not None and kind != "custom":  # Anthropic-defined: its definition is authoritative
                out.append({"name": spec.name, **{k: v for k, v in fields.items() if k != "name"}})
                continue
            if spec.input_schema.get("type") != "object":
                raise ExportError(
                    f"tools[{i}] ({spec.name}): the Messages API needs an input_schema of JSON type 'object' "
                    f"(got type {spec.input_schema.get('type')!r})"
                )
            tool: dict[str, Any] = {"name": spec.name}
            if spec.description:
                tool["description"] = spec.description
            tool["input_schema"] = spec.input_schema
            tool.update({k: v for k, v in fields.items() if k not in tool})
            out.append(tool)
        return out

    def generation(self) -> dict[str, Any]:
        generation = self.transcript.generation
        extras = {k: v for k, v in (generation.model_extra or {}).items() if v is not None}
        unsupported = sorted(set(extras) - GENERATION_EXTRAS)
        if unsupported:
            raise ExportError(
                f"generation setting(s) {', '.join(unsupported)} have no Messages API parameter; "
                "remove them from the transcript's generation config to export it"
            )
        out: dict[str, Any] = {}
        if generation.temperature is not None:
            out["temperature"] = generation.temperature
        if generation.top_p is not None:
            out["top_p"] = generation.top_p
        for key in sorted(extras):
            out[key] = extras[key]
        raw = _as_dict(self.meta.get("request")).get("thinking")
        if generation.thinking_budget is not None:
            base = dict(raw) if isinstance(raw, dict) and raw.get("type") == "enabled" else {}
            out["thinking"] = {**base, "type": "enabled", "budget_tokens": generation.thinking_budget}
        elif isinstance(raw, dict) and raw.get("type") != "enabled":  # disabled / adaptive
            out["thinking"] = raw
        return out

    def message(self, index: int, msg: Message) -> dict[str, Any]:
        where = f"messages[{index}]"
        anthropic = _as_dict(msg.metadata.get("anthropic"))
        fields = _as_dict(anthropic.get("fields"))
        source_role = msg.metadata.get("source_role")
        fold = source_role if msg.role == "user" and source_role in FOLDED_ROLES else None
        content: list[dict[str, Any]] = []
        for j, block in enumerate(msg.content):
            out = self.block(block, msg.role, f"{where}.content[{j}]", f"content[{j}]", fields)
            if fold is not None and out["type"] == "text":
                out["text"] = FOLDED_ROLE_TEMPLATE.format(role=fold, text=out["text"])
            content.append(out)
        result: dict[str, Any] = {"role": msg.role, "content": _compact(content)}
        for key, value in _as_dict(anthropic.get("message_fields")).items():
            result.setdefault(key, value)
        return result

    def block(self, block: ContentBlock, role: str, where: str, rel: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """One block in Anthropic shape, with its preserved fields re-attached."""
        out: dict[str, Any]
        if isinstance(block, TextBlock):
            out = {"type": "text", "text": block.text}
        elif isinstance(block, ThinkingBlock):
            out = _thinking(block, role, where)
        elif isinstance(block, ImageBlock):
            out = _image(block, where)
        elif isinstance(block, ToolUseBlock):
            if role != "assistant":
                raise ExportError(f"{where}: a tool call in a user message; only assistant messages can call tools")
            if block.side == "server":
                out = _server_tool_use(block, where, fields.get(rel))
            else:
                out = {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
        elif isinstance(block, CompactionBlock):
            if role != "assistant":
                raise ExportError(f"{where}: a compaction block in a user message; the API writes them in replies")
            out = {"type": "compaction", "content": block.summary}
            if block.encrypted_content is not None:
                out["encrypted_content"] = block.encrypted_content
            if block.signature is not None:
                out["signature"] = block.signature
        elif isinstance(block, ToolResultBlock) and block.side == "server":
            if role != "assistant":
                raise ExportError(
                    f"{where}: a server-side tool result in a user message; the API puts them in the assistant "
                    "message that made the call"
                )
            out = _server_result(block, where, fields.get(rel))
        elif isinstance(block, ToolResultBlock):
            if role != "user":
                raise ExportError(f"{where}: a tool result in an assistant message; tool results go in user messages")
            out = {"type": "tool_result", "tool_use_id": block.tool_use_id}
            items: list[dict[str, Any]] = []
            for k, item in enumerate(block.content):
                item_where, item_rel = f"{where}.content[{k}]", f"{rel}.content[{k}]"
                item_out = (
                    {"type": "text", "text": item.text} if isinstance(item, TextBlock) else _image(item, item_where)
                )
                items.append(_with_fields(item_out, fields.get(item_rel)))
            if items:
                out["content"] = _compact(items)
            if block.is_error:
                out["is_error"] = True
        else:
            assert_never(block)
        return _with_fields(out, fields.get(rel))


def _thinking(block: ThinkingBlock, role: str, where: str) -> dict[str, Any]:
    if role != "assistant":
        raise ExportError(f"{where}: a thinking block in a user message; only assistant messages can hold thinking")
    if block.redacted:
        if block.thinking:
            raise ExportError(
                f"{where}: redacted thinking with visible text; Anthropic's redacted_thinking block carries only "
                "the encrypted data (the block's `signature`), so the text cannot be sent"
            )
        if not block.signature:
            raise ExportError(
                f"{where}: redacted thinking without its encrypted data (the block's `signature`); "
                "the API needs the data it issued"
            )
        return {"type": "redacted_thinking", "data": block.signature}
    if block.signature is None:
        raise ExportError(
            f"{where}: thinking without a signature; the API only accepts thinking blocks with the signature it "
            "issued (remove the block or turn it into text before exporting)"
        )
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}


def _server_tool_use(block: ToolUseBlock, where: str, stored: Any) -> dict[str, Any]:
    """A server-side call as the Anthropic block it was imported from (``server_tool_use``
    unless the import recorded ``mcp_tool_use`` with its server name)."""
    fields = _as_dict(stored)
    kind = fields.get("type")
    if kind == "mcp_tool_use":
        server_name = fields.get("server_name")
        if not isinstance(server_name, str):
            raise ExportError(f"{where}: an MCP tool call without its server_name; the API needs the MCP server's name")
        return {
            "type": "mcp_tool_use",
            "id": block.id,
            "name": block.name,
            "server_name": server_name,
            "input": block.input,
        }
    return {"type": "server_tool_use", "id": block.id, "name": block.name, "input": block.input}


def _server_result(block: ToolResultBlock, where: str, stored: Any) -> dict[str, Any]:
    """A server-side result as the API's block. An MCP result is rebuilt from the
    transcript's text; the others are sent as they were recorded (their content holds
    opaque fields such as ``encrypted_content`` that only the API can produce), which is
    refused when the transcript's text of the result no longer matches the recording."""
    fields = _as_dict(stored)
    kind = fields.get("type")
    if kind == "mcp_tool_result":
        items = [{"type": "text", "text": item.text} for item in block.content if isinstance(item, TextBlock)]
        if len(items) != len(block.content):
            raise ExportError(f"{where}: an MCP tool result can hold only text")
        return {
            "type": "mcp_tool_result",
            "tool_use_id": block.tool_use_id,
            "content": items,
            "is_error": block.is_error,
        }
    if kind not in SERVER_RESULT_TYPES or "content" not in fields:
        raise ExportError(
            f"{where}: a server-side tool result without its original Anthropic block; the Messages API accepts only "
            "the server tool results it produced itself"
        )
    text, _ = _render_server_result(str(kind), fields["content"])
    if block.text != text:
        raise ExportError(
            f"{where}: this {kind} was edited; its original content (with the API's opaque fields) cannot be sent "
            "back with the edit, and the API does not accept a rewritten one. Edit the text the model wrote instead, "
            "or remove the server call and its result"
        )
    return {"type": kind, "tool_use_id": block.tool_use_id, "content": fields["content"]}


def _render_server_result(kind: str, content: Any) -> tuple[str, bool]:
    """A server-side tool result as readable text, and whether it is an error result.

    Deterministic in its input (the exporter re-renders the stored original to detect an
    edit). Known shapes are rendered for people; anything else is its sorted JSON."""
    if isinstance(content, dict):
        ctype = content.get("type")
        if isinstance(ctype, str) and ctype.endswith("_error"):
            code = content.get("error_code")
            message = content.get("error_message")
            return f"[{kind} error] {code}" + (f": {message}" if isinstance(message, str) and message else ""), True
    if kind == "web_search_tool_result" and isinstance(content, list):
        entries: list[str] = []
        for item in content:
            if isinstance(item, dict) and item.get("type") == "web_search_result":
                entry = f"{item.get('title')}\n{item.get('url')}"
                if isinstance(item.get("page_age"), str):
                    entry += f"\n(page age: {item['page_age']})"
                entries.append(entry)
            else:
                entries.append(_json_text(item))
        return ("\n\n".join(entries) if entries else "(no results)"), False
    if isinstance(content, dict):
        ctype = content.get("type")
        if ctype in ("code_execution_result", "bash_code_execution_result", "encrypted_code_execution_result"):
            parts: list[str] = []
            if isinstance(content.get("stdout"), str) and content["stdout"]:
                parts.append(content["stdout"])
            if ctype == "encrypted_code_execution_result":
                parts.append("[stdout encrypted by the API]")
            if isinstance(content.get("stderr"), str) and content["stderr"]:
                parts.append("[stderr]\n" + content["stderr"])
            files = [f.get("file_id") for f in content.get("content") or [] if isinstance(f, dict)]
            if files:
                parts.append("[output files] " + ", ".join(str(f) for f in files))
            parts.append(f"[return code {content.get('return_code')}]")
            return "\n".join(parts), False
        if ctype == "text_editor_code_execution_view_result" and isinstance(content.get("content"), str):
            return content["content"], False
        if ctype == "text_editor_code_execution_create_result":
            return ("file updated" if content.get("is_file_update") else "file created"), False
        if ctype == "text_editor_code_execution_str_replace_result" and isinstance(content.get("lines"), list):
            return "\n".join(str(line) for line in content["lines"]), False
        if ctype == "web_fetch_result":
            document = _as_dict(content.get("content"))
            source = _as_dict(document.get("source"))
            body = source.get("data") if source.get("type") == "text" else f"[{source.get('media_type')} document]"
            return f"{content.get('url')}\n\n{body}", False
        if ctype == "tool_search_tool_search_result" and isinstance(content.get("tool_references"), list):
            names = [str(_as_dict(ref).get("tool_name")) for ref in content["tool_references"]]
            return "tools found: " + (", ".join(names) if names else "none"), False
    return _json_text(content), False


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _image(block: ImageBlock, where: str) -> dict[str, Any]:
    if block.data is not None and block.url is not None:
        raise ExportError(f"{where}: an image with both inline data and a URL; an Anthropic image has one source")
    if block.data is not None:
        if block.media_type not in IMAGE_MEDIA_TYPES:
            raise ExportError(
                f"{where}: inline image of media type {block.media_type!r}; "
                f"the API accepts {', '.join(sorted(IMAGE_MEDIA_TYPES))}"
            )
        return {"type": "image", "source": {"type": "base64", "media_type": block.media_type, "data": block.data}}
    if block.url is not None:
        return {"type": "image", "source": {"type": "url", "url": block.url}}
    raise ExportError(f"{where}: an image with neither inline data nor a URL")


def _check_tool_pairing(messages: Sequence[Message]) -> None:
    """Every tool result must answer a call of the assistant turn just before it, and
    every call must be answered in the next user turn if the conversation goes on.
    Consecutive messages of one role count as one turn, as the API merges them."""
    runs: list[list[int]] = []
    for i, msg in enumerate(messages):
        if runs and messages[runs[-1][0]].role == msg.role:
            runs[-1].append(i)
        else:
            runs.append([i])
    for r, run in enumerate(runs):
        if messages[run[0]].role != "assistant":
            continue
        calls = {
            block.id: f"messages[{i}].content[{j}]"
            for i in run
            for j, block in enumerate(messages[i].content)
            if isinstance(block, ToolUseBlock) and block.side == "client"
        }
        server_calls: set[str] = set()
        for i in run:
            for j, block in enumerate(messages[i].content):
                if isinstance(block, ToolUseBlock) and block.side == "server":
                    server_calls.add(block.id)
                elif (
                    isinstance(block, ToolResultBlock)
                    and block.side == "server"
                    and block.tool_use_id not in server_calls
                ):
                    raise ExportError(
                        f"messages[{i}].content[{j}]: server-side result for {block.tool_use_id!r}, which no "
                        "server-side tool call before it in this assistant message made"
                    )
        if r + 1 < len(runs):
            answered = {res.tool_use_id for i in runs[r + 1] for res in messages[i].tool_results}
            for call_id, where in calls.items():
                if call_id not in answered:
                    raise ExportError(
                        f"{where}: tool call {call_id!r} has no tool_result in the next user message; "
                        "the API requires every tool call to be answered before the conversation goes on"
                    )
    for r, run in enumerate(runs):
        if messages[run[0]].role != "user":
            continue
        previous = runs[r - 1] if r > 0 else []
        called = {block.id for i in previous for block in messages[i].tool_uses if block.side == "client"}
        for i in run:
            for j, block in enumerate(messages[i].content):
                if isinstance(block, ToolResultBlock) and block.tool_use_id not in called:
                    raise ExportError(
                        f"messages[{i}].content[{j}]: tool_result for {block.tool_use_id!r}, which the assistant "
                        "message before it did not call"
                    )


def _split_system(text: str, lengths: list[Any]) -> list[str] | None:
    """`text` cut back into blocks of the recorded lengths, or None if it no longer fits."""
    pieces: list[str] = []
    pos = 0
    for i, length in enumerate(lengths):
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            return None
        if i:
            if text[pos : pos + len(SYSTEM_BLOCK_SEPARATOR)] != SYSTEM_BLOCK_SEPARATOR:
                return None
            pos += len(SYSTEM_BLOCK_SEPARATOR)
        pieces.append(text[pos : pos + length])
        pos += length
    return pieces if pos == len(text) else None


def _compact(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block as a string (the API's shorthand for exactly that)."""
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"} and blocks[0]["type"] == "text":
        text: str = blocks[0]["text"]
        return text
    return blocks


def _with_fields(out: dict[str, Any], stored: Any) -> dict[str, Any]:
    """`out` plus the fields preserved for this place, if they were recorded for a block
    of the same type (so an edit that moved blocks does not graft them onto another)."""
    if isinstance(stored, dict) and stored.get("type") == out["type"]:
        out.update({k: v for k, v in stored.items() if k not in out})
    return out


# ---------------------------------------------------------------------- sniff
def sniff(path: Path, data: Any) -> bool:
    """Whether parsed JSON looks like an Anthropic request or response. Conservative:
    anything with an OpenAI-only marker (``choices``, a ``system``/``tool``/``developer``
    role, ``tool_calls``, ``function`` tools, ...) or the native transcript's ``format``
    marker is not claimed. Never raises."""
    if not isinstance(data, dict) or not _FOREIGN_TOP_KEYS.isdisjoint(data):
        return False
    if "messages" not in data:
        return _looks_like_response(data)
    messages = data["messages"]
    if not isinstance(messages, list) or not messages or not all(_looks_like_message(m) for m in messages):
        return False
    tools = data.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(t, dict) and "function" not in t for t in tools)
    ):
        return False
    response = data.get("response")
    return response is None or _looks_like_response(response)


def _looks_like_message(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in ("user", "assistant")
        and _OPENAI_MESSAGE_KEYS.isdisjoint(message)
        and _looks_like_content(message.get("content"))
    )


def _looks_like_response(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("type") == "message"
        and data.get("role") == "assistant"
        and isinstance(data.get("content"), list)
        and _looks_like_content(data.get("content"))
    )


def _looks_like_content(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(block, dict) and isinstance(block.get("type"), str) and block["type"] in _ANTHROPIC_BLOCK_TYPES
        for block in content
    )


# --------------------------------------------------------------------- helpers
def _json_kind(value: Any) -> str:
    """How a JSON value's type reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fresh(value: Any) -> Any:
    """A copy of a tree of dicts and lists, made without recursion: a tool input nested
    as deep as JSON parsing allows would overflow the stack of `copy.deepcopy`. Leaves
    are shared, as JSON leaves are immutable."""
    if not isinstance(value, dict | list):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[dict[Any, Any] | list[Any], dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, sub in items:
            copied = sub
            if isinstance(sub, dict | list):
                copied = {} if isinstance(sub, dict) else []
                stack.append((sub, copied))
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a dict, else empty: metadata may have been edited by hand."""
    return value if isinstance(value, dict) else {}


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


def refusal(path: Path, data: Any) -> str:
    """Why `sniff` refused a file, in words (for the detection error)."""
    if not isinstance(data, dict):
        return "a Messages API body is a JSON object"
    foreign = sorted(_FOREIGN_TOP_KEYS & set(data))
    if foreign:
        return f"it has {foreign[0]!r}, which an Anthropic request never has"
    if "messages" not in data:
        if data.get("type") == "message":
            return "a response needs role 'assistant' and a list of Anthropic content blocks"
        return "it has no 'messages' list and is not a response (type 'message')"
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        if message.get("role") not in ("user", "assistant"):
            return f"messages[{i}].role is {_shown(message.get('role'))}, not 'user' or 'assistant'"
        extra = sorted(_OPENAI_MESSAGE_KEYS & set(message))
        if extra:
            return f"messages[{i}] has {extra[0]!r}, an OpenAI message key"
        if not _looks_like_content(message.get("content")):
            return f"messages[{i}].content is neither a string nor a list of Anthropic content blocks"
    return "its 'tools' or 'response' is not in the Messages API shape"


IMPORTER = Importer(
    name="anthropic",
    description="Anthropic Messages API request body, request + response, or response object (JSON)",
    sniff=sniff,
    load=_load,
    markers=frozenset(
        {"messages", "system", "max_tokens", "stop_reason", "stop_sequences", "thinking", "type:message", "top_k"}
    ),
    refusal=refusal,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FOLDED_ROLE_TEMPLATE",
    "IMPORTER",
    "SYSTEM_BLOCK_SEPARATOR",
    "parse",
    "sniff",
    "to_anthropic_body",
    "to_anthropic_params",
]
