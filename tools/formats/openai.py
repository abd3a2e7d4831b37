"""OpenAI Chat Completions: read request bodies and responses, write `create()` kwargs.

What is read (`parse`, `load`, auto-detected by `sniff`):

* a chat **request** body ``{"model", "messages", "tools", "temperature", ...}`` as a
  proxy, gateway or agent framework logs it (``extra_body`` from logged SDK kwargs is
  flattened back in, as the SDK does on the wire);
* a request body with a ``"response"`` key holding the chat completion it got: the
  response's first choice is appended as the last assistant message and the other
  choices are kept, normalized, in ``metadata["openai"]["response"]["other_choices"]``;
* a bare chat completion response (``{"object": "chat.completion", "choices": [...]}``).

How messages map onto the `Transcript` (which follows the Anthropic shape):

* leading ``system``/``developer`` messages become `Transcript.system`, their texts (one
  per string content or text part) joined by a blank line; the roles, names and
  lengths are kept in ``metadata["openai"]["system_messages"]`` so the exporter can
  split them again. Later ones become user messages with
  ``metadata["source_role"]`` = ``"system"``/``"developer"``.
* ``reasoning_content`` (DeepSeek, vLLM, llama.cpp) and ``reasoning`` (OpenRouter)
  become a `ThinkingBlock` placed before the text; which field carried it is kept.
* ``tool_calls`` become `ToolUseBlock`s. Arguments that are not a JSON object are
  **kept**, as ``input = {"_raw_arguments": "<the string>"}`` with
  ``metadata["openai"]["blocks"][i]["raw_arguments"] = True``, rather than refused: a
  model emitting malformed arguments is evidence about the model, not damage to the
  file, and the exporter writes the string back byte for byte.
* consecutive ``tool`` messages become ONE user message of `ToolResultBlock`s, in order.
* the legacy ``function_call``/``function`` pair is read as a tool call with a made-up id
  ``function_call_<n>`` (marked ``legacy`` so the exporter restores the legacy shape);
  a ``function`` message answers the latest unanswered call of that name.
* ``refusal`` (field or content part) becomes a `TextBlock` marked as a refusal.
* GPT-5 ``custom`` (free-form) tools and tool calls have no `ToolSpec`/`ToolUseBlock`
  form and are refused with a `FormatError` at their ``type``; so are streaming chunks.
* user ``input_audio``/``file`` parts have no block type: they are kept verbatim, with
  their position, in ``metadata["openai"]["unsupported_parts"]`` and written back.
* ``name`` goes to ``metadata["name"]``; fields this module does not know are kept in
  ``metadata["openai"]["extra"]`` and written back (a gateway that accepted them will
  again), except on a *response* message, whose extra fields (``annotations``, ``audio``)
  are not request fields: they go to ``metadata["openai"]["response_fields"]`` and stay
  there. A response's ``finish_reason`` goes to ``metadata["finish_reason"]``, its id to
  `Message.id`, ``usage`` and the rest to ``metadata["openai"]["response"]``.
* request fields about the caller rather than the conversation (``stream``, ``user``,
  ``store``, ``metadata``, ...) go to ``metadata["openai"]["request"]`` and are not
  exported; every other request field is a generation setting.
* empty-string contents carry nothing and produce no block (``""`` and ``null`` are the
  same conversation); an empty text *part* is kept as an empty `TextBlock`.

Export (`to_openai_params`) is the inverse. Three things have no place in the format and
are left out, because refusing would make every Anthropic-origin transcript unexportable
and none of them changes what the model is shown: thinking signatures, redacted
(encrypted) thinking, and `ToolResultBlock.is_error`. ``thinking_budget`` has no Chat
Completions parameter either and is not written. What cannot be expressed at all (an
image in an assistant message, a tool call in a user message, ...) raises `ExportError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.errors import ExportError, FormatError
from tools.formats.accounting import ImportTally, count_blocks
from tools.formats.base import Importer, LoadOptions, read_json, validate
from tools.transcript import (
    ContentBlock,
    GenerationConfig,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

# Request keys that describe the caller, not the conversation or the sampling: kept in
# ``metadata["openai"]["request"]`` and not written back by the exporter.
_REQUEST_ONLY_KEYS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "extra_headers",
        "extra_query",
        "timeout",
    }
)

# Keyword parameters of ``client.chat.completions.create`` (openai-python). Generation
# settings outside this set go into ``extra_body``: the SDK rejects unknown kwargs.
_CREATE_PARAMS = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "seed",
        "stop",
        "temperature",
        "tool_choice",
        "top_logprobs",
        "top_p",
        "verbosity",
        "web_search_options",
    }
)

_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_REASONING_FIELDS = ("reasoning_content", "reasoning")
_RAW_ARGUMENTS = "_raw_arguments"


# --------------------------------------------------------------------------- vendor shapes
class _Strict(BaseModel):
    """A vendor object whose fields are all known: anything else is an error."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """A vendor object that providers extend: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow", strict=True)


class _TextPart(_Open):
    type: Literal["text"]
    text: str


class _ImageURL(_Strict):
    url: str
    detail: str | None = None


class _ImagePart(_Open):
    type: Literal["image_url"]
    image_url: _ImageURL


