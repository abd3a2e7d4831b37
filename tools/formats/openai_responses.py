"""OpenAI Responses API: request bodies (``input`` items), responses (``output`` items),
both together, or a list of conversation items.

Shapes read (`parse` tells them apart):

* a **request** ``{"model", "instructions", "input": str | [items], "tools", ...}``,
  optionally with the ``"response"`` it got;
* a **response** ``{"object": "response", "id", "output": [items], "instructions", ...}``;
* an **item list** ``{"object": "list", "data": [items]}`` (the conversation items
  endpoint) or a bare JSON array of items.

Items map onto the transcript as follows (`ItemReader`, shared with the Codex rollout
importer, whose ``response_item`` records are the same items):

* ``message`` with role ``user`` → a user message; ``system``/``developer`` before any
  other item → `Transcript.system` (after ``instructions``, joined by a blank line),
  later → a user message with ``metadata["source_role"]``; ``assistant`` (``output_text``
  and ``refusal`` parts) → text in the assistant turn. Parts: ``input_text`` /
  ``output_text`` → text, ``input_image`` → image (URL or data URL; a ``file_id`` is kept
  in metadata), ``input_file`` → kept whole in metadata (no block type).
* ``reasoning`` → a `ThinkingBlock`: the raw ``content`` (``reasoning_text``) when the
  item has it, else the ``summary`` texts. A summary is what the API chose to show, not
  the chain of thought: such a block has ``metadata["reasoning_summary_only"]`` and the
  import report says so. ``encrypted_content`` is kept as the block's ``signature``
  (opaque, only the API can read it); an item with no readable text is ``redacted``.
* Tool calls the harness runs (``function_call``, ``custom_tool_call``,
  ``local_shell_call``, ``shell_call``, ``apply_patch_call``, ``computer_call``) →
  `ToolUseBlock` keyed by ``call_id``; their outputs (``function_call_output``,
  ``custom_tool_call_output``, ``local_shell_call_output``, ``shell_call_output``,
  ``apply_patch_call_output``, ``computer_call_output``) → `ToolResultBlock` in a user
  message. Inputs: a function call's JSON ``arguments`` (kept raw under
  ``_raw_arguments`` when they are not a JSON object), ``{"input": ...}`` for a custom
  (free-form) call, the ``action`` of a shell call, the ``operation`` of an apply_patch
  call. Shell outputs render stdout, stderr and the exit code or timeout; a failed
  apply_patch output is an error.
* Tools OpenAI runs (``web_search_call``, ``file_search_call``, ``code_interpreter_call``,
  ``image_generation_call``, ``mcp_call``) → `ToolUseBlock(side="server")` in the
  assistant turn, followed by a server-side `ToolResultBlock` when the item carries its
  results (file-search results, interpreter logs and images, the generated image, the
  MCP output or error). A web search records only its action and sources.
* ``compaction`` → `CompactionBlock` (``encrypted_content`` only: the summary is opaque).
* ``mcp_list_tools``, ``mcp_approval_request``/``_response``, ``item_reference`` and item
  types this importer does not know are kept whole, with their position, in
  ``metadata["openai_responses"]["other_items"]``, counted and warned about.

Every item's ``id``, ``status`` and fields with no place in a block go to the message's
``metadata["openai_responses"]["items"]`` (keyed by block index). Consecutive model
items form one assistant turn; consecutive tool outputs one user message.

Tools: function and custom tools become `ToolSpec`s (a custom tool takes
``{"input": string}``); built-in tools (``web_search``, ``shell``, ``apply_patch``,
``mcp``, ...) a `ToolSpec` named by their type, with the definition kept in
``metadata["openai_responses"]["tools"]``. Generation: ``temperature``, ``top_p``,
``max_output_tokens``; ``reasoning.effort`` as ``reasoning_effort``; every other request
field in ``metadata["openai_responses"]["request"]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, LoadOptions, read_json
from tools.formats.common import Conversation, arguments_input, join_location, kind_of, shown, validate_at
from tools.transcript import (
    CompactionBlock,
    ContentBlock,
    GenerationConfig,
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

HARNESS = "openai-responses"

#: Item types of calls the harness executes, with the tool name each becomes.
CLIENT_CALLS: dict[str, str | None] = {
    "function_call": None,  # named by the item
    "custom_tool_call": None,
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
    "computer_call": "computer",
}
CALL_OUTPUTS = frozenset(
    {
        "function_call_output",
        "custom_tool_call_output",
        "local_shell_call_output",
        "shell_call_output",
        "apply_patch_call_output",
        "computer_call_output",
    }
)
SERVER_CALLS: dict[str, str] = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "mcp_call": "mcp",
}
KEPT_ITEMS = frozenset({"mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "item_reference"})

_GENERATION_KEYS = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "max_tokens"}


# --------------------------------------------------------------------- vendor shapes
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Part(_Open):
    type: str


class _MessageItem(_Open):
    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[dict[str, Any]]
    id: str | None = None
    status: str | None = None


class _Reasoning(_Open):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = []
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class _FunctionCall(_Open):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: Any
    id: str | None = None
    status: str | None = None


class _CustomCall(_Open):
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    id: str | None = None


class _LocalShellCall(_Open):
    type: Literal["local_shell_call"]
    action: dict[str, Any]
    call_id: str | None = None
    id: str | None = None
    status: str | None = None


class _ShellCall(_Open):
    type: Literal["shell_call"]
    call_id: str
    action: dict[str, Any]
    id: str | None = None
    status: str | None = None


class _ApplyPatchCall(_Open):
    type: Literal["apply_patch_call"]
    call_id: str
    operation: dict[str, Any]
    id: str | None = None
    status: str | None = None


class _ComputerCall(_Open):
    type: Literal["computer_call"]
    call_id: str
    action: dict[str, Any]
    id: str | None = None
    status: str | None = None


class _Output(_Open):
    type: str
    call_id: str | None = None
    id: str | None = None
    output: Any = None
    status: str | None = None


class _ServerCall(_Open):
    type: str
    id: str | None = None  # Codex does not keep the ids of its web searches
    status: str | None = None


class _Compaction(_Open):
    type: Literal["compaction"]
    encrypted_content: str
    id: str | None = None


_CALL_MODELS: dict[str, type[_Open]] = {
    "function_call": _FunctionCall,
    "custom_tool_call": _CustomCall,
    "local_shell_call": _LocalShellCall,
    "shell_call": _ShellCall,
    "apply_patch_call": _ApplyPatchCall,
    "computer_call": _ComputerCall,
}


# ------------------------------------------------------------------- item mapping
@dataclass
class ItemReader:
    """Maps a stream of Responses items onto messages. `where(i)` names item *i* for
    errors (``input[3]``, ``line 12: payload``)."""

    source: str
    tally: ImportTally
    conversation: Conversation = field(init=False)
    system_texts: list[str] = field(default_factory=list)
    other_items: list[dict[str, Any]] = field(default_factory=list)
    summary_only: int = 0
    unnamed_calls: int = 0
    status_of: Callable[[str, str, Any], str | None] | None = None
    """Optional hook (harness-specific) giving a call's status from its output text."""

    def __post_init__(self) -> None:
        self.conversation = Conversation(self.tally)

    @property
    def messages(self) -> list[Message]:
        return self.conversation.messages

    def item(self, raw: Any, where: str, *, extra_meta: dict[str, Any] | None = None) -> None:
        """Read one item (``where`` locates it for errors)."""
        if not isinstance(raw, dict):
            raise FormatError(
                f"expected an item (a JSON object), got {kind_of(raw)}", source=self.source, location=where
            )
        kind = raw.get("type")
        if kind is None and "role" in raw:
            kind = "message"  # EasyInputMessage: {"role", "content"} without a type
        if not isinstance(kind, str):
            raise FormatError(
                f"expected a string naming the item type (got {shown(kind)})",
                source=self.source,
                location=_at(where, "type"),
            )
        if kind == "message":
            self.message(raw, where, extra_meta)
        elif kind == "reasoning":
            self.reasoning(raw, where, extra_meta)
        elif kind in CLIENT_CALLS:
            self.client_call(kind, raw, where, extra_meta)
        elif kind in CALL_OUTPUTS:
            self.output(kind, raw, where, extra_meta)
        elif kind in SERVER_CALLS:
            self.server_call(kind, raw, where, extra_meta)
        elif kind == "compaction":
            item = validate_at(_Compaction, raw, source=self.source, where=where, what="a compaction item")
            self.tally.count(other=1)
            block = CompactionBlock(encrypted_content=item.encrypted_content)
            _merge_item_meta(self.conversation.assistant(block), self._item_meta(raw, item.id, None, extra_meta))
        else:
            self.keep_other(kind, raw, where)

    # ------------------------------------------------------------------ messages
    def message(self, raw: dict[str, Any], where: str, extra_meta: dict[str, Any] | None) -> None:
        msg = validate_at(_MessageItem, raw, source=self.source, where=where, what="a message item")
        self.tally.count(messages=1)
        blocks, part_meta = self.parts(msg.content, _at(where, "content"), assistant=msg.role == "assistant")
        facts = self._facts(raw, msg.id, msg.status, skip={"role", "content"})
        if msg.role == "assistant":
            opened = self.conversation.open_kind == "assistant" and bool(self.messages)
            start = len(self.messages[-1].content) if opened else 0
            if not blocks:  # an empty assistant message is still a message
                self.conversation.close()
                self.conversation.user(Message(role="assistant", metadata={"openai_responses": {"item": facts}}))
                return
            for n, block in enumerate(blocks):
                target = self.conversation.assistant(block, from_message=n == 0)
            if part_meta:
                facts["parts"] = {str(int(k) + start) if k.isdigit() else k: v for k, v in part_meta.items()}
            if facts:
                target.metadata.setdefault("openai_responses", {}).setdefault("items", {})[str(start)] = {
                    "type": "message",
                    **facts,
                }
            if extra_meta:
                _merge_item_meta(target, dict(extra_meta))
            return
        if msg.role in ("system", "developer") and not self.messages:
            texts = [b.text for b in blocks if isinstance(b, TextBlock)]
            self.system_texts.extend(texts)
            self.tally.keep("system prompt", {"messages": 1, "text": len(texts)})
            if len(texts) != len(blocks):
                self.tally.keep("system prompt", {"images": len(blocks) - len(texts)})
                self.tally.warn("an image in a leading system/developer message has no place in the system prompt")
            return
        meta: dict[str, Any] = dict(extra_meta or {})
        resp: dict[str, Any] = {}
        if facts:
            resp["item"] = facts
        if part_meta:
            resp["parts"] = part_meta
        if resp:
            meta["openai_responses"] = resp
        if msg.role in ("system", "developer"):
            meta["source_role"] = msg.role
        self.conversation.user(Message(role="user", content=blocks, id=msg.id, metadata=meta))

    def parts(
        self, content: str | list[dict[str, Any]], where: str, *, assistant: bool
    ) -> tuple[list[ContentBlock], dict[str, Any]]:
        """Blocks for a message's content; part fields with no place (annotations,
        logprobs, image detail, files) keyed by block index, or by part index for parts
        that become no block."""
        if isinstance(content, str):
            self.tally.count(text=1)
            return [TextBlock(text=content)], {}
        blocks: list[ContentBlock] = []
        meta: dict[str, Any] = {}
        for j, raw in enumerate(content):
            part = validate_at(_Part, raw, source=self.source, where=f"{where}[{j}]", what="a content part")
            extra = {
                k: v for k, v in raw.items() if k not in {"type", "text", "refusal", "image_url"} and v is not None
            }
            if part.type in ("input_text", "output_text", "text", "summary_text"):
                text = raw.get("text")
                if not isinstance(text, str):
                    raise FormatError(
                        "this field is required: the text", source=self.source, location=f"{where}[{j}].text"
                    )
                self.tally.count(text=1)
                blocks.append(TextBlock(text=text))
            elif part.type == "refusal":
                refusal = raw.get("refusal")
                if not isinstance(refusal, str):
                    raise FormatError(
                        "a refusal part needs its refusal text", source=self.source, location=f"{where}[{j}].refusal"
                    )
                self.tally.count(text=1)
                extra["refusal"] = True
                blocks.append(TextBlock(text=refusal))
            elif part.type == "input_image":
                self.tally.count(images=1)
                blocks.append(_image(raw.get("image_url")))
            else:  # input_file, input_audio and newer parts: no block type
                self.tally.count(other=1)
                self.tally.keep(f"{part.type} parts (kept whole in message metadata)", {"other": 1})
                meta[f"part {j}"] = dict(raw)
                continue
            if extra:
                meta[str(len(blocks) - 1)] = {"type": part.type, **extra}
        return blocks, meta

    # ----------------------------------------------------------------- reasoning
    def reasoning(self, raw: dict[str, Any], where: str, extra_meta: dict[str, Any] | None) -> None:
        item = validate_at(_Reasoning, raw, source=self.source, where=where, what="a reasoning item")
        self.tally.count(thinking=1)
        raw_texts = [str(c.get("text", "")) for c in item.content or [] if isinstance(c, dict)]
        summary = [str(s.get("text", "")) for s in item.summary if isinstance(s, dict)]
        meta = self._item_meta(raw, item.id, item.status, extra_meta, skip={"summary", "content", "encrypted_content"})
        text = "\n\n".join(raw_texts) if raw_texts else "\n\n".join(summary)
        block = ThinkingBlock(thinking=text, signature=item.encrypted_content, redacted=not text)
        msg = self.conversation.assistant(block)
        index = len(msg.content) - 1
        facts = meta.setdefault("openai_responses", {}).setdefault("items", {}).setdefault(str(index), {})
        if raw_texts and summary:
            facts["summary"] = summary
        elif summary and not raw_texts:
            facts["reasoning_summary_only"] = True
            self.summary_only += 1
        _merge_item_meta(msg, meta)

    # --------------------------------------------------------------------- calls
    def client_call(self, kind: str, raw: dict[str, Any], where: str, extra_meta: dict[str, Any] | None) -> None:
        item = validate_at(_CALL_MODELS[kind], raw, source=self.source, where=where, what=f"a {kind} item")
        self.tally.count(tool_calls=1)
        raw_args = False
        if isinstance(item, _FunctionCall):
            call_id, name = item.call_id, item.name
            tool_input, raw_args = arguments_input(item.arguments)
        elif isinstance(item, _CustomCall):
            call_id, name, tool_input = item.call_id, item.name, {"input": item.input}
        elif isinstance(item, _LocalShellCall):
            shell_id = item.call_id or item.id
            if shell_id is None:
                raise FormatError(
                    "a local_shell_call needs a call_id (or id)", source=self.source, location=_at(where, "call_id")
                )
            call_id = shell_id
            name, tool_input = "local_shell", {k: v for k, v in item.action.items() if k != "type"}
        elif isinstance(item, _ShellCall):
            call_id, name, tool_input = item.call_id, "shell", dict(item.action)
        elif isinstance(item, _ApplyPatchCall):
            call_id, name, tool_input = item.call_id, "apply_patch", dict(item.operation)
        else:
            assert isinstance(item, _ComputerCall)
            call_id, name, tool_input = item.call_id, "computer", dict(item.action)
        block = ToolUseBlock(id=call_id, name=name, input=tool_input)
        skip = {"call_id", "name", "arguments", "input", "action", "operation"}
        meta = self._item_meta(raw, getattr(item, "id", None), getattr(item, "status", None), extra_meta, skip=skip)
        msg = self.conversation.assistant(block)
        facts = (
            meta.setdefault("openai_responses", {}).setdefault("items", {}).setdefault(str(len(msg.content) - 1), {})
        )
        facts["type"] = kind
        if raw_args:
            facts["raw_arguments"] = True
        _merge_item_meta(msg, meta)

    def output(self, kind: str, raw: dict[str, Any], where: str, extra_meta: dict[str, Any] | None) -> None:
        item = validate_at(_Output, raw, source=self.source, where=where, what=f"a {kind} item")
        call_id = item.call_id or (item.id if kind == "local_shell_call_output" else None)
        if call_id is None:
            raise FormatError(
                "this field is required: the call_id of the call it answers",
                source=self.source,
                location=_at(where, "call_id"),
            )
        self.tally.count(messages=1, tool_results=1)
        content, is_error, facts = _render_output(kind, item)
        status: str | None = "error" if is_error else "ok"
        if self.status_of is not None:
            status = (
                self.status_of(kind, "\n".join(t.text for t in content if isinstance(t, TextBlock)), item) or status
            )
        block = ToolResultBlock(tool_use_id=call_id, content=content, is_error=is_error, status=_status(status))
        meta = self._item_meta(raw, item.id, item.status, extra_meta, skip={"call_id", "output"})
        msg = self.conversation.result(block, from_message=True)  # each output item is a message of the source
        item_facts = (
            meta.setdefault("openai_responses", {}).setdefault("items", {}).setdefault(str(len(msg.content) - 1), {})
        )
        item_facts["type"] = kind
        item_facts.update(facts)
        _merge_item_meta(msg, meta)

    def server_call(self, kind: str, raw: dict[str, Any], where: str, extra_meta: dict[str, Any] | None) -> None:
        item = validate_at(_ServerCall, raw, source=self.source, where=where, what=f"a {kind} item")
        self.tally.count(tool_calls=1)
        if item.id is None:
            self.unnamed_calls += 1
            item.id = f"{kind}_{self.unnamed_calls}"
            self.tally.note("server-side calls without an id are named <type>_<n> in order")
        fields = {k: v for k, v in raw.items() if k not in {"type", "id", "status"}}
        name = SERVER_CALLS[kind]
        result: ToolResultBlock | None = None
        if kind == "web_search_call":
            tool_input = fields.pop("action", {}) if isinstance(fields.get("action"), dict) else {}
        elif kind == "file_search_call":
            tool_input = {"queries": fields.pop("queries", [])}
            results = fields.pop("results", None)
            if isinstance(results, list):
                lines = [
                    f"{r.get('filename') or r.get('file_id')}: {r.get('text') or ''}"
                    for r in results
                    if isinstance(r, dict)
                ]
                result = ToolResultBlock(
                    tool_use_id=item.id, content=[TextBlock(text="\n\n".join(lines))], side="server"
                )
        elif kind == "code_interpreter_call":
            tool_input = {"code": fields.pop("code", None), "container_id": fields.pop("container_id", None)}
            outputs = fields.pop("outputs", None)
            if isinstance(outputs, list):
                items: list[TextBlock | ImageBlock] = []
                for out in outputs:
                    if isinstance(out, dict) and out.get("type") == "logs":
                        items.append(TextBlock(text=str(out.get("logs", ""))))
                    elif isinstance(out, dict) and out.get("type") == "image":
                        items.append(ImageBlock(url=str(out.get("url"))))
                result = ToolResultBlock(tool_use_id=item.id, content=items, side="server")
        elif kind == "image_generation_call":
            tool_input = {k: fields.pop(k) for k in ("revised_prompt",) if k in fields}
            image = fields.pop("result", None)
            if isinstance(image, str) and image:
                result = ToolResultBlock(
                    tool_use_id=item.id, content=[ImageBlock(media_type="image/png", data=image)], side="server"
                )
        else:  # mcp_call
            name = str(fields.pop("name", "mcp"))
            tool_input, _ = arguments_input(fields.pop("arguments", {}))
            output, error = fields.pop("output", None), fields.pop("error", None)
            if output is not None or error is not None:
                text = str(output) if output is not None else f"error: {error}"
                result = ToolResultBlock(
                    tool_use_id=item.id, content=[TextBlock(text=text)], is_error=error is not None, side="server"
                )
        block = ToolUseBlock(id=item.id, name=name, input=tool_input, side="server")
        meta = self._item_meta(raw, item.id, item.status, extra_meta, skip=set(raw) - set(fields) - {"id", "status"})
        msg = self.conversation.assistant(block)
        facts = (
            meta.setdefault("openai_responses", {}).setdefault("items", {}).setdefault(str(len(msg.content) - 1), {})
        )
        facts["type"] = kind
        _merge_item_meta(msg, meta)  # keyed by the call's block, before its result follows it
        if result is not None:
            self.tally.count(tool_results=1)
            msg.content.append(result)

    def keep_other(self, kind: str, raw: dict[str, Any], where: str) -> None:
        self.tally.count(other=1)
        self.tally.keep("items with no place in the transcript (kept whole in metadata)", {"other": 1})
        self.other_items.append({"at": where, "before_message": len(self.messages), "item": raw})
        if kind not in KEPT_ITEMS:
            self.tally.warn(
                f"item type {kind!r} is not known to this importer; it is kept whole in metadata", location=where
            )
        self.conversation.close()

    # ------------------------------------------------------------------- helpers
    def _facts(self, raw: dict[str, Any], item_id: str | None, status: str | None, *, skip: set[str]) -> dict[str, Any]:
        facts = {k: v for k, v in raw.items() if k not in {"type", "id", "status", *skip} and v is not None}
        if item_id is not None:
            facts["id"] = item_id
        if status is not None:
            facts["status"] = status
        return facts

    def _item_meta(
        self,
        raw: dict[str, Any],
        item_id: str | None,
        status: str | None,
        extra_meta: dict[str, Any] | None,
        *,
        skip: set[str] | None = None,
    ) -> dict[str, Any]:
        facts = {k: v for k, v in raw.items() if k not in {"type", "id", "status", *(skip or set())} and v is not None}
        if item_id is not None:
            facts["id"] = item_id
        if status is not None:
            facts["status"] = status
        meta: dict[str, Any] = {}
        if facts:
            meta["openai_responses"] = {"items": {"?": facts}}
        if extra_meta:
            meta.update(extra_meta)
        return meta


