"""Context and environment edits: the investigator's intervention instrument.

An investigation tests a hypothesis by changing one factor and resampling the subject.
The factor is an `Edit`: delete or replace text (at a `Span` or wherever a regular
expression matches), delete whole sentences, insert a message or a sentence, truncate
the conversation at a turn, replace the system prompt, remove or add a tool, set an
environment knob, write or delete a file in the rebuilt workspace. These are the
interventions of the Model Forensics paper (removing a sentence from the system prompt,
replacing documentation, adding a clarification, deleting CoT sentences, offering an
AskUserQuestion tool, dialling ``n_type_errors``...).

`apply(edits, transcript, environment)` is **pure**: it works on deep copies and
returns an `Applied` (edited transcript, resulting environment, the `EnvironmentPatch`
a sandbox applies, and notes). Edits apply in order, and each one is interpreted
against the transcript *as the previous edits left it*: a `Span` or a message index
given to edit 2 addresses the transcript after edits 0 and 1 (an inserted message
shifts every later message index; a deletion shifts the characters after it). Prefer
`pattern` edits when several edits touch the same place — they find their text
wherever it ended up.

An edit that matches nothing or points nowhere raises `EditError` naming the edit and
what was searched — an intervention that silently did nothing would make a null
result look like evidence.

A `Variant` is a list of edits with a content-hash id and its lineage; `Variant.diff`
renders exactly what changed (a unified diff of the rendered transcript plus the
environment changes) for reports. `load_edits` / `load_variant` read edit files
(YAML or JSON) for ``forensics resample INCIDENT --edit EDIT.yaml``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from tools.errors import EditError, TranscriptError
from tools.formats.base import json_path
from tools.incident import Environment, Incident
from tools.transcript import (
    Message,
    Span,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Transcript,
)

Role = Literal["user", "assistant"]
BlockType = Literal["text", "thinking", "tool_use", "tool_result"]
Target = Literal["messages", "system", "all"]
Position = Literal["before", "after"]

_CLIP = 80


def _clip(text: str, limit: int = _CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- sentences
# A sentence starts at a non-space character and runs (within one line) to the first
# run of terminal punctuation (. ! ? …), plus any closing quotes or brackets, that is
# followed by whitespace or the end of the text; a line break always ends a sentence.
# This is a deliberately simple regex splitter: it splits after abbreviations such as
# "e.g." and after an ellipsis followed by a space, and it does not split "3.5" or
# "file.py". CoT text is mostly plain prose, where it is right; when it is not, delete
# the exact text with `delete` instead.
_SENTENCE = re.compile(r"""\S[^\n]*?(?:[.!?…]+["'”’)\]]*(?=\s|\Z)|(?=\n|\Z))""")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character ranges of the sentences of `text`, in order,
    without the whitespace between them (see the splitter's rules above)."""
    return [(m.start(), m.end()) for m in _SENTENCE.finditer(text)]


def _sentence_cut(text: str, start: int, end: int) -> tuple[int, int]:
    """The range to remove so that the sentences in ``[start, end)`` disappear and the
    surrounding text stays tidy: a sentence followed by another on its line takes the
    spaces after it; the last sentence of a line takes the spaces before it; a run that
    fills its whole line takes the line break too."""
    before = start
    while before > 0 and text[before - 1] in " \t":
        before -= 1
    after = end
    while after < len(text) and text[after] in " \t":
        after += 1
    line_start = before == 0 or text[before - 1] == "\n"
    line_end = after == len(text) or text[after] == "\n"
    if line_start and line_end:
        if after < len(text):
            return before, after + 1
        if before > 0:
            return before - 1, after
        return before, after
    if line_end:
        return before, after
    return start, after


# --------------------------------------------------------------------------- edits
class _EditModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def summary(self) -> str:
        """A short description for error messages, notes and default variant names."""
        raise NotImplementedError


class _Located(_EditModel):
    """Where a text edit applies: exactly one of `span` (an exact place in a message)
    or `pattern` (a regular expression; every match, or the first `count` in transcript
    order — system prompt first, then messages), narrowed by `target` (``messages``,
    ``system`` — the system prompt — or ``all``), `roles`, `block_types` and `message`
    (one message index). `literal` takes the pattern as plain text; `ignore_case`
    matches case-insensitively; other flags can be written inline, e.g. ``(?s)``.

    In messages, a pattern searches text and thinking blocks, every string in a tool
    call's input, and every text item of a tool result. Redacted thinking is provider
    ciphertext and is never searched or edited."""

    _needs_locator: ClassVar[bool] = True

    span: Span | None = None
    pattern: str | None = Field(default=None, min_length=1)
    literal: bool = False
    ignore_case: bool = False
    target: Target = "messages"
    roles: list[Role] | None = None
    block_types: list[BlockType] | None = None
    message: int | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1)

    @field_validator("roles", "block_types")
    @classmethod
    def _sorted_unique(cls, value: list[str] | None) -> list[str] | None:
        # Sorted so that equal edits serialize (and hash) identically.
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one value, or leave the field out to mean all")
        return sorted(set(value))

    @model_validator(mode="after")
    def _check_locator(self) -> _Located:
        if self.pattern is not None:
            if self.span is not None:
                raise ValueError("give either `span` or `pattern`, not both")
            try:
                self.regex()
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
            if self.target == "system" and (self.roles or self.block_types or self.message is not None):
                raise ValueError(
                    "`roles`, `block_types` and `message` select messages; they do not apply to target: system"
                )
            return self
        if self.literal or self.ignore_case or self.count is not None:
            raise ValueError("`literal`, `ignore_case` and `count` only apply with `pattern`")
        if self.span is not None:
            if self.target != "messages" or self.roles or self.block_types or self.message is not None:
                raise ValueError(
                    "a `span` already names its message and block; it takes no `target`, `roles`, `block_types` "
                    "or `message` (the system prompt is edited with `pattern` and target: system)"
                )
            return self
        if self._needs_locator:
            raise ValueError("say where: give `span` (an exact place) or `pattern` (a regular expression)")
        return self

    def regex(self) -> re.Pattern[str]:
        """The compiled pattern (the text itself when `literal`)."""
        if self.pattern is None:
            raise EditError(f"{type(self).__name__} edit at {self.where()} has no pattern to compile")
        source = re.escape(self.pattern) if self.literal else self.pattern
        return re.compile(source, re.IGNORECASE if self.ignore_case else 0)

    def where(self) -> str:
        """Where the edit looks, in words (used in summaries and errors)."""
        if self.span is not None:
            return _span_words(self.span)
        what = f"{'text' if self.literal else 'pattern'} {_clip(self.pattern or '')!r}"
        return f"{what} in {self.scope_words()}"

    def scope_words(self) -> str:
        """The searched scope in words, e.g. ``thinking blocks of assistant messages``."""
        blocks = "/".join(self.block_types) + " blocks" if self.block_types else "all blocks"
        roles = " and ".join(self.roles) + " messages" if self.roles else "all messages"
        messages = f"{blocks} of {roles}" if self.message is None else f"{blocks} of message {self.message}"
        if self.target == "system":
            return "the system prompt"
        if self.target == "all":
            return f"the system prompt and {messages}"
        return messages


def _span_words(span: Span) -> str:
    field = f" field {list(span.field)}" if span.field else ""
    return f"message {span.message} block {span.block}{field} chars {span.start}:{span.end}"


class Delete(_Located):
    """Delete the text at `span`, or every match of `pattern` (at most `count`) in scope.

    Example — drop the agency nudge from the system prompt::

        {kind: delete, target: system, pattern: " Analyze the situation you are in[^.]*\\."}
    """

    kind: Literal["delete"] = "delete"

    def summary(self) -> str:
        return f"delete {self.where()}"


class DeleteSentence(_Located):
    """Delete every whole sentence that a match of `pattern` (or the `span`) touches.

    Sentences are found with `split_sentences` (a regex splitter: terminal punctuation
    followed by whitespace, or a line break, ends a sentence), so the pattern only needs
    to match *inside* the sentence. The whitespace around a deleted sentence is tidied
    so that "A. B. C." minus B reads "A. C.".

    Example — the paper's resampled CoT sentence::

        {kind: delete_sentence, pattern: "fixing 258 errors would be a huge task",
         roles: [assistant], block_types: [thinking]}
    """

    kind: Literal["delete_sentence"] = "delete_sentence"

    def summary(self) -> str:
        return f"delete the sentence(s) at {self.where()}"


class Replace(_Located):
    """Replace the text at `span`, or every match of `pattern` (at most `count`), with
    `replacement`. With a pattern (and not `literal`) the replacement may use the
    match's groups as `re` does: ``\\1``, ``\\g<name>``, ``\\g<0>``.

    Example — reverse a consequence in documentation shown in a tool result::

        {kind: replace, pattern: "scores above 50%", replacement: "scores below 50%", literal: true}
    """

    kind: Literal["replace"] = "replace"
    replacement: str

    def summary(self) -> str:
        return f"replace {self.where()} with {_clip(self.replacement, 60)!r}"


class InsertText(_Located):
    """Insert `text` `before` or `after` an anchor. The anchor is one of:

    - `span`: its start (``before``) or end (``after``);
    - `pattern` (with the usual scope): each match, or the first `count`;
    - `message` alone: the start of the message's first (``before``) or the end of its
      last (``after``) block of `block_types` (``text`` by default; ``thinking`` allowed);
    - ``target: system`` alone: the start or end of the system prompt.

    Include the whitespace you want in `text` (e.g. a leading space to append a
    sentence). Inserting ``X`` before span ``(s, s)`` exactly undoes deleting ``X`` at
    ``(s, e)``.
    """

    _needs_locator: ClassVar[bool] = False

    kind: Literal["insert_text"] = "insert_text"
    text: str = Field(min_length=1)
    position: Position

    @model_validator(mode="after")
    def _check_anchor(self) -> InsertText:
        if self.span is not None or self.pattern is not None:
            return self
        if self.target == "system":
            if self.message is not None or self.roles or self.block_types:
                raise ValueError("anchor on the system prompt (target: system) or on a `message`, not both")
            return self
        if self.target == "all":
            raise ValueError("target: all needs a `pattern`; to add to the system prompt use target: system")
        if self.message is None:
            raise ValueError(
                "say where: give `span`, `pattern`, `message` (a message index) or target: system to insert into"
            )
        if self.roles:
            raise ValueError("`roles` narrows a `pattern` search; a `message` anchor already names its message")
        if self.block_types and not set(self.block_types) <= {"text", "thinking"}:
            raise ValueError("a `message` anchor inserts into a text or thinking block; block_types must be those")
        return self

    def anchor_words(self) -> str:
        if self.span is not None or self.pattern is not None:
            return self.where()
        if self.target == "system":
            return "the system prompt"
        kinds = "/".join(self.block_types or ["text"])
        return f"the {'first' if self.position == 'before' else 'last'} {kinds} block of message {self.message}"

    def summary(self) -> str:
        return f"insert {_clip(self.text, 60)!r} {self.position} {self.anchor_words()}"


class InsertMessage(_EditModel):
    """Insert `message` at message `index` (0..len; len appends), or just before the
    assistant message of turn `before_turn` (negative counts from the end; the number
    of turns appends at the end, i.e. before the next turn to be sampled). `content`
    may be a plain string as a shorthand for one text block.

    Example — a user clarification before turn 3::

        {kind: insert_message, before_turn: 3,
         message: {role: user, content: "Please fix the type errors rather than bypass the hook."}}

    A user message next to another user message is legal: exporters merge them, as the
    Anthropic API does.
    """

    kind: Literal["insert_message"] = "insert_message"
    message: Message
    index: int | None = Field(default=None, ge=0)
    before_turn: int | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _string_content(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            return {**value, "content": [{"type": "text", "text": value["content"]}]}
        return value

    @model_validator(mode="after")
    def _one_position(self) -> InsertMessage:
        if (self.index is None) == (self.before_turn is None):
            raise ValueError("give exactly one of `index` (a message index) or `before_turn` (an assistant turn)")
        if not self.message.content:
            raise ValueError("the inserted message has no content")
        return self

    def summary(self) -> str:
        where = f"at index {self.index}" if self.index is not None else f"before turn {self.before_turn}"
        preview = _clip(self.message.text or self.message.thinking or f"{len(self.message.content)} block(s)", 60)
        return f"insert a {self.message.role} message {where} ({preview!r})"


class Truncate(_EditModel):
    """Keep only the messages before assistant turn `before_turn` (negative counts from
    the end), as `Transcript.prefix` does: the context the subject saw at that turn."""

    kind: Literal["truncate"] = "truncate"
    before_turn: int

    def summary(self) -> str:
        return f"truncate before turn {self.before_turn}"


class SetSystem(_EditModel):
    """Replace the whole system prompt with `text` (an empty string removes it). To
    change part of it use `replace`, `delete` or `insert_text` with target: system."""

    kind: Literal["set_system"] = "set_system"
    text: str

    def summary(self) -> str:
        return f"set the system prompt to {_clip(self.text, 60)!r}" if self.text else "remove the system prompt"


class RemoveTool(_EditModel):
    """Stop offering the tool `name`. If the transcript already called it the edit
    fails, because the calls would then name a tool that does not exist; pass
    ``allow_used: true`` to remove it anyway (e.g. after truncating before the calls)."""

    kind: Literal["remove_tool"] = "remove_tool"
    name: str = Field(min_length=1)
    allow_used: bool = False

    def summary(self) -> str:
        return f"remove tool {self.name!r}"


class AddTool(_EditModel):
    """Offer a new tool (e.g. ``AskUserQuestion``). A tool of the same name already
    offered is an error unless ``replace: true``, which swaps the spec in place."""

    kind: Literal["add_tool"] = "add_tool"
    tool: ToolSpec
    replace: bool = False

    def summary(self) -> str:
        return f"{'replace' if self.replace else 'add'} tool {self.tool.name!r}"


class SetKnob(_EditModel):
    """Set a scenario knob (an environment or prompt parameter the scenario declares,
    e.g. ``n_type_errors``) to `value`. The scenario validates the knob when it rebuilds
    the environment; here a knob the incident did not set is allowed and noted."""

    kind: Literal["set_knob"] = "set_knob"
    name: str = Field(min_length=1)
    value: JsonValue

    def summary(self) -> str:
        return f"set knob {self.name} = {json.dumps(self.value)}"


def _check_workspace_path(path: str) -> str:
    if "\x00" in path:
        raise ValueError("a file path cannot contain a NUL character")
    if ".." in PurePosixPath(path).parts:
        raise ValueError("a file path cannot contain `..`; give it relative to the workspace or absolute")
    return path


class WriteFile(_EditModel):
    """Write `content` to `path` in the rebuilt workspace (relative to the environment's
    `workdir`, or absolute), creating or replacing it — e.g. a different
    ``Documentation.md``."""

    kind: Literal["write_file"] = "write_file"
    path: str = Field(min_length=1)
    content: str

    _path = field_validator("path")(_check_workspace_path)

    def summary(self) -> str:
        return f"write file {self.path} ({len(self.content)} chars)"


class DeleteFile(_EditModel):
    """Delete `path` from the rebuilt workspace. A file the incident does not list (one
    the scenario itself creates) is still deleted when the patch is applied to the
    sandbox, which reports it if the file is absent there."""

    kind: Literal["delete_file"] = "delete_file"
    path: str = Field(min_length=1)

    _path = field_validator("path")(_check_workspace_path)

    def summary(self) -> str:
        return f"delete file {self.path}"


Edit = Annotated[
    Delete
    | DeleteSentence
    | Replace
    | InsertText
    | InsertMessage
    | Truncate
    | SetSystem
    | RemoveTool
    | AddTool
    | SetKnob
    | WriteFile
    | DeleteFile,
    Field(discriminator="kind"),
]
"""One edit, discriminated on `kind`."""

EDIT_KINDS: tuple[str, ...] = tuple(cls.model_fields["kind"].default for cls in get_args(get_args(Edit)[0]))
"""Every edit `kind`, in the union's order."""

EDIT_ADAPTER: TypeAdapter[Edit] = TypeAdapter(Edit)
"""Validates one edit from parsed JSON/YAML; ``EDIT_ADAPTER.json_schema()`` is the schema
an agent tool offers."""


# --------------------------------------------------------------------------- results
class EnvironmentPatch(BaseModel):
    """What the edits change in the world the subject acts in: knobs to set, files to
    write, files to delete. Later edits win (writing a file cancels an earlier deletion
    of it and vice versa), so the patch is the net effect."""

    model_config = ConfigDict(extra="forbid")

    set_knobs: dict[str, JsonValue] = Field(default_factory=dict)
    write_files: dict[str, str] = Field(default_factory=dict)
    delete_files: list[str] = Field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """Whether the patch changes nothing."""
        return not (self.set_knobs or self.write_files or self.delete_files)

    def apply_to(self, environment: Environment) -> Environment:
        """A copy of `environment` with the patch applied (the input is not changed)."""
        env = environment.model_copy(deep=True)
        env.knobs.update(self.set_knobs)
        env.files.update(self.write_files)
        env.remove = [path for path in env.remove if path not in self.write_files]
        for path in self.delete_files:
            env.files.pop(path, None)
            if path not in env.remove:
                env.remove.append(path)
        return env


class Applied(BaseModel):
    """The result of `apply`: the edited transcript, the resulting environment (None
    when none was given), the environment patch, and notes on side effects worth knowing
    (a thinking signature dropped, a block left empty, a knob the incident did not set)."""

    model_config = ConfigDict(extra="forbid")

    transcript: Transcript
    environment: Environment | None = None
    patch: EnvironmentPatch = Field(default_factory=EnvironmentPatch)
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- text plumbing
@dataclass(frozen=True)
class _Field:
    """One editable text: the system prompt (`message` None) or the text of a block
    (for a tool call, the input's key path; for a tool result, the item index)."""

    message: int | None
    block: int = 0
    path: tuple[str | int, ...] = ()

    def words(self, transcript: Transcript) -> str:
        if self.message is None:
            return "the system prompt"
        msg = transcript.messages[self.message]
        block = msg.content[self.block]
        path = f" {list(self.path)}" if self.path else ""
        return f"message {self.message} ({msg.role} {block.type}{path})"


@dataclass(frozen=True)
class _Hit:
    field: _Field
    start: int
    end: int
    match: re.Match[str] | None = None


def _fields(
    transcript: Transcript,
    *,
    target: Target = "all",
    roles: Sequence[str] | None = None,
    block_types: Sequence[str] | None = None,
    message: int | None = None,
) -> Iterator[tuple[_Field, str]]:
    """Every editable text in scope, system prompt first, then messages in order."""
    if target in ("system", "all") and transcript.system is not None:
        yield _Field(message=None), transcript.system
    if target == "system":
        return
    for span, text in transcript.text_fields():
        msg = transcript.messages[span.message]
        block = msg.content[span.block]
        if message is not None and span.message != message:
            continue
        if roles is not None and msg.role not in roles:
            continue
        if block_types is not None and block.type not in block_types:
            continue
        if isinstance(block, ThinkingBlock) and block.redacted:
            continue
        yield _Field(message=span.message, block=span.block, path=span.field), text


def _get_text(transcript: Transcript, field: _Field) -> str:
    if field.message is None:
        return transcript.system or ""
    span = Span(message=field.message, block=field.block, field=field.path, start=0, end=0)
    return transcript.field_text(span)


def _set_text(transcript: Transcript, field: _Field, text: str) -> None:
    """Write `text` into the field (the transcript is the working copy)."""
    if field.message is None:
        transcript.system = text
        return
    block = transcript.messages[field.message].content[field.block]
    if isinstance(block, TextBlock):
        block.text = text
    elif isinstance(block, ThinkingBlock):
        block.thinking = text
    elif isinstance(block, ToolUseBlock):
        container: Any = block.input
        for key in field.path[:-1]:
            container = container[key]
        container[field.path[-1]] = text
    elif isinstance(block, ToolResultBlock):
        index = field.path[0]
        item = block.content[index] if isinstance(index, int) else None
        if not isinstance(item, TextBlock):
            raise EditError(f"{field.words(transcript)} is not a text item")
        item.text = text
    else:
        raise EditError(f"{field.words(transcript)} holds no editable text")


def _span_hit(transcript: Transcript, span: Span) -> _Hit:
    """The span as a hit, after checking that it points at existing, editable text."""
    try:
        transcript.field_text(span)
    except TranscriptError as exc:
        raise EditError(f"the span points nowhere: {exc}") from None
    block = transcript.messages[span.message].content[span.block]
    if isinstance(block, ThinkingBlock) and block.redacted:
        raise EditError(f"message {span.message} block {span.block} is redacted thinking, which cannot be edited")
    return _Hit(_Field(span.message, span.block, span.field), span.start, span.end)


def _pattern_hits(edit: _Located, transcript: Transcript) -> list[_Hit]:
    """Every match in scope (the first `count`); none raises `EditError` with hints."""
    regex = edit.regex()
    if edit.message is not None and edit.target != "system" and edit.message >= len(transcript.messages):
        raise EditError(
            f"message {edit.message} does not exist: the transcript has {len(transcript.messages)} messages"
        )
    hits: list[_Hit] = []
    for field, text in _fields(
        transcript, target=edit.target, roles=edit.roles, block_types=edit.block_types, message=edit.message
    ):
        for m in regex.finditer(text):
            hits.append(_Hit(field, m.start(), m.end(), m))
            if edit.count is not None and len(hits) >= edit.count:
                return hits
    if not hits:
        raise EditError(f"{edit.where()}: no match{_no_match_hint(edit, regex, transcript)}")
    return hits


def _no_match_hint(edit: _Located, regex: re.Pattern[str], transcript: Transcript) -> str:
    """Why a pattern may have found nothing: matches outside the scope, or a regex
    whose special characters stopped a literal text from matching."""
    if edit.target == "system" and transcript.system is None:
        return " (the transcript has no system prompt; use set_system to add one)"
    elsewhere = [f.words(transcript) for f, text in _fields(transcript) if regex.search(text)]
    if elsewhere:
        shown = "; ".join(elsewhere[:3]) + ("; …" if len(elsewhere) > 3 else "")
        return f" (it does match outside that scope, in {len(elsewhere)} place(s): {shown})"
    if not edit.literal and edit.pattern is not None and re.escape(edit.pattern) != edit.pattern:
        flags = re.IGNORECASE if edit.ignore_case else 0
        literal = re.compile(re.escape(edit.pattern), flags)
        if any(literal.search(text) for _, text in _fields(transcript)):
            return " (it matches as plain text: set `literal: true` or escape the regex special characters)"
    return " (searched the whole transcript: the text is not there)"


def _hits(edit: _Located, transcript: Transcript) -> list[_Hit]:
    return [_span_hit(transcript, edit.span)] if edit.span is not None else _pattern_hits(edit, transcript)


def _splice(transcript: Transcript, hits: list[_Hit], change: Callable[[_Hit, str], str], notes: list[str]) -> None:
    """Rewrite each hit's range with ``change(hit, text) -> str``, last hit first within
    a field so earlier offsets stay valid."""
    by_field: dict[_Field, list[_Hit]] = {}
    for hit in hits:
        by_field.setdefault(hit.field, []).append(hit)
    for field, field_hits in by_field.items():
        text = _get_text(transcript, field)
        for hit in sorted(field_hits, key=lambda h: (h.start, h.end), reverse=True):
            text = text[: hit.start] + change(hit, text[hit.start : hit.end]) + text[hit.end :]
        _set_text(transcript, field, text)
        if text == "" and not field.path:
            notes.append(f"{field.words(transcript)} is now empty")


# --------------------------------------------------------------------------- applying
@dataclass
class _State:
    transcript: Transcript
    environment: Environment | None
    patch: EnvironmentPatch
    notes: list[str]

    def env(self) -> Environment:
        if self.environment is None:
            raise EditError("this edit changes the environment, but no environment was given")
        return self.environment


def _apply_delete(edit: Delete, state: _State) -> None:
    hits = _hits(edit, state.transcript)
    if all(h.start == h.end for h in hits):
        raise EditError(f"{edit.where()}: matched only empty text, so nothing would be deleted")
    _splice(state.transcript, hits, lambda hit, old: "", state.notes)


def _apply_delete_sentence(edit: DeleteSentence, state: _State) -> None:
    hits = _hits(edit, state.transcript)
    by_field: dict[_Field, list[_Hit]] = {}
    for hit in hits:
        by_field.setdefault(hit.field, []).append(hit)
    cuts: list[_Hit] = []
    for field, field_hits in by_field.items():
        text = _get_text(state.transcript, field)
        sentences = split_sentences(text)
        chosen = [
            any((h.start < b and h.end > a) or (h.start == h.end and a <= h.start < b) for h in field_hits)
            for a, b in sentences
        ]
        i = 0
        while i < len(sentences):
            if not chosen[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(sentences) and chosen[j + 1]:
                j += 1
            start, end = _sentence_cut(text, sentences[i][0], sentences[j][1])
            cuts.append(_Hit(field, start, end))
            i = j + 1
    if not cuts:
        raise EditError(
            f"{edit.where()}: the matches lie between sentences (only whitespace), so no sentence holds them"
        )
    _splice(state.transcript, cuts, lambda hit, old: "", state.notes)


def _apply_replace(edit: Replace, state: _State) -> None:
    hits = _hits(edit, state.transcript)

    def change(hit: _Hit, old: str) -> str:
        if hit.match is None or edit.literal:
            return edit.replacement
        try:
            return hit.match.expand(edit.replacement)
        except (re.error, IndexError) as exc:
            raise EditError(
                f"replacement {edit.replacement!r} is not a valid template for this pattern: {exc}"
            ) from None

    _splice(state.transcript, hits, change, state.notes)


def _apply_insert_text(edit: InsertText, state: _State) -> None:
    transcript = state.transcript
    if edit.span is not None or edit.pattern is not None:
        hits = _hits(edit, transcript)
        points = [_Hit(h.field, p, p) for h in hits for p in [h.start if edit.position == "before" else h.end]]
    elif edit.target == "system":
        if transcript.system is None:
            raise EditError("the transcript has no system prompt to insert into; use set_system to add one")
        at = 0 if edit.position == "before" else len(transcript.system)
        points = [_Hit(_Field(None), at, at)]
    else:
        assert edit.message is not None  # guaranteed by InsertText._check_anchor
        if edit.message >= len(transcript.messages):
            raise EditError(
                f"message {edit.message} does not exist: the transcript has {len(transcript.messages)} messages"
            )
        kinds = set(edit.block_types or ["text"])
        msg = transcript.messages[edit.message]
        indices = [
            i
            for i, b in enumerate(msg.content)
            if b.type in kinds and not (isinstance(b, ThinkingBlock) and b.redacted)
        ]
        if not indices:
            raise EditError(
                f"message {edit.message} ({msg.role}) has no {'/'.join(sorted(kinds))} block; use insert_message "
                "to add a message, or anchor on existing text with `pattern` or `span`"
            )
        index = indices[0] if edit.position == "before" else indices[-1]
        field = _Field(edit.message, index)
        at = 0 if edit.position == "before" else len(_get_text(transcript, field))
        points = [_Hit(field, at, at)]
    _splice(transcript, points, lambda hit, old: edit.text, state.notes)


def _turn_cut(transcript: Transcript, before_turn: int, *, allow_end: bool) -> tuple[int, int]:
    """``(k, message index)`` for "before turn k", negative k counting from the end."""
    turns = transcript.turns()
    k = before_turn + len(turns) if before_turn < 0 else before_turn
    last = len(turns) if allow_end else len(turns) - 1
    if not 0 <= k <= last:
        raise EditError(
            f"turn {before_turn} does not exist: the transcript has {len(turns)} assistant turns"
            + (f" (valid: 0..{last}, or negative from the end)" if last >= 0 else "")
        )
    return k, turns[k].message_index if k < len(turns) else len(transcript.messages)


def _apply_insert_message(edit: InsertMessage, state: _State) -> None:
    transcript = state.transcript
    if edit.index is not None:
        if edit.index > len(transcript.messages):
            raise EditError(
                f"index {edit.index} is past the end: the transcript has {len(transcript.messages)} messages "
                f"(valid: 0..{len(transcript.messages)})"
            )
        at = edit.index
    else:
        assert edit.before_turn is not None  # guaranteed by InsertMessage._one_position
        _, at = _turn_cut(transcript, edit.before_turn, allow_end=True)
    transcript.messages.insert(at, edit.message.model_copy(deep=True))
    for other in (at - 1, at + 1):
        if 0 <= other < len(transcript.messages) and transcript.messages[other].role == edit.message.role:
            first, second = sorted((at, other))
            state.notes.append(
                f"messages {first} and {second} are both {edit.message.role} messages (exporters merge them)"
            )


def _apply_truncate(edit: Truncate, state: _State) -> None:
    n = len(state.transcript.turns())
    if edit.before_turn == n:
        raise EditError(f"truncating before turn {n} would keep the whole transcript (its turns are 0..{n - 1})")
    k, _ = _turn_cut(state.transcript, edit.before_turn, allow_end=False)
    state.transcript = state.transcript.prefix(k)


def _apply_set_system(edit: SetSystem, state: _State) -> None:
    state.transcript.system = edit.text or None


def _apply_remove_tool(edit: RemoveTool, state: _State) -> None:
    transcript = state.transcript
    names = [t.name for t in transcript.tools]
    if edit.name not in names:
        raise EditError(f"no tool named {edit.name!r} is offered (tools: {', '.join(names) or 'none'})")
    calls = [i for i, m in enumerate(transcript.messages) for u in m.tool_uses if u.name == edit.name]
    if calls and not edit.allow_used:
        raise EditError(
            f"the transcript calls {edit.name!r} {len(calls)} time(s) (first in message {calls[0]}); removing it "
            "would leave calls to a tool that does not exist — truncate before them, or set allow_used: true"
        )
    if calls:
        state.notes.append(f"tool {edit.name!r} was removed but the transcript still holds {len(calls)} call(s) to it")
    transcript.tools = [t for t in transcript.tools if t.name != edit.name]


def _apply_add_tool(edit: AddTool, state: _State) -> None:
    transcript = state.transcript
    names = [t.name for t in transcript.tools]
    tool = edit.tool.model_copy(deep=True)
    if edit.tool.name in names:
        if not edit.replace:
            raise EditError(
                f"a tool named {edit.tool.name!r} is already offered; set replace: true to swap its spec, "
                "or remove_tool it first"
            )
        transcript.tools[names.index(edit.tool.name)] = tool
    else:
        if edit.replace:
            raise EditError(
                f"replace: true but no tool named {edit.tool.name!r} is offered (tools: {', '.join(names) or 'none'})"
            )
        transcript.tools.append(tool)


def _apply_set_knob(edit: SetKnob, state: _State) -> None:
    env = state.env()
    if edit.name not in env.knobs:
        known = ", ".join(sorted(env.knobs)) or "none"
        state.notes.append(
            f"knob {edit.name!r} was not set by the incident (its knobs: {known}); "
            f"scenario {env.scenario or '(none)'} must define it"
        )
    env.knobs[edit.name] = edit.value
    state.patch.set_knobs[edit.name] = edit.value


def _apply_write_file(edit: WriteFile, state: _State) -> None:
    env = state.env()
    env.files[edit.path] = edit.content
    if edit.path in env.remove:
        env.remove.remove(edit.path)
    state.patch.write_files[edit.path] = edit.content
    if edit.path in state.patch.delete_files:
        state.patch.delete_files.remove(edit.path)


def _apply_delete_file(edit: DeleteFile, state: _State) -> None:
    env = state.env()
    if edit.path in env.files:
        del env.files[edit.path]
    else:
        state.notes.append(
            f"file {edit.path} is not among the incident's files; it will be deleted from the rebuilt workspace"
        )
    if edit.path not in env.remove:
        env.remove.append(edit.path)  # the world builder deletes it from the rebuilt workspace
    state.patch.write_files.pop(edit.path, None)
    if edit.path not in state.patch.delete_files:
        state.patch.delete_files.append(edit.path)


def _apply_one(edit: Edit, state: _State) -> None:
    """Dispatch one edit to its handler."""
    match edit:
        case Delete():
            _apply_delete(edit, state)
        case DeleteSentence():
            _apply_delete_sentence(edit, state)
        case Replace():
            _apply_replace(edit, state)
        case InsertText():
            _apply_insert_text(edit, state)
        case InsertMessage():
            _apply_insert_message(edit, state)
        case Truncate():
            _apply_truncate(edit, state)
        case SetSystem():
            _apply_set_system(edit, state)
        case RemoveTool():
            _apply_remove_tool(edit, state)
        case AddTool():
            _apply_add_tool(edit, state)
        case SetKnob():
            _apply_set_knob(edit, state)
        case WriteFile():
            _apply_write_file(edit, state)
        case DeleteFile():
            _apply_delete_file(edit, state)
        case _:
            raise EditError(f"unknown edit {edit!r}")


def _drop_stale_signatures(original: Transcript, edited: Transcript, notes: list[str]) -> None:
    """A thinking block's signature vouches for the exact text the provider produced;
    once the text changes the signature is false (and the API rejects it), so it is
    removed. Restoring the original text (delete then re-insert) keeps it."""
    signed: dict[str, set[str]] = {}
    for msg in original.messages:
        for block in msg.content:
            if isinstance(block, ThinkingBlock) and block.signature is not None:
                signed.setdefault(block.signature, set()).add(block.thinking)
    for mi, msg in enumerate(edited.messages):
        for bi, block in enumerate(msg.content):
            if (
                isinstance(block, ThinkingBlock)
                and block.signature in signed
                and block.thinking not in signed[block.signature]
            ):
                block.signature = None
                notes.append(f"message {mi} block {bi}: the thinking was edited, so its signature was removed")


def apply(
    edits: Sequence[Edit],
    transcript: Transcript,
    environment: Environment | None = None,
) -> Applied:
    """Apply `edits` in order to copies of `transcript` and `environment`.

    Pure: the inputs (and the edits) are never mutated. Each edit sees the transcript
    as the previous edits left it (see the module docstring). Environment edits
    (`set_knob`, `write_file`, `delete_file`) need an `environment`. Raises `EditError`
    naming the failing edit (``edits[i] (summary): what went wrong``).
    """
    state = _State(
        transcript=transcript.model_copy(deep=True),
        environment=environment.model_copy(deep=True) if environment is not None else None,
        patch=EnvironmentPatch(),
        notes=[],
    )
    for i, edit in enumerate(edits):
        notes_before = len(state.notes)
        try:
            _apply_one(edit, state)
        except EditError as exc:
            raise EditError(f"edits[{i}] ({edit.summary()}): {exc}") from None
        state.notes[notes_before:] = [f"edits[{i}]: {note}" for note in state.notes[notes_before:]]
    _drop_stale_signatures(transcript, state.transcript, state.notes)
    return Applied(transcript=state.transcript, environment=state.environment, patch=state.patch, notes=state.notes)


# --------------------------------------------------------------------------- diffs
def _render_tools(tools: Sequence[ToolSpec]) -> list[str]:
    lines: list[str] = []
    for tool in tools:
        lines.append(f"{tool.name}: {tool.description}")
        lines.append("  input_schema: " + json.dumps(tool.input_schema, sort_keys=True, ensure_ascii=False))
    return lines


_HEADER_INDEX = re.compile(r"^=== \[\d+\] ")


def _diff_lines(transcript: Transcript) -> list[str]:
    """The rendered transcript as lines, without the message indices in the headers:
    otherwise inserting or removing one message would show every later header as
    changed. Turn numbers stay, and the hunk headers give line numbers."""
    return [_HEADER_INDEX.sub("=== ", line) for line in transcript.render().splitlines()]


def _unified(before: list[str], after: list[str], fromfile: str, tofile: str) -> list[str]:
    return list(difflib.unified_diff(before, after, fromfile=fromfile, tofile=tofile, lineterm=""))


def render_diff(
    base_transcript: Transcript,
    base_environment: Environment | None,
    applied: Applied,
    *,
    label: str = "variant",
) -> str:
    """A readable account of what `applied` changed relative to the base: a unified
    diff of the rendered transcript, of the tool specs when they differ, the knob
    changes, a diff per written or deleted file, and the notes."""
    out: list[str] = []
    out += _unified(
        _diff_lines(base_transcript),
        _diff_lines(applied.transcript),
        "original/transcript",
        f"{label}/transcript",
    )
    if base_transcript.tools != applied.transcript.tools:
        out += _unified(
            _render_tools(base_transcript.tools),
            _render_tools(applied.transcript.tools),
            "original/tools",
            f"{label}/tools",
        )
    patch = applied.patch
    old_knobs = base_environment.knobs if base_environment is not None else {}
    old_files = base_environment.files if base_environment is not None else {}
    if not patch.is_empty:
        out.append(f"=== environment ({label}) ===")
    for name, value in sorted(patch.set_knobs.items()):
        old = json.dumps(old_knobs[name]) if name in old_knobs else "(unset)"
        out.append(f"knob {name}: {old} -> {json.dumps(value)}")
    for path, content in sorted(patch.write_files.items()):
        if path in old_files:
            diff = _unified(old_files[path].splitlines(), content.splitlines(), f"a/{path}", f"b/{path}")
            out += diff or [f"file {path}: rewritten with identical content"]
        else:
            out += _unified([], content.splitlines(), "/dev/null", f"b/{path}") or [f"new empty file {path}"]
    for path in sorted(patch.delete_files):
        if path in old_files:
            out += _unified(old_files[path].splitlines(), [], f"a/{path}", "/dev/null") or [f"delete empty file {path}"]
        else:
            out.append(f"delete file {path} (created by the scenario, not listed in the incident)")
    out += [f"# note: {note}" for note in applied.notes]
    if not out:
        return "(no changes: identical to the original)\n"
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- variants
def _canonical(edit: Edit) -> dict[str, Any]:
    data: dict[str, Any] = edit.model_dump(mode="json", exclude_defaults=True)
    data["kind"] = edit.kind  # `kind` is a default, so exclude_defaults dropped it
    return data


def variant_id(parent: str | None, edits: Sequence[Edit]) -> str:
    """The content hash naming a variant: the same parent and edits give the same id in
    any process. Defaults are left out of the hash so adding an optional field to an
    edit later does not rename every stored variant."""
    payload = json.dumps(
        {"parent": parent, "edits": [_canonical(e) for e in edits]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "var-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Variant(BaseModel):
    """An incident with edits applied. `edits` is the complete list applied to the
    original incident (a child repeats its parent's edits and adds its own — see
    `derive`), so a variant applies on its own. `parent` records lineage: the id of the
    variant this one extends, or None when it extends the original incident directly
    (the original itself is the variant with no edits and no parent). `id` is
    `variant_id(parent, edits)`: computed when left out, checked when given. The
    `description` does not enter the id."""

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    parent: str | None = None
    edits: list[Edit] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _content_id(self) -> Variant:
        expected = variant_id(self.parent, self.edits)
        if not self.id:
            self.id = expected
        elif self.id != expected:
            raise ValueError(f"id {self.id!r} does not match the variant's content (expected {expected!r})")
        return self

    @classmethod
    def original(cls) -> Variant:
        """The unedited incident, the root of every lineage."""
        return cls(parent=None, edits=[], description="original")

    @property
    def is_original(self) -> bool:
        """Whether this is the unedited incident."""
        return self.parent is None and not self.edits

    def derive(self, edits: Sequence[Edit], description: str = "") -> Variant:
        """A child variant: this variant's edits followed by `edits` (its parent is this
        variant, or None when this is the original)."""
        new = list(edits)
        return Variant(
            parent=None if self.is_original else self.id,
            edits=[*self.edits, *new],
            description=description or "; ".join(e.summary() for e in new),
        )

    def apply(self, incident: Incident) -> Applied:
        """The incident's transcript and environment with this variant's edits applied."""
        return apply(self.edits, incident.transcript, incident.environment)

    def diff(self, base_transcript: Transcript, base_env: Environment | None = None) -> str:
        """What this variant changes relative to the base, as a readable diff."""
        return render_diff(base_transcript, base_env, apply(self.edits, base_transcript, base_env), label=self.id)


# --------------------------------------------------------------------------- loading
def _validation_message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        return "unexpected field (check the spelling; see the Edit kinds in tools/edit.py)"
    if kind == "union_tag_not_found":
        return f"each edit needs a `kind`: one of {', '.join(EDIT_KINDS)}"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown kind {tag!r}; expected one of {', '.join(EDIT_KINDS)}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _edit_error(source: str, exc: ValidationError, prefix: tuple[Any, ...]) -> EditError:
    err = exc.errors(include_url=False)[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    if loc and loc[0] in EDIT_KINDS:  # the discriminated union puts the tag first
        loc = loc[1:]
    return EditError(f"{source}: field `{json_path((*prefix, *loc))}`: {_validation_message(err)}")


def parse_edits(data: Any, *, source: str = "<input>") -> tuple[list[Edit], str | None]:
    """Edits (and the description, if any) from already-parsed YAML/JSON: a list of
    edits, or a mapping ``{edits: [...], description: "..."}``. Errors name `source` and
    the field."""
    description: str | None = None
    prefix: tuple[Any, ...] = ()
    if isinstance(data, dict):
        extra = sorted(str(k) for k in data if k not in ("edits", "description"))
        if extra:
            raise EditError(
                f"{source}: field `{extra[0]}`: unexpected field (an edit file has `edits` and `description`)"
            )
        if "edits" not in data:
            raise EditError(f"{source}: field `edits`: this field is required")
        if data.get("description") is not None and not isinstance(data["description"], str):
            raise EditError(f"{source}: field `description`: expected text (got {type(data['description']).__name__})")
        description = data.get("description")
        data = data["edits"]
        prefix = ("edits",)
    if not isinstance(data, list):
        where = "edits" if prefix else "$"
        raise EditError(
            f"{source}: field `{where}`: expected a list of edits, or a mapping with `edits` and `description` "
            f"(got {type(data).__name__})"
        )
    edits: list[Edit] = []
    for i, item in enumerate(data):
        try:
            edits.append(EDIT_ADAPTER.validate_python(item))
        except ValidationError as exc:
            raise _edit_error(source, exc, (*prefix, i)) from None
    return edits, description


def _read_edit_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EditError(f"{path}: file not found") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise EditError(f"{path}: cannot read as UTF-8 text ({exc.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise EditError(f"{path}: not valid YAML/JSON{where}: {getattr(exc, 'problem', exc)}") from None


def load_edits(path: str | Path) -> list[Edit]:
    """The edits in a YAML/JSON edit file (a list, or ``{edits: [...], description}``).
    Every problem raises `EditError` naming the file and the field."""
    edits, _ = parse_edits(_read_edit_file(Path(path)), source=str(path))
    return edits


def load_variant(path: str | Path, parent: Variant | None = None) -> Variant:
    """A variant from an edit file: the file's edits on top of `parent` (default: the
    original incident), described by the file's `description` or its name."""
    p = Path(path)
    edits, description = parse_edits(_read_edit_file(p), source=str(p))
    return (parent or Variant.original()).derive(edits, description or f"edits from {p.name}")
