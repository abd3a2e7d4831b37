"""Pieces the agent-log importers share: reading tool-call arguments, describing JSON
values in error messages, and assembling a conversation from a stream of items in which
consecutive model outputs form one assistant turn and consecutive tool outputs one user
message of results (the shape of OpenAI Responses items, Codex rollouts, OpenHands
events and trajectory formats alike)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import format_error_from_validation
from tools.transcript import ContentBlock, Message, ToolResultBlock

RAW_ARGUMENTS = "_raw_arguments"
"""Key under which tool-call arguments that are not a JSON object are kept verbatim."""


def json_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as a JSON object, or None when it is anything else (not JSON, a
    list, a number, NaN/Infinity, nested past the parser's recursion limit)."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def arguments_input(arguments: Any) -> tuple[dict[str, Any], bool]:
    """A tool call's ``input`` from arguments given as a JSON string (or already an
    object), and whether they had to be kept raw (``{"_raw_arguments": text}``): a model
    that wrote malformed arguments is evidence, not damage to the file."""
    if isinstance(arguments, dict):
        return arguments, False
    if isinstance(arguments, str):
        parsed = json_object(arguments)
        if parsed is not None:
            return parsed, False
        return {RAW_ARGUMENTS: arguments}, True
    return {RAW_ARGUMENTS: json.dumps(arguments)}, True


def kind_of(value: Any) -> str:
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


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_at(model: type[BaseModel], data: Any, *, source: str, where: str, what: str) -> Any:
    """`model.model_validate(data)` with errors located at `where` (a JSON path, or
    ``line N`` for one record of a JSON-lines file)."""
    if not isinstance(data, dict):
        raise FormatError(f"expected {what} (a JSON object), got {kind_of(data)}", source=source, location=where or "$")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = format_error_from_validation(exc, source=source)
        inner = err.location if err.location != "$" else ""
        raise FormatError(err.detail, source=source, location=join_location(where, inner) or "$") from None


def join_location(where: str, inner: str) -> str:
    """A location inside `where`: ``input[3]`` + ``call_id`` is ``input[3].call_id``;
    ``line 12`` + ``payload.call_id`` is ``line 12: payload.call_id``."""
    if not inner:
        return where
    if not where:
        return inner
    if where.startswith("line ") and ":" not in where:
        return f"{where}: {inner}"
    return where + inner if inner.startswith("[") else f"{where}.{inner}"


@dataclass
class Conversation:
    """Messages assembled from a stream of items.

    `assistant(block)` adds to the current assistant turn (opening one when the last
    message is not an assistant message); `result(block)` adds to the current user
    message of tool results; `user(message)` appends a message of its own. Each message
    created without a source message behind it is counted as synthesized ("a message
    grouping items into a turn"), and each further source message folded into an open
    one as merged, so the import report balances."""

    tally: ImportTally
    messages: list[Message] = field(default_factory=list)
    open_kind: str | None = None  # "assistant" | "results" | None

    def assistant(
        self, block: ContentBlock, *, from_message: bool = False, meta: dict[str, Any] | None = None
    ) -> Message:
        msg = self._open("assistant", from_message)
        msg.content.append(block)
        if meta:
            _merge_meta(msg, meta)
        return msg

    def result(
        self, block: ToolResultBlock, *, from_message: bool = False, meta: dict[str, Any] | None = None
    ) -> Message:
        msg = self._open("results", from_message)
        msg.content.append(block)
        if meta:
            _merge_meta(msg, meta)
        return msg

    def user(self, message: Message) -> None:
        self.messages.append(message)
        self.open_kind = None

    def close(self) -> None:
        """End the current turn: the next assistant block starts a new message."""
        self.open_kind = None

    def _open(self, kind: str, from_message: bool) -> Message:
        if self.open_kind == kind and self.messages:
            if from_message:
                self.tally.merge(messages=1)
            return self.messages[-1]
        msg = Message(role="assistant" if kind == "assistant" else "user")
        self.messages.append(msg)
        self.open_kind = kind
        if not from_message:
            why = (
                "assistant messages grouping the model's output items into turns"
                if kind == "assistant"
                else "user messages holding tool outputs"
            )
            self.tally.synthesize(why, {"messages": 1})
        return msg


def _merge_meta(msg: Message, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        if isinstance(value, list) and isinstance(msg.metadata.get(key), list):
            msg.metadata[key].extend(value)
        elif isinstance(value, dict) and isinstance(msg.metadata.get(key), dict):
            msg.metadata[key] = {**msg.metadata[key], **value}
        else:
            msg.metadata[key] = value


def unanswered_calls(messages: list[Message], *, client_only: bool = True) -> list[str]:
    """Ids of tool calls no later message answers."""
    answered = {r.tool_use_id for m in messages for r in m.tool_results}
    return [
        u.id for m in messages for u in m.tool_uses if u.id not in answered and (not client_only or u.side == "client")
    ]


def split_lines(data: bytes, *, source: str) -> list[str]:
    """A log's bytes as lines. Lines are split on ``\\n`` only (so line numbers match an
    editor's); bytes that are not UTF-8 are an error except in an unterminated last
    line, where they are part of the interrupted write."""
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
    return lines


__all__ = [
    "RAW_ARGUMENTS",
    "Conversation",
    "arguments_input",
    "join_location",
    "json_object",
    "kind_of",
    "shown",
    "split_lines",
    "unanswered_calls",
    "validate_at",
]