def _merge_item_meta(msg: Message, meta: dict[str, Any]) -> None:
    """Merge an item's metadata into its message, keying the item's facts by the index
    of the block it became (the last one)."""
    index = str(len(msg.content) - 1)
    resp = meta.pop("openai_responses", None)
    if isinstance(resp, dict):
        items = resp.get("items", {})
        facts = {**items.pop("?", {}), **items.pop(index, {})}
        store = msg.metadata.setdefault("openai_responses", {}).setdefault("items", {})
        if facts:
            store[index] = {**store.get(index, {}), **facts}
    for key, value in meta.items():
        if isinstance(value, dict) and isinstance(msg.metadata.get(key), dict):
            msg.metadata[key] = {**msg.metadata[key], **value}
        elif isinstance(value, list) and isinstance(msg.metadata.get(key), list):
            msg.metadata[key] = [*msg.metadata[key], *value]
        else:
            msg.metadata[key] = value


def _status(value: str | None) -> ToolCallStatus:
    """A status string from a harness hook, checked against the statuses the model knows."""
    if value == "error":
        return "error"
    if value == "rejected":
        return "rejected"
    if value == "interrupted":
        return "interrupted"
    return "ok"


def _image(url: Any) -> ImageBlock:
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        head, data = url[5:].split(",", 1)
        if head.endswith(";base64"):
            return ImageBlock(media_type=head.split(";", 1)[0] or None, data=data)
    return ImageBlock(url=url if isinstance(url, str) else None)