class _RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str


class _AudioPart(_Open):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class _FilePart(_Open):
    type: Literal["file"]
    file: dict[str, Any]


_Part = _TextPart | _ImagePart | _RefusalPart | _AudioPart | _FilePart

# Which content parts each role may hold. Images are also read in tool messages: the
# exporter writes them there by default and OpenAI-compatible servers accept them.
_PARTS: dict[str, dict[str, type[_Part]]] = {
    "system": {"text": _TextPart},
    "user": {"text": _TextPart, "image_url": _ImagePart, "input_audio": _AudioPart, "file": _FilePart},
    "assistant": {"text": _TextPart, "refusal": _RefusalPart},
    "tool": {"text": _TextPart, "image_url": _ImagePart},
}


class _SystemMessage(_Open):
    role: Literal["system", "developer"]
    content: Any
    name: str | None = None


class _UserMessage(_Open):
    role: Literal["user"]
    content: Any
    name: str | None = None


class _FunctionCall(_Strict):
    name: str
    arguments: Any


class _ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: _FunctionCall


class _AssistantMessage(_Open):
    role: Literal["assistant"]
    content: Any = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None
    function_call: _FunctionCall | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class _ToolMessage(_Open):
    role: Literal["tool"]
    tool_call_id: str
    content: Any
    name: str | None = None


class _FunctionMessage(_Open):
    role: Literal["function"]
    name: str
    content: str | None


class _FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _ToolDef(_Strict):
    type: Literal["function"] = "function"
    function: _FunctionDef


class _Request(_Open):
    model: str | None = None
    messages: list[Any]
    tools: list[_ToolDef] | None = None
    functions: list[_FunctionDef] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    response: Any = None


class _Choice(_Open):
    index: int | None = None
    message: Any
    finish_reason: str | None = None
    logprobs: Any = None


class _Response(_Open):
    id: str | None = None
    object: Literal["chat.completion"] | None = None
    created: int | None = None
    model: str | None = None
    choices: list[_Choice]
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# ------------------------------------------------------------------------------- import
def parse(data: Any, *, source: str) -> Transcript:
    """A transcript from an already-parsed request body, request+response, or response.

    Also reads what `to_openai_params` returns, so export and import are inverses.
    Raises `FormatError` (with the JSON path of the problem) and nothing else.
    """
    if not isinstance(data, dict):
        raise FormatError(
            f"expected a JSON object holding an OpenAI chat request or chat completion (got {_kind(data)})",
            source=source,
            location="$",
        )
    if "messages" in data:
        reader = _Reader(source)
        return reader.tally.finish(reader.request(data))
    if "choices" in data:
        reader = _Reader(source)
        return reader.tally.finish(reader.bare_response(data))
    raise FormatError(
        'expected an OpenAI chat request (with "messages") or a chat completion response (with "choices")',
        source=source,
        location="$",
    )


