"""Inspect AI eval logs (``.eval`` zip archives and ``.json``) as transcripts.

An Inspect log holds one evaluation: a header (task, model, generation config,
plan, results) and any number of samples, each run for one or more epochs. One
`Transcript` is one sample at one epoch, chosen with `LoadOptions.sample_id` (compared
with ``str(sample.id)``) and `LoadOptions.epoch` (by default the sample's only
epoch, else epoch 1); a log with several samples and no `sample_id` is an error that
lists the (id, epoch) pairs it holds.

The log is read with Inspect's own reader (`inspect_ai.log`), never parsed by hand, so
every log version Inspect can read is read the same way Inspect reads it. For ``.eval``
archives only the header, the sample summaries and the one chosen sample are read;
a ``.json`` log has no index and is read whole. `inspect_ai` is an optional
dependency (``pip install 'model-forensics[inspect]'``) and is imported only when a
log is loaded, so detecting formats stays cheap.

Mapping (Inspect -> `Transcript`):

- Leading ``ChatMessageSystem`` messages (text only) become `Transcript.system`,
  joined by a blank line; their count is kept in ``metadata["inspect_system_messages"]``
  when there are several. A later system message (or a leading one holding
  anything but text) becomes a user message with ``metadata["source_role"] = "system"``.
- ``ChatMessageUser`` -> user message. ``ChatMessageAssistant`` -> assistant message
  whose ``tool_calls`` become `ToolUseBlock`s after its content; the message's
  ``model`` is kept in its metadata, and a tool call's ``parse_error``, ``view`` or
  non-``"function"`` type under ``metadata["inspect_tool_calls"][id]``.
- Each run of consecutive ``ChatMessageTool`` messages becomes ONE user message of
  `ToolResultBlock`s (the Anthropic shape). A tool error sets ``is_error`` and puts
  the error message first in the result (it is what Inspect's providers send the
  model); its type is kept under ``metadata["inspect_tool_errors"][tool_call_id]``.
- Content: ``ContentText`` -> `TextBlock`, ``ContentReasoning`` -> `ThinkingBlock`
  (signature, redacted), ``ContentImage`` -> `ImageBlock` (a data URI is split
  into media type and base64 data, anything else is a URL). Fields the block has no
  place for (a reasoning ``summary``, a text ``refusal`` or ``citations``, provider
  ``internal`` payloads, an image ``detail``) are kept under
  ``metadata["inspect_content"][key]``, where *key* is the block index (``"2"``) or,
  inside a tool result, ``"block.item"`` (``"0.1"``).
- Audio, video, documents, provider data and server-side tool use
  (``ContentToolUse``) have no block type. They are PRESERVED, not rejected: an
  Inspect log that contains one web search must still be investigable. Each becomes
  a `TextBlock` with a bracketed description (for server tool use: the tool, its
  arguments and its result, which the model did see), and the original item is kept
  whole under ``metadata["inspect_content"][key]`` with ``"preserved_as_text": true``
  so an exporter can restore it.
- A message's ``id`` is kept; its ``source`` and ``metadata`` under
  ``metadata["inspect_source"]`` / ``metadata["inspect_metadata"]``. An empty string
  content yields no block (it carries nothing and Inspect's providers skip it).

`Transcript.model` is the eval's model, `Transcript.tools` the tools offered in the
sample's model events (or, if the log has no events, the names of the tools called,
with ``metadata["tools_inferred"] = True``), `Transcript.generation` Inspect's
effective generate config (plan config overridden by the eval's). Transcript metadata
records the task, ids, sample id and epoch, scores, target and the log's location.

Not imported: events other than the tools offered, the sample store, token usage,
attachments (resolved into the messages first) and the eval's results. A log whose
eval ended in an error (status ``"error"``) still yields the samples it completed, with
a warning in the import report (the eval's error message, and the sample's own error if
it has one); a log that holds no samples, and any file Inspect cannot read (not a log,
truncated, corrupt, schema violations) raise `FormatError`.

Accounting: every Inspect message and content item is counted; the leading system
messages are kept as the system prompt, runs of tool messages are merged into one user
message, and content with no block type is counted as kept whole in metadata with the
bracketed text that stands in for it counted as synthesized.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from tools.errors import FormatError
from tools.formats.accounting import ImportTally
from tools.formats.base import Importer, LoadOptions, check_zip_archive, format_error_from_validation, read_json
from tools.transcript import (
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

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample
    from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageTool, Content

T = TypeVar("T")

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_LISTED = 20
_LINE_COLUMN = re.compile(r"line (\d+),? column (\d+)")

# Fields of each Inspect content type that the block it maps to already holds; any
# other non-default field is kept in message metadata (see the module docstring).
_CONSUMED: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text"}),
    "reasoning": frozenset({"type", "reasoning", "signature", "redacted"}),
    "image": frozenset({"type", "image"}),
}


# --------------------------------------------------------------------------- reading


def _import_inspect(source: str) -> None:
    """Fail with a clear `FormatError` when the optional inspect_ai is missing."""
    try:
        import inspect_ai.log  # noqa: F401
    except ImportError as exc:
        raise FormatError(
            f"reading Inspect logs needs the inspect_ai package ({exc}); install it with "
            "`pip install 'model-forensics[inspect]'`",
            source=source,
        ) from None


def _read(call: Callable[[], T], *, source: str, what: str = "", member: str = "") -> T:
    """Run one inspect_ai read and turn whatever it raises into a `FormatError`.

    Inspect's reader raises many types on a bad file (``BadZipFile``, ``KeyError``
    for a missing archive member, ``ValueError`` for JSON syntax and for a zip with no
    end-of-archive record, pydantic ``ValidationError``, ``zlib.error``,
    ``EOFError``...), and the set changes between versions, so everything but
    interrupts is converted here. Only the reader call is wrapped: a bug in this
    module's own mapping still surfaces as itself.

    `what` names the part being read (``"the log header"``) for the message;
    `member` is the archive member it lives in (``header.json``), the error's
    location when no JSON path is known.
    """
    try:
        return call()
    except FileNotFoundError:
        raise FormatError("file not found", source=source) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected an Inspect log file", source=source) from None
    except Exception as exc:
        where = f" ({what}" + (f", {member}" if member else "") + ")" if what else ""
        validation = _find_validation_error(exc)
        if validation is not None:
            location, detail = _validation_detail(validation, source=source)
            raise FormatError(f"not a valid Inspect log{where}: {detail}", source=source, location=location) from None
        text = str(exc).strip()
        detail = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        if isinstance(exc, zipfile.BadZipFile) or "EOCD" in text:
            detail = f"not a complete zip archive, so truncated or not an .eval log ({detail})"
        position = _LINE_COLUMN.search(text)
        location = f"line {position[1]}, column {position[2]}" if position and not member else member
        raise FormatError(
            f"could not read the Inspect log{where}: {detail}", source=source, location=location
        ) from None


def _find_validation_error(exc: BaseException) -> ValidationError | None:
    """The pydantic error behind `exc`, if Inspect wrapped one (it re-raises as ValueError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ValidationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _validation_detail(exc: ValidationError, *, source: str) -> tuple[str, str]:
    """Location and message of the first problem. A value that fits no member of a
    union of literals (a message ``role``, a content ``type``) fails once per member;
    those failures are merged so the message lists every accepted value."""
    err = format_error_from_validation(exc, source=source)
    first = exc.errors(include_url=False)[0]
    if first["type"] != "literal_error":
        return err.location, err.detail
    expected: list[str] = []
    for other in exc.errors(include_url=False):
        if other["type"] == "literal_error" and _clean_loc(other["loc"]) == _clean_loc(first["loc"]):
            value = str(other.get("ctx", {}).get("expected", ""))
            if value and value not in expected:
                expected.append(value)
    if len(expected) < 2:
        return err.location, err.detail
    shown = repr(first["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    accepted = ", ".join(expected[:-1]) + f" or {expected[-1]}"
    return err.location, f"Input should be {accepted} (got {shown})"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A pydantic location without union-member and validator tags (as `base` renders it)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _is_zip(path: Path, source: str) -> bool:
    """Whether the file is a zip archive (an ``.eval`` log), judged by its magic bytes."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == _ZIP_MAGIC
    except FileNotFoundError:
        raise FormatError("file not found", source=source) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected an Inspect log file", source=source) from None
    except OSError as exc:
        raise FormatError(f"could not open the file: {exc.strerror or exc}", source=source) from None


def _header_warning(log: EvalLog) -> str | None:
    """What to say about a log whose eval failed: its completed samples are still read,
    but the reader must know the eval did not finish."""
    if log.status != "error":
        return None
    reason = ""
    if log.error is not None and log.error.message.strip():
        reason = ": " + log.error.message.strip().splitlines()[0]
    return (
        f"the evaluation in this log ended with an error{reason}; only the samples it completed were written "
        "(retry the eval with `inspect eval-retry` for the rest)"
    )


def _no_samples_error(log: EvalLog, *, source: str) -> FormatError:
    why = ""
    if log.eval.config.log_samples is False:
        why = " (the eval ran with log_samples=False, so no transcripts were saved)"
    elif log.status == "started":
        why = " (the eval is still running or was interrupted before any sample was written)"
    return FormatError(f"the log holds no samples{why}", source=source, location="samples")


def _describe(pairs: Sequence[tuple[int | str, int]]) -> str:
    """The (id, epoch) pairs for an error message, sorted (numeric ids numerically), capped."""
    pairs = sorted(pairs, key=lambda p: (isinstance(p[0], str), p[0] if isinstance(p[0], int) else 0, str(p[0]), p[1]))
    shown = ", ".join(f"{sid} (epoch {epoch})" for sid, epoch in pairs[:_MAX_LISTED])
    if len(pairs) > _MAX_LISTED:
        shown += f", ... and {len(pairs) - _MAX_LISTED} more"
    return shown


def select_sample(
    available: Sequence[tuple[int | str, int]], options: LoadOptions, *, source: str
) -> tuple[int | str, int]:
    """The (id, epoch) pair `options` asks for among the log's samples.

    With a `sample_id` (compared as text with ``str(id)``): that sample at `epoch`,
    or, when `epoch` is not given, at its only epoch if it has one, else epoch 1.
    Without one: the only sample (at `epoch` if given) when the log holds just one
    sample id; otherwise a `FormatError` listing what exists and how to choose.
    """
    if not available:
        raise FormatError("the log holds no samples", source=source, location="samples")
    ids = list(dict.fromkeys(str(sid) for sid, _ in available))

    wanted = options.sample_id
    if wanted is None:
        if len(ids) > 1:
            raise FormatError(
                f"the log holds {len(ids)} samples; choose one with --sample ID (and --epoch N, default 1). "
                f"Available: {_describe(available)}",
                source=source,
                location="samples",
            )
        wanted = ids[0]

    epochs = [epoch for sid, epoch in available if str(sid) == wanted]
    if not epochs:
        raise FormatError(
            f"no sample with id {wanted!r} in this log. Available: {_describe(available)}",
            source=source,
            location="samples",
        )
    epoch = options.epoch if options.epoch is not None else (epochs[0] if len(epochs) == 1 else 1)
    for sid, e in available:
        if str(sid) == wanted and e == epoch:
            return sid, e
    raise FormatError(
        f"sample {wanted!r} has no epoch {epoch}; it was run for epoch(s) {', '.join(map(str, sorted(epochs)))}",
        source=source,
        location="samples",
    )


def _read_eval_archive(source: str, options: LoadOptions) -> tuple[EvalLog, EvalSample]:
    """Header, sample index and one sample of an ``.eval`` archive (not every sample)."""
    from inspect_ai.log import read_eval_log, read_eval_log_sample, read_eval_log_sample_summaries

    header = _read(
        lambda: read_eval_log(source, header_only=True, format="eval"),
        source=source,
        what="the log header",
        member="header.json",
    )
    summaries = _read(
        lambda: read_eval_log_sample_summaries(source, format="eval"),
        source=source,
        what="the sample index",
        member="summaries.json",
    )
    if not summaries:
        raise _no_samples_error(header, source=source)
    sid, epoch = select_sample([(s.id, s.epoch) for s in summaries], options, source=source)
    sample = _read(
        lambda: read_eval_log_sample(source, id=sid, epoch=epoch, resolve_attachments="core", format="eval"),
        source=source,
        what=f"sample {sid} epoch {epoch}",
        member=f"samples/{sid}_epoch_{epoch}.json",
    )
    return header, sample


def _pick(log: EvalLog, options: LoadOptions, *, source: str) -> EvalSample:
    if not log.samples:
        raise _no_samples_error(log, source=source)
    sid, epoch = select_sample([(s.id, s.epoch) for s in log.samples], options, source=source)
    return next(s for s in log.samples if s.id == sid and s.epoch == epoch)


def _load(path: Path, options: LoadOptions) -> Transcript:
    source = str(path)
    _import_inspect(source)
    if _is_zip(path, source) or path.suffix.lower() == ".eval":
        check_zip_archive(path)  # declared sizes and ratios, before anything inflates
        header, sample = _read_eval_archive(source, options)
    else:
        # Read (bounded: size, depth, Unicode) by the toolkit, validated by Inspect.
        return parse(read_json(path), source=source, options=options)
    return sample_to_transcript(header, sample, source=source)


def parse(data: Any, *, source: str, options: LoadOptions | None = None) -> Transcript:
    """A transcript from an already-parsed ``.json`` Inspect log (a dict).

    The data is handed to Inspect's reader as a byte stream, so it is validated by
    Inspect exactly as a file would be.
    """
    import io
    import json

    _import_inspect(source)
    from inspect_ai.log import read_eval_log

    try:
        raw = json.dumps(data).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise FormatError(f"not JSON-serializable data: {exc}", source=source) from None
    log = _read(lambda: read_eval_log(io.BytesIO(raw), resolve_attachments="core", format="json"), source=source)
    return sample_to_transcript(log, _pick(log, options or LoadOptions(), source=source), source=source)


def _sniff(path: Path, data: Any) -> bool:
    """An Inspect ``.json`` log: ``version``, ``status`` and an ``eval`` with task and model."""
    try:
        if not isinstance(data, dict):
            return False
        spec = data.get("eval")
        return (
            isinstance(spec, dict)
            and isinstance(spec.get("task"), str)
            and isinstance(spec.get("model"), str)
            and isinstance(data.get("version"), int)
            and isinstance(data.get("status"), str)
        )
    except Exception:
        return False


# --------------------------------------------------------------------------- mapping


def sample_to_transcript(log: EvalLog, sample: EvalSample, *, source: str) -> Transcript:
    """Map one Inspect sample (with its log's header) to a `Transcript`.

    `log` needs only its header (``samples`` may be absent); see the module
    docstring for the mapping.
    """
    tally = ImportTally(format="inspect", source=source)
    if warning := _header_warning(log):
        tally.warn(warning, location="status")
    if sample.error is not None:
        tally.warn(f"sample {sample.id} (epoch {sample.epoch}) ended with an error: {sample.error.message}")
    system, first, system_count = _leading_system(sample.messages)
    for msg in sample.messages[:first]:
        _count_content(msg.content, tally)
        tally.count(messages=1)
    if first:
        items = sum(1 if isinstance(m.content, str) else len(m.content) for m in sample.messages[:first])
        tally.keep("system prompt", {"messages": first, "text": items})
    messages = _map_messages(
        sample.messages, first, source=source, sample_label=f"{sample.id} epoch {sample.epoch}", tally=tally
    )
    tools, inferred = _tools(sample, messages)

    metadata: dict[str, Any] = {
        "task": log.eval.task,
        "task_id": log.eval.task_id,
        "eval_id": log.eval.eval_id,
        "run_id": log.eval.run_id,
        "eval_status": log.status,
        "created": log.eval.created,
        "sample_id": sample.id,
        "epoch": sample.epoch,
        "scores": _json({name: score.model_dump(exclude_none=True) for name, score in (sample.scores or {}).items()}),
        "target": _json(sample.target),
        "log_location": log.location or source,
    }
    if sample.uuid:
        metadata["sample_uuid"] = sample.uuid
    if sample.metadata:
        metadata["sample_metadata"] = _json(sample.metadata)
    if sample.error is not None:
        metadata["sample_error"] = sample.error.message
    if sample.limit is not None:
        metadata["sample_limit"] = _json(sample.limit.model_dump(exclude_none=True))
    if version := log.eval.packages.get("inspect_ai"):
        metadata["inspect_version"] = version
    if system_count > 1:
        metadata["inspect_system_messages"] = system_count
    if inferred:
        metadata["tools_inferred"] = True
    metadata["harness"] = "inspect"

    transcript = Transcript(
        system=system,
        tools=tools,
        messages=messages,
        model=log.eval.model,
        generation=_generation(log),
        metadata=metadata,
    )
    return tally.finish(transcript)


def _count_content(content: str | list[Content], tally: ImportTally) -> None:
    """Count a message's content items as read: empty string content carries nothing."""
    from inspect_ai.model import ContentImage, ContentReasoning, ContentText

    if isinstance(content, str):
        tally.count(text=1 if content else 0)
        return
    for item in content:
        if isinstance(item, ContentText):
            tally.count(text=1)
        elif isinstance(item, ContentReasoning):
            tally.count(thinking=1)
        elif isinstance(item, ContentImage):
            tally.count(images=1)
        else:
            tally.count(other=1)
            tally.keep("content with no block type (kept whole in message metadata)", {"other": 1})
            tally.synthesize("bracketed text standing in for content with no block type", {"text": 1})
            tally.note(
                f"{item.type} content has no transcript block: it is shown as bracketed text and kept whole in "
                "the message's metadata['inspect_content']"
            )


def _json(value: Any) -> Any:
    """Plain JSON values (scores, targets and metadata may hold pydantic models)."""
    return to_jsonable_python(value, fallback=repr)


def _leading_system(messages: Sequence[ChatMessage]) -> tuple[str | None, int, int]:
    """The text of the leading text-only system messages, the index after them, their count."""
    from inspect_ai.model import ChatMessageSystem

    texts: list[str] = []
    index = 0
    for msg in messages:
        if not isinstance(msg, ChatMessageSystem):
            break
        if isinstance(msg.content, list) and any(item.type != "text" for item in msg.content):
            break
        texts.append(msg.text)
        index += 1
    return ("\n\n".join(texts) if texts else None), index, len(texts)


def _map_messages(
    messages: Sequence[ChatMessage], start: int, *, source: str, sample_label: str, tally: ImportTally
) -> list[Message]:
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser

    out: list[Message] = []
    pending_tools: list[tuple[int, ChatMessageTool]] = []

    def flush() -> None:
        if pending_tools:
            out.append(_tool_results(pending_tools, source=source, sample_label=sample_label))
            tally.count(messages=len(pending_tools), tool_results=len(pending_tools))
            tally.merge(messages=len(pending_tools) - 1)
            pending_tools.clear()

    for i in range(start, len(messages)):
        msg = messages[i]
        if isinstance(msg, ChatMessageTool):
            pending_tools.append((i, msg))
            continue
        flush()
        tally.count(messages=1)
        _count_content(msg.content, tally)
        if isinstance(msg, ChatMessageAssistant):
            tally.count(tool_calls=len(msg.tool_calls or []))
        blocks, content_meta = _content_blocks(msg.content)
        metadata = _base_metadata(msg, content_meta)
        if isinstance(msg, ChatMessageAssistant):
            blocks.extend(_tool_uses(msg, metadata))
            if msg.model is not None:
                metadata["model"] = msg.model
            out.append(Message(role="assistant", content=blocks, id=msg.id, metadata=metadata))
        elif isinstance(msg, ChatMessageSystem):
            out.append(Message(role="user", content=blocks, id=msg.id, metadata={"source_role": "system", **metadata}))
        elif isinstance(msg, ChatMessageUser):
            if msg.tool_call_id is not None:
                metadata["inspect_tool_call_id"] = list(msg.tool_call_id)
            out.append(Message(role="user", content=blocks, id=msg.id, metadata=metadata))
        else:  # a message type this version of the importer does not know
            raise FormatError(
                f"sample {sample_label}: unsupported message role {getattr(msg, 'role', type(msg).__name__)!r}; "
                "expected system, user, assistant or tool",
                source=source,
                location=f"messages[{i}].role",
            )
    flush()
    return out


def _base_metadata(msg: ChatMessage, content_meta: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if msg.source is not None:
        metadata["inspect_source"] = msg.source
    if msg.metadata:
        metadata["inspect_metadata"] = _json(msg.metadata)
    if content_meta:
        metadata["inspect_content"] = content_meta
    return metadata


def _tool_uses(msg: ChatMessageAssistant, metadata: dict[str, Any]) -> list[ContentBlock]:
    """`ToolUseBlock`s for an assistant message's tool calls; extra call facts go to `metadata`."""
    blocks: list[ContentBlock] = []
    extras: dict[str, Any] = {}
    for call in msg.tool_calls or []:
        blocks.append(ToolUseBlock(id=call.id, name=call.function, input=_json(dict(call.arguments))))
        extra: dict[str, Any] = {}
        if call.parse_error is not None:
            extra["parse_error"] = call.parse_error
        if call.view is not None:
            extra["view"] = _json(call.view)
        if call.type != "function":
            extra["type"] = call.type
        if extra:
            extras[call.id] = extra
    if extras:
        metadata["inspect_tool_calls"] = extras
    return blocks


def _tool_results(group: Sequence[tuple[int, ChatMessageTool]], *, source: str, sample_label: str) -> Message:
    """One user message holding the results of a run of consecutive tool messages."""
    results: list[ContentBlock] = []
    content_meta: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    inspect_meta: dict[str, Any] = {}
    functions: dict[str, str] = {}
    for block_index, (i, msg) in enumerate(group):
        if not msg.tool_call_id:
            raise FormatError(
                f"sample {sample_label}: a tool message must name the tool call it answers (tool_call_id)",
                source=source,
                location=f"messages[{i}].tool_call_id",
            )
        items, item_meta = _result_items(msg.content, block_index)
        content_meta.update(item_meta)
        if msg.error is not None:
            errors[msg.tool_call_id] = {"type": msg.error.type, "message": msg.error.message}
            text = "\n".join(item.text for item in items if isinstance(item, TextBlock))
            if msg.error.message and text != msg.error.message:
                items.insert(0, TextBlock(text=msg.error.message))
        if msg.metadata:
            inspect_meta[msg.tool_call_id] = _json(msg.metadata)
        if msg.function is not None:
            functions[msg.tool_call_id] = msg.function
        results.append(ToolResultBlock(tool_use_id=msg.tool_call_id, content=items, is_error=msg.error is not None))

    metadata: dict[str, Any] = {}
    ids = [msg.id for _, msg in group if msg.id is not None]
    if len(group) > 1:
        metadata["inspect_message_ids"] = ids
    metadata["inspect_tool_functions"] = functions
    if errors:
        metadata["inspect_tool_errors"] = errors
    if inspect_meta:
        metadata["inspect_metadata"] = inspect_meta
    if content_meta:
        metadata["inspect_content"] = content_meta
    return Message(role="user", content=results, id=group[0][1].id if len(group) == 1 else None, metadata=metadata)


def _content_blocks(content: str | list[Content]) -> tuple[list[ContentBlock], dict[str, Any]]:
    """Blocks for a message's content and the per-block facts kept in metadata."""
    if isinstance(content, str):
        return ([TextBlock(text=content)] if content else []), {}
    blocks: list[ContentBlock] = []
    meta: dict[str, Any] = {}
    for index, item in enumerate(content):
        block, extra = _content_block(item)
        blocks.append(block)
        if extra:
            meta[str(index)] = extra
    return blocks, meta


def _result_items(content: str | list[Content], block_index: int) -> tuple[list[ToolResultItem], dict[str, Any]]:
    """Items of a tool result (text and images only) and their metadata."""
    if isinstance(content, str):
        return ([TextBlock(text=content)] if content else []), {}
    items: list[ToolResultItem] = []
    meta: dict[str, Any] = {}
    for index, item in enumerate(content):
        block, extra = _content_block(item)
        if isinstance(block, ThinkingBlock):  # a result item can only be text or an image
            items.append(TextBlock(text=block.thinking))
            extra = {**_dump(item, frozenset()), "preserved_as_text": True}
        else:
            items.append(block)
        if extra:
            meta[f"{block_index}.{index}"] = extra
    return items, meta


def _content_block(item: Content) -> tuple[TextBlock | ThinkingBlock | ImageBlock, dict[str, Any]]:
    """One content item as a block, with the facts the block cannot hold."""
    from inspect_ai.model import ContentImage, ContentReasoning, ContentText

    if isinstance(item, ContentText):
        return TextBlock(text=item.text), _dump(item, _CONSUMED["text"])
    if isinstance(item, ContentReasoning):
        block = ThinkingBlock(thinking=item.reasoning, signature=item.signature, redacted=item.redacted)
        return block, _dump(item, _CONSUMED["reasoning"])
    if isinstance(item, ContentImage):
        return _image(item.image), _dump(item, _CONSUMED["image"])
    return TextBlock(text=_placeholder(item)), {**_dump(item, frozenset()), "preserved_as_text": True}


def _dump(item: Content, consumed: frozenset[str]) -> dict[str, Any]:
    """The item's non-default fields not in `consumed`, with its type when any remain."""
    if consumed:
        data = item.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        extra = {k: v for k, v in data.items() if k not in consumed}
        return {"type": item.type, **extra} if extra else {}
    data = item.model_dump(mode="json", exclude_none=True)
    return {"type": item.type, **data}


def _image(image: str) -> ImageBlock:
    """A data URI (``data:image/png;base64,...``) split up; anything else is a URL or path."""
    if image.startswith("data:") and "," in image:
        head, data = image[5:].split(",", 1)
        media_type = head.split(";", 1)[0] or None
        if head.endswith(";base64"):
            return ImageBlock(media_type=media_type, data=data)
    return ImageBlock(url=image)


def _placeholder(item: Content) -> str:
    """Readable text standing in for content that has no block type."""
    from inspect_ai.model import ContentAudio, ContentData, ContentDocument, ContentToolUse, ContentVideo

    if isinstance(item, ContentToolUse):
        text = f"[server tool use: {item.tool_type} {item.name}({item.arguments})]"
        if item.result:
            text += f"\n{item.result}"
        if item.error:
            text += f"\n[error] {item.error}"
        return text
    if isinstance(item, ContentAudio):
        return f"[audio content ({item.format}) not shown]"
    if isinstance(item, ContentVideo):
        return f"[video content ({item.format}) not shown]"
    if isinstance(item, ContentDocument):
        return f"[document {item.filename} ({item.mime_type}) not shown]"
    if isinstance(item, ContentData):
        return "[provider data not shown]"
    return f"[{getattr(item, 'type', type(item).__name__)} content not shown]"


def _tools(sample: EvalSample, messages: Sequence[Message]) -> tuple[list[ToolSpec], bool]:
    """Tools offered to the main model (from its model events), or the names called."""
    from inspect_ai.event import ModelEvent

    specs: dict[str, ToolSpec] = {}
    events = [e for e in sample.events if isinstance(e, ModelEvent)]
    main = [e for e in events if e.role is None] or events
    for event in main:
        for info in event.tools:
            if info.name not in specs:
                schema = info.parameters.model_dump(mode="json", exclude_none=True)
                specs[info.name] = ToolSpec(name=info.name, description=info.description, input_schema=schema)
    if specs or events:
        return list(specs.values()), False
    names = dict.fromkeys(block.name for msg in messages for block in msg.tool_uses)
    return [ToolSpec(name=name) for name in names], bool(names)


def _generation(log: EvalLog) -> GenerationConfig:
    """Inspect's effective generate config: the plan's, overridden by the eval's."""
    config = log.plan.config.merge(log.eval.model_generate_config)
    data: dict[str, Any] = config.model_dump(mode="json", exclude_none=True)
    if "reasoning_tokens" in data:
        data["thinking_budget"] = data.pop("reasoning_tokens")
    return GenerationConfig.model_validate(data)


def _refusal(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        return "an Inspect .json log is a JSON object"
    spec = data.get("eval")
    if not isinstance(spec, dict):
        return "it has no 'eval' object (the eval's task and model)"
    for key in ("task", "model"):
        if not isinstance(spec.get(key), str):
            return f"'eval.{key}' is missing or not a string"
    if not isinstance(data.get("version"), int):
        return "'version' (the log format version) is missing or not an integer"
    return "'status' is missing or not a string"


IMPORTER = Importer(
    name="inspect",
    description="Inspect AI eval log (.eval archive or .json); choose a sample with --sample/--epoch",
    sniff=_sniff,
    load=_load,
    markers=frozenset({"eval", "samples", "plan", "results", "stats", "status", "version", "reductions"}),
    refusal=_refusal,
)