def _render_output(kind: str, item: _Output) -> tuple[list[TextBlock | ImageBlock], bool, dict[str, Any]]:
    """A call output's content as the model was shown it, whether it is an error, and
    facts to keep (exit codes)."""
    output = item.output
    facts: dict[str, Any] = {}
    if kind == "shell_call_output" and isinstance(output, list):
        texts: list[str] = []
        failed = False
        for chunk in output:
            if not isinstance(chunk, dict):
                continue
            if chunk.get("stdout"):
                texts.append(str(chunk["stdout"]))
            if chunk.get("stderr"):
                texts.append("[stderr]\n" + str(chunk["stderr"]))
            found = chunk.get("outcome")
            outcome: dict[str, Any] = found if isinstance(found, dict) else {}
            if outcome.get("type") == "timeout":
                texts.append("[timed out]")
                failed = True
            elif "exit_code" in outcome:
                texts.append(f"[exit code {outcome['exit_code']}]")
                facts.setdefault("exit_codes", []).append(outcome["exit_code"])
                failed = failed or outcome["exit_code"] != 0
        facts["raw_output"] = output
        return [TextBlock(text="\n".join(texts))], failed, facts
    if kind == "apply_patch_call_output":
        text = str(output) if output is not None else str(item.status or "")
        return [TextBlock(text=text)], item.status == "failed", facts
    if kind == "computer_call_output" and isinstance(output, dict):
        facts["raw_output"] = output
        return [_image(output.get("image_url"))], False, facts
    if isinstance(output, str):
        return [TextBlock(text=output)], False, facts
    if isinstance(output, list):
        blocks: list[TextBlock | ImageBlock] = []
        for part in output:
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text"):
                blocks.append(TextBlock(text=str(part.get("text", ""))))
            elif isinstance(part, dict) and part.get("type") == "input_image":
                blocks.append(_image(part.get("image_url")))
            else:
                facts.setdefault("unrendered_parts", []).append(part)
        return blocks, False, facts
    if isinstance(output, dict) and isinstance(output.get("content"), str):
        # Codex's legacy payload: {"content": ..., "success": false}
        facts["success"] = output.get("success")
        return [TextBlock(text=output["content"])], output.get("success") is False, facts
    if output is None:
        return [], False, facts
    facts["raw_output"] = output
    return [TextBlock(text=json.dumps(output, ensure_ascii=False))], False, facts