class _Reader:
    """Builds one transcript; holds the state that spans messages (tool-result groups,
    unanswered legacy function calls)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[Message] = []
        self.meta: dict[str, Any] = {}
        self.system_segments: list[str] = []
        self.system_records: list[dict[str, Any]] = []
        self.pending_functions: list[tuple[str, str]] = []  # (made-up id, function name)
        self.legacy_calls = 0
        self.tool_group: Message | None = None
        # Chat messages map one to one onto transcript messages (tool messages merge), so
        # each vendor message is counted from what it became, part by part.
        self.tally = ImportTally(format="openai", source=source)

    def error(self, message: str, location: str) -> FormatError:
        return FormatError(message, source=self.source, location=location)

    # ---------------------------------------------------------------- top level
    def request(self, data: dict[str, Any]) -> Transcript:
        body = dict(data)
        extra_body = body.pop("extra_body", None)
        if extra_body is not None:
            if not isinstance(extra_body, dict):
                raise self.error(f"expected an object of extra request fields (got {_kind(extra_body)})", "extra_body")
            body = {**extra_body, **body}
        req = validate(_Request, body, source=self.source, what="an OpenAI chat request")
        self.meta["source"] = "request"

        for i, raw in enumerate(req.messages):
            self.message(raw, f"messages[{i}]")
        tools = self.tools(req)

        generation: dict[str, Any] = {"temperature": req.temperature, "top_p": req.top_p}
        request_only: dict[str, Any] = {}
        if req.max_completion_tokens is not None:
            generation["max_tokens"] = req.max_completion_tokens
            self.meta["max_tokens_field"] = "max_completion_tokens"
            if req.max_tokens is not None:
                request_only["max_tokens"] = req.max_tokens  # superseded; kept, not used
        elif req.max_tokens is not None:
            generation["max_tokens"] = req.max_tokens
            self.meta["max_tokens_field"] = "max_tokens"
        for key, value in (req.model_extra or {}).items():
            (request_only if key in _REQUEST_ONLY_KEYS else generation)[key] = value
        if request_only:
            self.meta["request"] = request_only
        config = validate(GenerationConfig, generation, source=self.source, what="generation settings")

        model = req.model
        if req.response is not None:
            self.meta["source"] = "request+response"
            response_model = self.response(req.response, "response")
            model = model or response_model
        return self.transcript(model=model, tools=tools, generation=config)

    def bare_response(self, data: dict[str, Any]) -> Transcript:
        self.meta["source"] = "response"
        model = self.response(data, "")
        return self.transcript(model=model, tools=[], generation=GenerationConfig())

    def transcript(self, *, model: str | None, tools: list[ToolSpec], generation: GenerationConfig) -> Transcript:
        system: str | None = None
        if self.system_records:
            system = "\n\n".join(self.system_segments)
            self.meta["system_messages"] = self.system_records
        return Transcript(
            system=system,
            tools=tools,
            messages=self.messages,
            model=model,
            generation=generation,
            metadata={"openai": self.meta, "harness": "openai-chat"},
        )

    def response(self, data: Any, prefix: str) -> str | None:
        """Append a chat completion's first choice; keep the rest in metadata. Returns
        the model the response names."""
        resp = validate(_Response, data, source=self.source, prefix=prefix, what="an OpenAI chat completion")
        at = f"{prefix}.choices" if prefix else "choices"
        if not resp.choices:
            raise self.error("a chat completion needs at least one choice", at)
        extra_keys = set(resp.model_extra or {})
        kept = {k: v for k, v in resp.model_dump(exclude={"choices"}).items() if v is not None or k in extra_keys}
        others: list[dict[str, Any]] = []
        for j, choice in enumerate(resp.choices):
            loc = f"{at}[{j}].message"
            if not isinstance(choice.message, dict):
                raise self.error(f"expected an assistant message object (got {_kind(choice.message)})", loc)
            role = choice.message.get("role", "assistant")
            if role != "assistant":
                raise self.error(f"Input should be 'assistant' (got {_short(role)})", f"{loc}.role")
            msg = self.assistant({**choice.message, "role": "assistant"}, loc, in_response=True)
            msg.id = resp.id
            if choice.finish_reason is not None:
                msg.metadata["finish_reason"] = choice.finish_reason
            extra = dict(choice.model_extra or {})
            if choice.logprobs is not None:
                extra["logprobs"] = choice.logprobs
            if extra:
                msg.metadata.setdefault("openai", {})["choice"] = extra
            self.tally.count_messages([msg])
            if j == 0:
                self.tool_group = None
                self.messages.append(msg)
            else:
                others.append({"index": choice.index, "message": msg.model_dump(mode="json")})
                self.tally.keep("other choices of the response", count_blocks([msg]))
        if others:
            kept["other_choices"] = others
        self.meta["response"] = kept
        return resp.model

    def tools(self, req: _Request) -> list[ToolSpec]:
        """Tool specs from ``tools`` (function tools) and the legacy ``functions`` list;
        fields beside name/description/parameters (``strict``) are kept per tool name."""
        specs: list[ToolSpec] = []
        tool_extra: dict[str, Any] = {}
        legacy: list[str] = []
        defs = [(t.function, False) for t in req.tools or []] + [(f, True) for f in req.functions or []]
        for fn, is_legacy in defs:
            spec = ToolSpec(name=fn.name, description=fn.description or "")
            if fn.parameters is not None:
                spec.input_schema = fn.parameters
            specs.append(spec)
            if fn.model_extra:
                tool_extra[fn.name] = dict(fn.model_extra)
            if is_legacy:
                legacy.append(fn.name)
        if tool_extra:
            self.meta["tool_extra"] = tool_extra
        if legacy:
            self.meta["legacy_functions"] = legacy
        return specs

    # ----------------------------------------------------------------- messages
    def message(self, raw: Any, loc: str) -> None:
        role = self.role(raw, loc)
        if role in ("tool", "function"):
            block, side = self.tool_message(raw, loc) if role == "tool" else self.function_message(raw, loc)
            self.tally.count(messages=1, tool_results=1)
            if self.tool_group is None:
                self.tool_group = Message(role="user")
                self.messages.append(self.tool_group)
            else:
                self.tally.merge(messages=1)
            if side:
                blocks = self.tool_group.metadata.setdefault("openai", {}).setdefault("blocks", {})
                blocks[str(len(self.tool_group.content))] = side
            self.tool_group.content.append(block)
            return
        self.tool_group = None
        if role in ("system", "developer"):
            self.system_message(raw, loc)
            return
        msg = self.user(raw, loc) if role == "user" else self.assistant(raw, loc)
        self.tally.count_messages([msg])
        self.messages.append(msg)

    def role(self, raw: Any, loc: str) -> str:
        if not isinstance(raw, dict):
            raise self.error(f"expected a message object (got {_kind(raw)})", loc)
        role = raw.get("role")
        if role is None:
            raise self.error(f"this field is required — expected one of {_one_of(_ROLES)}", f"{loc}.role")
        if not isinstance(role, str) or role not in _ROLES:
            raise self.error(f"Input should be {_one_of(_ROLES)} (got {_short(role)})", f"{loc}.role")
        return role

    def system_message(self, raw: Any, loc: str) -> None:
        msg = validate(_SystemMessage, raw, source=self.source, prefix=loc)
        sides: dict[str, dict[str, Any]] = {}
        if isinstance(msg.content, str):
            texts, parts = [msg.content], False
        else:
            blocks, sides, _ = self.parts(msg.content, f"{loc}.content", "system")
            texts, parts = [b.text for b in blocks if isinstance(b, TextBlock)], True
        if not self.messages:  # nothing but system messages so far: part of the system prompt
            record: dict[str, Any] = {"role": msg.role, "lengths": [len(t) for t in texts], "parts": parts}
            if sides:
                record["blocks"] = sides
            if msg.name is not None:
                record["name"] = msg.name
            if msg.model_extra:
                record["extra"] = dict(msg.model_extra)
            self.system_segments += texts
            self.system_records.append(record)
            self.tally.count(messages=1, text=len(texts))
            self.tally.keep("system prompt", {"messages": 1, "text": len(texts)})
            return
        metadata: dict[str, Any] = {"source_role": msg.role}
        if sides:
            metadata["openai"] = {"blocks": sides}
        self.common_metadata(metadata, msg)
        content: list[ContentBlock] = [TextBlock(text=t) for t in texts if parts or t]
        later = Message(role="user", content=content, metadata=metadata)
        self.tally.count_messages([later])
        self.messages.append(later)

    def user(self, raw: Any, loc: str) -> Message:
        msg = validate(_UserMessage, raw, source=self.source, prefix=loc)
        metadata: dict[str, Any] = {}
        openai: dict[str, Any] = {}
        blocks, sides, unsupported = self.parts(msg.content, f"{loc}.content", "user")
        if sides:
            openai["blocks"] = sides
        if unsupported:
            openai["unsupported_parts"] = unsupported
            self.tally.count(other=len(unsupported))
            self.tally.keep("audio and file parts (kept whole in message metadata)", {"other": len(unsupported)})
        if openai:
            metadata["openai"] = openai
        self.common_metadata(metadata, msg)
        return Message(role="user", content=blocks, metadata=metadata)

    def assistant(self, raw: Any, loc: str, *, in_response: bool = False) -> Message:
        """An assistant message. Unknown fields of a *response* message (``annotations``,
        ``audio``, gateway additions) are kept under ``response_fields``, not ``extra``: they
        are not request fields, so the exporter must not send them back."""
        msg = validate(_AssistantMessage, raw, source=self.source, prefix=loc)
        blocks: list[ContentBlock] = []
        sides: dict[str, dict[str, Any]] = {}
        openai: dict[str, Any] = {}

        reasoning = {f: getattr(msg, f) for f in _REASONING_FIELDS if getattr(msg, f)}
        for text in dict.fromkeys(reasoning.values()):  # one block when both fields agree
            blocks.append(ThinkingBlock(thinking=text))
        if reasoning and list(reasoning) != ["reasoning_content"]:
            openai["reasoning_fields"] = list(reasoning)

        if msg.content is not None:
            content, content_sides, _ = self.parts(msg.content, f"{loc}.content", "assistant")
            for i, side in content_sides.items():
                sides[str(int(i) + len(blocks))] = side
            blocks += content
        if msg.refusal:
            sides[str(len(blocks))] = {"refusal": "field"}
            blocks.append(TextBlock(text=msg.refusal))

        for j, call in enumerate(msg.tool_calls or []):
            side = {"extra": dict(call.model_extra)} if call.model_extra else {}
            block = self.tool_use(call.id, call.function, f"{loc}.tool_calls[{j}].function.arguments", side)
            if side:
                sides[str(len(blocks))] = side
            blocks.append(block)
        if msg.function_call is not None:
            call_id = f"function_call_{self.legacy_calls}"
            self.legacy_calls += 1
            side = {"legacy": True}
            blocks.append(self.tool_use(call_id, msg.function_call, f"{loc}.function_call.arguments", side))
            sides[str(len(blocks) - 1)] = side
            self.pending_functions.append((call_id, msg.function_call.name))

        if sides:
            openai["blocks"] = sides
        metadata: dict[str, Any] = {"openai": openai} if openai else {}
        self.common_metadata(metadata, msg, "response_fields" if in_response else "extra")
        return Message(role="assistant", content=blocks, metadata=metadata)

    def tool_use(self, call_id: str, fn: _FunctionCall, loc: str, side: dict[str, Any]) -> ToolUseBlock:
        """A tool call; arguments that are not a JSON object are kept raw (see module doc)."""
        args = fn.arguments
        if isinstance(args, dict):  # some servers (Ollama) send an object, not a string
            return ToolUseBlock(id=call_id, name=fn.name, input=args)
        if not isinstance(args, str):
            raise self.error(f"expected the arguments as a JSON string (got {_kind(args)})", loc)
        parsed = _json_object(args)
        if parsed is None:
            side["raw_arguments"] = True
            return ToolUseBlock(id=call_id, name=fn.name, input={_RAW_ARGUMENTS: args})
        return ToolUseBlock(id=call_id, name=fn.name, input=parsed)

    def tool_message(self, raw: Any, loc: str) -> tuple[ToolResultBlock, dict[str, Any]]:
        msg = validate(_ToolMessage, raw, source=self.source, prefix=loc)
        items, item_sides, _ = self.parts(msg.content, f"{loc}.content", "tool")
        side: dict[str, Any] = {}
        if msg.name is not None:
            side["name"] = msg.name
        if msg.model_extra:
            side["extra"] = dict(msg.model_extra)
        if item_sides:
            side["items"] = item_sides
        result_items = [b for b in items if isinstance(b, TextBlock | ImageBlock)]
        return ToolResultBlock(tool_use_id=msg.tool_call_id, content=result_items), side

    def function_message(self, raw: Any, loc: str) -> tuple[ToolResultBlock, dict[str, Any]]:
        msg = validate(_FunctionMessage, raw, source=self.source, prefix=loc)
        for k in range(len(self.pending_functions) - 1, -1, -1):
            call_id, name = self.pending_functions[k]
            if name == msg.name:
                del self.pending_functions[k]
                break
        else:
            raise self.error(
                f"function message {msg.name!r} answers no earlier function_call of that name", f"{loc}.name"
            )
        side = {"extra": dict(msg.model_extra)} if msg.model_extra else {}
        content: list[TextBlock | ImageBlock] = [TextBlock(text=msg.content)] if msg.content else []
        return ToolResultBlock(tool_use_id=call_id, content=content), side

    def parts(
        self, content: Any, loc: str, role: str
    ) -> tuple[list[ContentBlock], dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """Blocks from a string or a list of content parts, the side facts of each block
        (by block index), and the parts that have no block type (with their index)."""
        if isinstance(content, str):
            return ([TextBlock(text=content)] if content else []), {}, []
        if not isinstance(content, list):
            raise self.error(f"expected a string or a list of content parts (got {_kind(content)})", loc)
        allowed = _PARTS[role]
        blocks: list[ContentBlock] = []
        sides: dict[str, dict[str, Any]] = {}
        unsupported: list[dict[str, Any]] = []
        for j, raw in enumerate(content):
            at = f"{loc}[{j}]"
            if not isinstance(raw, dict):
                raise self.error(f"expected a content part object (got {_kind(raw)})", at)
            kind = raw.get("type")
            if not isinstance(kind, str) or kind not in allowed:
                got = "nothing" if kind is None else _short(kind)
                raise self.error(
                    f"Input should be {_one_of(tuple(allowed))} in a {role} message (got {got})", f"{at}.type"
                )
            part = validate(allowed[kind], raw, source=self.source, prefix=at)
            side: dict[str, Any] = {"extra": dict(part.model_extra)} if part.model_extra else {}
            if isinstance(part, _TextPart):
                blocks.append(TextBlock(text=part.text))
            elif isinstance(part, _RefusalPart):
                side["refusal"] = "part"
                blocks.append(TextBlock(text=part.refusal))
            elif isinstance(part, _ImagePart):
                if part.image_url.detail is not None:
                    side["detail"] = part.image_url.detail
                blocks.append(_image_from_url(part.image_url.url))
            else:
                unsupported.append({"index": j, "part": raw})
                continue
            if side:
                sides[str(len(blocks) - 1)] = side
        return blocks, sides, unsupported

    @staticmethod
    def common_metadata(
        metadata: dict[str, Any], msg: _SystemMessage | _UserMessage | _AssistantMessage, extra_key: str = "extra"
    ) -> None:
        """`name` to ``metadata["name"]``, unknown fields to ``metadata["openai"][extra_key]``."""
        if msg.name is not None:
            metadata["name"] = msg.name
        if msg.model_extra:
            metadata.setdefault("openai", {})[extra_key] = dict(msg.model_extra)


def _json_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as a strict JSON object, or None when it is anything else."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _image_from_url(url: str) -> ImageBlock:
    """A base64 ``data:`` URL becomes inline data; any other URL is kept as a URL."""
    if url.startswith("data:") and "," in url:
        header, data = url[5:].split(",", 1)
        if header.endswith(";base64"):
            media_type = header[: -len(";base64")].split(";", 1)[0]
            return ImageBlock(media_type=media_type or None, data=data)
    return ImageBlock(url=url)


def _kind(value: Any) -> str:
    """A JSON type name for messages: 'null', 'list', 'string', ..."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# ------------------------------------------------------------------------------- export
class _SystemRecord(BaseModel):
    """One leading system/developer message as the importer recorded it."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer"]
    lengths: list[int]
    parts: bool = False
    name: str | None = None
    blocks: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


def to_openai_params(
    transcript: Transcript,
    *,
    include_reasoning: bool = True,
    tool_result_images: Literal["inline", "user_message"] = "inline",
) -> dict[str, Any]:
    """Keyword arguments for ``client.chat.completions.create(**params)``.

    The system prompt comes first, thinking goes to ``reasoning_content`` (or the field it
    was read from) unless `include_reasoning` is False (OpenAI's own models refuse the
    field; DeepSeek/vLLM reasoning models use it), tool calls get JSON-string arguments,
    each tool result is its own ``tool`` message, images are ``image_url`` parts (``data:``
    URLs for inline data). OpenAI itself accepts images only in user messages: with
    ``tool_result_images="user_message"`` the images of a run of tool results follow it in
    a user message instead of sitting inside the tool messages (the default, which reads
    back identically). Generation settings the SDK has no keyword for go in
    ``extra_body``; ``model`` is left out when the transcript names none.
    Raises `ExportError` for content the format cannot hold.
    """
    if tool_result_images not in ("inline", "user_message"):
        raise ValueError(f"tool_result_images must be 'inline' or 'user_message', not {tool_result_images!r}")
    return _Writer(transcript, include_reasoning, tool_result_images).params()


class _Writer:
    """Builds the kwargs for one transcript. Metadata is read defensively (every shape
    check falls back to the default), because investigators edit transcripts by hand."""

    def __init__(self, transcript: Transcript, include_reasoning: bool, tool_result_images: str) -> None:
        self.t = transcript
        self.meta = _dict(transcript.metadata.get("openai"))
        self.include_reasoning = include_reasoning
        self.tool_result_images = tool_result_images
        self.legacy: dict[str, str] = {}  # made-up id of a legacy function_call -> its name

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.t.model is not None:
            params["model"] = self.t.model
        messages = self.system_messages()
        for mi, msg in enumerate(self.t.messages):
            if msg.role == "assistant":
                messages.append(self.assistant(msg, mi))
            elif msg.metadata.get("source_role") in ("system", "developer"):
                messages.append(self.system_role_message(msg, mi))
            else:
                messages += self.user(msg, mi)
        params["messages"] = messages
        self.tools(params)
        self.generation(params)
        return params

    # ------------------------------------------------------------------ system
    def system_messages(self) -> list[dict[str, Any]]:
        system = self.t.system
        if system is None:
            return []
        try:
            records = [_SystemRecord.model_validate(r) for r in _list(self.meta.get("system_messages"))]
        except ValidationError:
            records = []
        if records and all(r.parts or len(r.lengths) == 1 for r in records):
            segments = _split(system, [n for r in records for n in r.lengths])
            if segments is not None:
                out: list[dict[str, Any]] = []
                for r in records:
                    mine, segments = segments[: len(r.lengths)], segments[len(r.lengths) :]
                    content: Any = (
                        [_part(TextBlock(text=s), _dict(r.blocks.get(str(i))), "system") for i, s in enumerate(mine)]
                        if r.parts
                        else mine[0]
                    )
                    out.append(_with_name({**r.extra, "role": r.role, "content": content}, r.name))
                return out
        role = records[0].role if records else "system"
        return [{"role": role, "content": system}]

    def system_role_message(self, msg: Message, mi: int) -> dict[str, Any]:
        """A user message that was a mid-conversation system/developer message."""
        meta = _dict(msg.metadata.get("openai"))
        sides = _dict(meta.get("blocks"))
        role = msg.metadata["source_role"]
        parts = []
        for bi, block in enumerate(msg.content):
            if not isinstance(block, TextBlock):
                raise ExportError(
                    f"message {mi} block {bi}: a {role} message can hold only text, not a {block.type} block"
                )
            parts.append(_part(block, _dict(sides.get(str(bi))), f"message {mi} block {bi}"))
        out = {**_extra(meta), "role": role, "content": _compact(parts)}
        return _with_name(out, msg.metadata.get("name"))

    # -------------------------------------------------------------------- user
    def user(self, msg: Message, mi: int) -> list[dict[str, Any]]:
        """A user message: runs of tool results become tool messages, runs of text and
        images user messages, in block order."""
        meta = _dict(msg.metadata.get("openai"))
        sides = _dict(meta.get("blocks"))
        out: list[dict[str, Any]] = []
        users: list[dict[str, Any]] = []  # the user messages written, whose content is compacted last
        run: list[dict[str, Any]] = []  # content parts of the user message being gathered
        images: list[dict[str, Any]] = []  # tool-result images to follow the tool messages

        def end_run() -> None:
            if run:
                users.append(_with_name({**_extra(meta), "role": "user", "content": run[:]}, msg.metadata.get("name")))
                out.append(users[-1])
                run.clear()

        def end_images() -> None:
            if images:
                out.append({"role": "user", "content": images[:]})
                images.clear()

        for bi, block in enumerate(msg.content):
            side = _dict(sides.get(str(bi)))
            if isinstance(block, ToolResultBlock):
                end_run()
                out.append(self.tool_result(block, side, mi, bi, images))
            elif isinstance(block, TextBlock | ImageBlock):
                end_images()
                run.append(_part(block, side, f"message {mi} block {bi}"))
            else:
                raise ExportError(f"message {mi} block {bi}: a user message cannot hold a {block.type} block in OpenAI")
        end_run()
        end_images()

        unsupported = [u for u in _list(meta.get("unsupported_parts")) if _is_unsupported_part(u)]
        if not users and (unsupported or not msg.content):
            users.append(_with_name({**_extra(meta), "role": "user", "content": []}, msg.metadata.get("name")))
            out.append(users[-1])
        for entry in sorted(unsupported, key=lambda u: int(u["index"])):
            users[0]["content"].insert(entry["index"], entry["part"])
        for message in users:
            message["content"] = _compact(message["content"])
        return out

    def tool_result(
        self, block: ToolResultBlock, side: dict[str, Any], mi: int, bi: int, images: list[dict[str, Any]]
    ) -> dict[str, Any]:
        item_sides = _dict(side.get("items"))
        parts: list[dict[str, Any]] = []
        for ii, item in enumerate(block.content):
            part = _part(item, _dict(item_sides.get(str(ii))), f"message {mi} block {bi} item {ii}")
            if isinstance(item, ImageBlock) and self.tool_result_images == "user_message":
                images.append(part)
            else:
                parts.append(part)
        if block.tool_use_id in self.legacy:
            if any(p["type"] != "text" for p in parts):
                raise ExportError(f"message {mi} block {bi}: a legacy function result can hold only text")
            text = "\n".join(p["text"] for p in parts)
            return {**_extra(side), "role": "function", "name": self.legacy[block.tool_use_id], "content": text}
        out = {**_extra(side), "role": "tool", "tool_call_id": block.tool_use_id, "content": _compact(parts)}
        return _with_name(out, side.get("name"))

    # --------------------------------------------------------------- assistant
    def assistant(self, msg: Message, mi: int) -> dict[str, Any]:
        meta = _dict(msg.metadata.get("openai"))
        sides = _dict(meta.get("blocks"))
        thinking: list[str] = []
        parts: list[dict[str, Any]] = []
        refusal: str | None = None
        tool_calls: list[dict[str, Any]] = []
        function_call: dict[str, Any] | None = None
        for bi, block in enumerate(msg.content):
            side = _dict(sides.get(str(bi)))
            where = f"message {mi} block {bi}"
            if isinstance(block, ThinkingBlock):
                if not block.redacted:
                    thinking.append(block.thinking)
            elif isinstance(block, TextBlock):
                if side.get("refusal") == "field" and refusal is None:
                    refusal = block.text
                elif side.get("refusal") in ("field", "part"):
                    parts.append({**_extra(side), "type": "refusal", "refusal": block.text})
                else:
                    parts.append(_part(block, side, where))
            elif isinstance(block, ToolUseBlock) and block.side == "server":
                raise ExportError(
                    f"{where}: tool call {block.id} ({block.name}) was run server-side by the model provider; Chat "
                    "Completions has no server-side tool calls (export to the provider's own format instead)"
                )
            elif isinstance(block, ToolUseBlock):
                fn = {"name": block.name, "arguments": _arguments(block, side, where)}
                if side.get("legacy") is True and function_call is None:
                    function_call = fn
                    self.legacy[block.id] = block.name
                else:
                    tool_calls.append({**_extra(side), "id": block.id, "type": "function", "function": fn})
            else:
                raise ExportError(f"{where}: an assistant message cannot hold a {block.type} block in OpenAI")

        out: dict[str, Any] = {**_extra(meta), "role": "assistant"}
        if parts:
            out["content"] = _compact(parts)
        else:
            out["content"] = None if (tool_calls or function_call or refusal is not None) else ""
        if refusal is not None:
            out["refusal"] = refusal
        if tool_calls:
            out["tool_calls"] = tool_calls
        if function_call is not None:
            out["function_call"] = function_call
        if thinking and self.include_reasoning:
            fields = [f for f in _list(meta.get("reasoning_fields")) if f in _REASONING_FIELDS] or ["reasoning_content"]
            if len(fields) == len(thinking):
                out.update(zip(fields, thinking, strict=True))
            elif len(thinking) == 1:
                out.update(dict.fromkeys(fields, thinking[0]))
            else:
                out[fields[0]] = "\n\n".join(thinking)
        return _with_name(out, msg.metadata.get("name"))

    # --------------------------------------------------------- tools, settings
    def tools(self, params: dict[str, Any]) -> None:
        legacy = {name for name in _list(self.meta.get("legacy_functions")) if isinstance(name, str)}
        extras = _dict(self.meta.get("tool_extra"))
        tools: list[dict[str, Any]] = []
        functions: list[dict[str, Any]] = []
        for spec in self.t.tools:
            fn: dict[str, Any] = {**_dict(extras.get(spec.name)), "name": spec.name}
            if spec.description:
                fn["description"] = spec.description
            fn["parameters"] = spec.input_schema
            if spec.name in legacy:
                functions.append(fn)
            else:
                tools.append({"type": "function", "function": fn})
        if tools:
            params["tools"] = tools
        if functions:
            params["functions"] = functions

    def generation(self, params: dict[str, Any]) -> None:
        gen = self.t.generation
        if gen.temperature is not None:
            params["temperature"] = gen.temperature
        if gen.top_p is not None:
            params["top_p"] = gen.top_p
        if gen.max_tokens is not None:
            field = self.meta.get("max_tokens_field")
            params[field if field in ("max_tokens", "max_completion_tokens") else "max_completion_tokens"] = (
                gen.max_tokens
            )
        extra_body: dict[str, Any] = {}
        for key, value in (gen.model_extra or {}).items():
            if key in params or key in ("model", "messages", "tools"):
                continue
            (params if key in _CREATE_PARAMS else extra_body)[key] = value
        if extra_body:
            params["extra_body"] = extra_body


def _part(block: TextBlock | ImageBlock, side: dict[str, Any], where: str) -> dict[str, Any]:
    """A content part for a text or image block, with the side facts the import kept."""
    if isinstance(block, TextBlock):
        return {**_extra(side), "type": "text", "text": block.text}
    if block.data is not None:
        if not block.media_type:
            raise ExportError(f"{where}: an inline image needs a media_type to become a data: URL")
        url = f"data:{block.media_type};base64,{block.data}"
    elif block.url is not None:
        url = block.url
    else:
        raise ExportError(f"{where}: the image has neither data nor a URL")
    image_url: dict[str, Any] = {"url": url}
    if isinstance(side.get("detail"), str):
        image_url["detail"] = side["detail"]
    return {**_extra(side), "type": "image_url", "image_url": image_url}


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain non-empty text part as a string (what clients usually send); other
    content stays a list, so that it reads back to the same blocks."""
    if len(parts) == 1 and set(parts[0]) == {"type", "text"} and parts[0]["type"] == "text" and parts[0]["text"]:
        text: str = parts[0]["text"]
        return text
    return parts if parts else ""