def _at(where: str, key: str) -> str:
    return join_location(where, key)


# --------------------------------------------------------------------------- tools
def read_tools(raw: Any, source: str, tally: ImportTally) -> tuple[list[ToolSpec], dict[str, Any]]:
    """Tool specs from a request's ``tools``, and the definitions a spec cannot hold."""
    if raw is None:
        return [], {}
    if not isinstance(raw, list):
        raise FormatError(f"expected a list of tools (got {kind_of(raw)})", source=source, location="tools")
    specs: list[ToolSpec] = []
    kept: dict[str, Any] = {}
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise FormatError("expected a tool definition with a 'type'", source=source, location=f"tools[{i}]")
        kind = tool["type"]
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str):
                raise FormatError(
                    "this field is required: the function's name", source=source, location=f"tools[{i}].name"
                )
            params = tool.get("parameters")
            spec = ToolSpec(name=name, description=str(tool.get("description") or ""))
            if isinstance(params, dict):
                spec.input_schema = params
            specs.append(spec)
            extra = {k: v for k, v in tool.items() if k not in {"type", "name", "description", "parameters"}}
            if extra:
                kept[name] = {"type": kind, **extra}
        elif kind == "custom":
            name = str(tool.get("name") or "custom")
            specs.append(
                ToolSpec(
                    name=name,
                    description=str(tool.get("description") or ""),
                    input_schema={"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
                )
            )
            kept[name] = dict(tool)
        else:
            name = str(tool.get("name") or tool.get("server_label") or kind)
            if any(spec.name == name for spec in specs):  # a built-in sharing a custom tool's name
                kept[f"{name} ({kind})"] = dict(tool)
                continue
            specs.append(ToolSpec(name=name))
            kept[name] = dict(tool)
    return specs, kept


# --------------------------------------------------------------------------- parse
def parse(data: Any, *, source: str = "<input>") -> Transcript:
    """A transcript from a request (with or without its response), a response, or a
    list of items. Raises `FormatError` with the JSON path of the problem."""
    tally = ImportTally(format="openai-responses", source=source)
    reader = ItemReader(source, tally)
    meta: dict[str, Any] = {}
    instructions: str | None = None
    tools: list[ToolSpec] = []
    model: str | None = None
    generation: dict[str, Any] = {}
    if isinstance(data, list):
        if not data:
            raise FormatError("an empty list: expected Responses API items", source=source, location="$")
        items, shape = [(f"[{i}]", item) for i, item in enumerate(data)], "items"
        responses: list[tuple[str, dict[str, Any]]] = []
    elif isinstance(data, dict) and data.get("object") == "list" and isinstance(data.get("data"), list):
        items, shape = [(f"data[{i}]", item) for i, item in enumerate(data["data"])], "items"
        responses = []
    elif isinstance(data, dict) and data.get("object") == "response":
        items, shape, responses = [], "response", [("", data)]
    elif isinstance(data, dict) and "input" in data:
        shape = "request"
        raw_input = data["input"]
        if isinstance(raw_input, str):
            items = [("input", {"role": "user", "content": raw_input})]
        elif isinstance(raw_input, list):
            items = [(f"input[{i}]", item) for i, item in enumerate(raw_input)]
        else:
            raise FormatError(
                f"expected a string or a list of items (got {kind_of(raw_input)})", source=source, location="input"
            )
        responses = []
        if data.get("response") is not None:
            if not isinstance(data["response"], dict):
                raise FormatError("expected a response object", source=source, location="response")
            responses = [("response", data["response"])]
            shape = "request+response"
    else:
        raise FormatError(
            "expected a Responses API request (with 'input'), a response (\"object\": \"response\" with 'output'), "
            "or a list of items",
            source=source,
            location="$",
        )

    top = data if isinstance(data, dict) and shape in ("request", "request+response") else None
    if top is not None:
        instructions = _optional_str(top, "instructions", source)
        tools, kept_tools = read_tools(top.get("tools"), source, tally)
        if kept_tools:
            meta["tools"] = kept_tools
        model = _optional_str(top, "model", source)
        generation = _generation(top, meta)
    for where, item in items:
        reader.item(item, where)
    for where, response in responses:
        model = _read_response(response, where, reader, meta, model) or model
        if instructions is None:
            instructions = _optional_str(response, "instructions", source)
        if top is None:
            tools_resp, kept = read_tools(response.get("tools"), source, tally)
            tools = tools or tools_resp
            if kept:
                meta.setdefault("tools", kept)
            generation = generation or _generation(response, {})
    return finish(reader, meta, instructions=instructions, tools=tools, model=model, generation=generation, shape=shape)


def _read_response(
    response: dict[str, Any], where: str, reader: ItemReader, meta: dict[str, Any], model: str | None
) -> str | None:
    output = response.get("output")
    at = f"{where}.output" if where else "output"
    if not isinstance(output, list):
        raise FormatError(
            f"expected the response's output items (a list), got {kind_of(output)}", source=reader.source, location=at
        )
    reader.conversation.close()
    first = len(reader.messages)
    for i, item in enumerate(output):
        reader.item(item, f"{at}[{i}]")
    facts = {
        k: v for k, v in response.items() if k not in {"output", "tools", "instructions", "input"} and v is not None
    }
    for msg in reader.messages[first:]:
        if msg.role == "assistant":
            if isinstance(response.get("id"), str):
                msg.id = response["id"]
            msg.metadata.setdefault("openai_responses", {})["response"] = facts
    meta.setdefault("responses", []).append(facts)
    value = response.get("model")
    return value if isinstance(value, str) else model


def _generation(top: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for key, value in top.items():
        if key in {"input", "response", "tools", "instructions", "model", "output", "object"}:
            continue
        if key in _GENERATION_KEYS and (value is None or isinstance(value, int | float)):
            settings[_GENERATION_KEYS[key]] = value
        elif key == "reasoning" and isinstance(value, dict) and isinstance(value.get("effort"), str):
            settings["reasoning_effort"] = value["effort"]
            request[key] = value
        else:
            request[key] = value
    if request:
        meta["request"] = request
    return settings


def _optional_str(data: dict[str, Any], key: str, source: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    if key == "instructions" and isinstance(value, list):  # a list of input items (prompt templates)
        texts = [str(p.get("text") or p.get("content") or "") for p in value if isinstance(p, dict)]
        return "\n\n".join(texts)
    raise FormatError(f"expected a string (got {kind_of(value)})", source=source, location=key)


def finish(
    reader: ItemReader,
    meta: dict[str, Any],
    *,
    instructions: str | None,
    tools: list[ToolSpec],
    model: str | None,
    generation: dict[str, Any],
    shape: str,
    harness: str = HARNESS,
    key: str = "openai_responses",
    extra_metadata: dict[str, Any] | None = None,
) -> Transcript:
    """The transcript of everything `reader` read, with its import report."""
    tally = reader.tally
    system_parts = ([instructions] if instructions else []) + reader.system_texts
    if instructions:
        tally.count(text=1)
        tally.keep("system prompt", {"text": 1})
    system = "\n\n".join(system_parts) if system_parts else None
    if len(system_parts) > 1:
        tally.note("the system prompt joins the instructions and the leading system/developer messages")
    if reader.summary_only:
        tally.note(
            f"{reader.summary_only} reasoning item(s) carry only the API's summary, not the chain of thought; their "
            "thinking blocks are marked reasoning_summary_only"
        )
    meta["shape"] = shape
    if reader.other_items:
        meta["other_items"] = reader.other_items
    metadata: dict[str, Any] = {key: meta, "harness": harness, **(extra_metadata or {})}
    transcript = Transcript(
        system=system,
        tools=tools or _inferred_tools(reader.messages),
        messages=reader.messages,
        model=model,
        generation=GenerationConfig.model_validate(generation),
        metadata=metadata,
    )
    if not tools and transcript.tools:
        transcript.metadata["tools_inferred"] = True
    return tally.finish(transcript)


def _inferred_tools(messages: list[Message]) -> list[ToolSpec]:
    names = dict.fromkeys(u.name for m in messages for u in m.tool_uses if u.side == "client")
    return [ToolSpec(name=n, input_schema={"type": "object", "additionalProperties": True}) for n in names]


# --------------------------------------------------------------------------- sniff
_ITEM_TYPES = frozenset(
    {"message", "reasoning", "compaction", *CLIENT_CALLS, *CALL_OUTPUTS, *SERVER_CALLS, *KEPT_ITEMS}
)


def _is_item(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in _ITEM_TYPES
        and (value.get("type") != "message" or value.get("role") in ("user", "assistant", "system", "developer"))
    )


def sniff(path: Path, data: Any) -> bool:
    """A Responses request (``input`` plus Responses-only evidence), a response
    (``"object": "response"``), or a list of typed items. Never raises."""
    if isinstance(data, list):
        return bool(data) and all(_is_item(v) for v in data) and any(v.get("type") != "message" for v in data)
    if not isinstance(data, dict):
        return False
    if data.get("object") == "response":
        return isinstance(data.get("output"), list)
    if data.get("object") == "list":
        items = data.get("data")
        return isinstance(items, list) and bool(items) and all(_is_item(v) for v in items)
    if "input" not in data or "messages" in data:
        return False
    value = data["input"]
    if isinstance(value, str):
        return "model" in data or "instructions" in data
    return isinstance(value, list) and all(
        _is_item(v) or (isinstance(v, dict) and v.get("role") in ("user", "assistant", "system", "developer"))
        for v in value
    )


def refusal(path: Path, data: Any) -> str:
    if isinstance(data, list):
        bad = next((i for i, v in enumerate(data) if not _is_item(v)), None)
        if bad is not None:
            return f"[{bad}] is not a Responses item (a typed object such as message, function_call, reasoning)"
        return "a list of only message items is read as another format"
    if not isinstance(data, dict):
        return "a Responses body is a JSON object"
    if data.get("object") == "response":
        return "a response needs its 'output' items as a list"
    if "messages" in data:
        return "it has 'messages' (a chat request), not 'input'"
    if "input" not in data:
        return 'it has neither \'input\' (a request) nor "object": "response"'
    return "its 'input' is neither a string nor a list of items"


def _load(path: Path, options: LoadOptions) -> Transcript:
    return parse(read_json(path), source=str(path))


IMPORTER = Importer(
    name="openai-responses",
    description="OpenAI Responses API request (input items), response (output items), or item list (JSON)",
    sniff=sniff,
    load=_load,
    markers=frozenset(
        {
            "input",
            "output",
            "instructions",
            "previous_response_id",
            "max_output_tokens",
            "reasoning",
            "type:function_call",
            "type:function_call_output",
            "type:reasoning",
            "call_id",
        }
    ),
    refusal=refusal,
)

__all__ = ["CALL_OUTPUTS", "CLIENT_CALLS", "IMPORTER", "SERVER_CALLS", "ItemReader", "finish", "parse", "read_tools"]