def _arguments(block: ToolUseBlock, side: dict[str, Any], where: str) -> str:
    raw = block.input.get(_RAW_ARGUMENTS)
    if side.get("raw_arguments") is True and isinstance(raw, str) and len(block.input) == 1:
        return raw
    try:
        return json.dumps(block.input, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{where}: tool call {block.id} has input that is not JSON ({exc})") from None


def _split(text: str, lengths: list[int]) -> list[str] | None:
    """`text` cut into segments of `lengths` separated by blank lines, or None when the
    text no longer fits them (it was edited since import)."""
    out: list[str] = []
    pos = 0
    for k, n in enumerate(lengths):
        if k:
            if text[pos : pos + 2] != "\n\n":
                return None
            pos += 2
        if n < 0 or pos + n > len(text):
            return None
        out.append(text[pos : pos + n])
        pos += n
    return out if pos == len(text) else None


def _is_unsupported_part(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("index"), int)
        and not isinstance(entry.get("index"), bool)
        and entry["index"] >= 0
        and isinstance(entry.get("part"), dict)
    )


def _with_name(message: dict[str, Any], name: Any) -> dict[str, Any]:
    if isinstance(name, str):
        message["name"] = name
    return message


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _extra(side: dict[str, Any]) -> dict[str, Any]:
    """The unknown vendor fields kept at import (only string keys)."""
    return {k: v for k, v in _dict(side.get("extra")).items() if isinstance(k, str)}


# -------------------------------------------------------------------------------- sniff
_SNIFF_ROLES = frozenset({"system", "developer", "tool", "function"})
_SNIFF_PARTS = frozenset({"image_url", "input_audio", "refusal"})
_ANTHROPIC_BLOCKS = frozenset(
    {"tool_use", "tool_result", "thinking", "redacted_thinking", "server_tool_use", "document", "search_result"}
)
_SNIFF_KEYS = frozenset(
    {"max_completion_tokens", "reasoning_effort", "response_format", "frequency_penalty", "presence_penalty"}
    | {"logit_bias", "parallel_tool_calls", "functions", "n"}
)


def sniff(path: Path, data: Any) -> bool:
    """Whether parsed JSON is an OpenAI chat request or completion. Claims a request only
    on OpenAI-only evidence (a system/developer/tool/function role, ``tool_calls``, an
    ``image_url`` part, a function tool, an OpenAI-only parameter) and never a body with
    Anthropic content blocks or a top-level ``system``. Never raises."""
    if not isinstance(data, dict) or "system" in data:
        return False
    if _is_response(data):
        return True
    messages = data.get("messages")
    if not isinstance(messages, list):
        return False
    evidence = _is_response(data.get("response")) or any(k in data for k in _SNIFF_KEYS)
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and (kind in _ANTHROPIC_BLOCKS or (kind == "image" and "source" in part)):
                return False
            evidence = evidence or (isinstance(kind, str) and kind in _SNIFF_PARTS)
        role = message.get("role")
        evidence = evidence or (isinstance(role, str) and role in _SNIFF_ROLES)
        evidence = evidence or (role == "assistant" and ("tool_calls" in message or "function_call" in message))
    tools = data.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        evidence = evidence or (isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool)
    return evidence


def _is_response(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    choices = data.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
    )


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


def refusal(path: Path, data: Any) -> str:
    """Why `sniff` refused a file, in words (for the detection error)."""
    if not isinstance(data, dict):
        return "an OpenAI chat request or completion is a JSON object"
    if "system" in data:
        return "it has a top-level 'system' (an Anthropic body, not an OpenAI one)"
    if "choices" in data and not _is_response(data):
        return "'choices' must be a non-empty list of objects with a 'message'"
    messages = data.get("messages")
    if not isinstance(messages, list):
        return "it has neither 'messages' (a request) nor 'choices' (a completion)"
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind in _ANTHROPIC_BLOCKS:
                return f"messages[{i}] holds an Anthropic {kind!r} block"
    return (
        "nothing in it is OpenAI-only (a system/developer/tool role, tool_calls, an image_url part, a function tool "
        "or an OpenAI-only parameter), so it is read as Anthropic or another format instead"
    )


IMPORTER = Importer(
    name="openai",
    description="OpenAI Chat Completions request body, request with its response, or chat completion response",
    sniff=sniff,
    load=_load,
    markers=frozenset(
        {"messages", "choices", "object", "tool_choice", "max_completion_tokens", "response_format", "n", "seed"}
    ),
    refusal=refusal,
)
