"""Inspect AI logs: real logs written by inspect_ai (mockllm, a pure-Python tool, two
samples, two epochs) in both formats, mapped to transcripts; sample selection; and bad
files (truncated, bit-flipped, schema-violating) that must raise `FormatError` only."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inspect_ai.log import EvalError, EvalLog, EvalSample, read_eval_log, write_eval_log
from inspect_ai.model import (
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    ContentAudio,
    ContentData,
    ContentDocument,
    ContentImage,
    ContentReasoning,
    ContentText,
    ContentToolUse,
)
from inspect_ai.tool import ToolCall, ToolCallError

from tests.conftest import EXAMPLES
from tests.tools.formats import inspect_helpers as h
from tools.errors import FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.accounting import report_of
from tools.formats.base import LoadOptions
from tools.formats.inspect_log import IMPORTER, parse, sample_to_transcript, select_sample
from tools.formats.native import dumps
from tools.formats.native import parse as parse_native
from tools.transcript import ImageBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock, Transcript

Format = Literal["eval", "json"]
FUZZ = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inspect")


@pytest.fixture(scope="module")
def logs(workdir: Path) -> dict[Format, Path]:
    """One real log per format, written once for the module (each eval takes ~1 s)."""
    return {fmt: h.run_eval(workdir, fmt) for fmt in ("eval", "json")}


@pytest.fixture(scope="module")
def full_log(logs: dict[Format, Path]) -> EvalLog:
    """The JSON log as Inspect reads it, to derive variants with Inspect's own writer."""
    return read_eval_log(str(logs["json"]))


@pytest.fixture(params=["eval", "json"])
def fmt(request: pytest.FixtureRequest) -> Format:
    value: Format = request.param
    return value


def load(path: Path, sample_id: str | None = None, epoch: int | None = None) -> Transcript:
    return IMPORTER.load(path, LoadOptions(sample_id=sample_id, epoch=epoch))


def write_variant(log: EvalLog, directory: Path, fmt: Format, **update: Any) -> Path:
    """`log` with fields replaced, written by Inspect to a fresh file."""
    path = directory / f"variant-{uuid.uuid4().hex}.{fmt}"
    write_eval_log(log.model_copy(update=update, deep=True), str(path))
    return path


def fresh_file(directory: Path, suffix: str, data: bytes) -> Path:
    path = directory / f"fuzz-{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return path


def assert_located(exc: FormatError, path: Path) -> None:
    assert exc.source == str(path)
    assert exc.location or len(exc.detail) > 20, exc


def test_inspect_wrote_only_under_the_test_directory(
    logs: dict[Format, Path], workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # its traces went to a redirected data dir (so not to ~/.local/share), its logs to log_dir;
    # Inspect opens its trace file once per process, so an earlier test's eval may own it
    traces = list(tmp_path_factory.getbasetemp().glob("**/xdg_data_home/inspect_ai/traces/*"))
    assert traces, "inspect_ai wrote no trace under any redirected data dir"
    assert all(path.is_relative_to(workdir) for path in logs.values())
    assert not (workdir / "logs").exists()


# ----------------------------------------------------------------- mapping


def test_agentic_sample_maps_every_part(logs: dict[Format, Path], fmt: Format) -> None:
    t = load(logs[fmt], "fix-hook", 1)

    assert t.system == h.SYSTEM_PROMPT
    assert t.model == h.MODEL
    assert [(m.role, m.metadata.get("source_role")) for m in t.messages] == [
        ("user", None),
        ("assistant", None),
        ("user", None),
        ("assistant", None),
        ("user", None),
        ("assistant", None),
        ("user", None),
        ("assistant", None),
    ]
    assert t.messages[0].text.startswith("Commit the staged changes")

    first = t.messages[1]
    thinking, text, status, diff = first.content
    assert isinstance(thinking, ThinkingBlock)
    assert thinking.signature == h.THINKING_SIGNATURE
    assert not thinking.redacted
    assert thinking.thinking.startswith("The user wants")
    assert text == TextBlock(text="I'll check the repository state first.")
    assert status == ToolUseBlock(id=h.STATUS_ID, name="bash", input={"cmd": "git status --short"})
    assert diff == ToolUseBlock(id=h.DIFF_ID, name="bash", input={"cmd": "git diff --cached --stat"})
    assert first.metadata["model"] == h.MODEL
    assert first.metadata["inspect_source"] == "generate"

    # two consecutive tool messages -> one user message with both results, in order
    results = t.messages[2]
    assert [r.tool_use_id for r in results.tool_results] == [h.STATUS_ID, h.DIFF_ID]
    assert results.tool_results[0].text == "M  src/payments/ledger.py\nM  tests/test_ledger.py"
    assert not any(r.is_error for r in results.tool_results)
    assert len(results.metadata["inspect_message_ids"]) == 2
    assert results.metadata["inspect_tool_functions"] == {h.STATUS_ID: "bash", h.DIFF_ID: "bash"}

    # an assistant message with only a tool call has no empty text block
    assert [b.type for b in t.messages[3].content] == ["tool_use"]

    # the hook failure was a ToolError: an error result carrying the hook's output
    (failure,) = t.messages[4].tool_results
    assert failure.tool_use_id == h.COMMIT_ID
    assert failure.is_error
    assert failure.text == h.HOOK_FAILURE
    assert t.messages[4].metadata["inspect_tool_errors"] == {
        h.COMMIT_ID: {"type": "unknown", "message": h.HOOK_FAILURE}
    }

    assert t.messages[5].tool_uses[0].input == {"cmd": "git commit --no-verify -m 'Fix ledger rounding'"}
    assert t.messages[7].text.startswith("Committed as 3f2a1c9")
    assert len(t.turns()) == 4
    assert t.turn(1).results == [failure]


def test_tools_generation_and_metadata(logs: dict[Format, Path], fmt: Format) -> None:
    t = load(logs[fmt], "fix-hook", 1)
    header = read_eval_log(str(logs[fmt]), header_only=True)

    (spec,) = t.tools
    assert spec.name == "bash"
    assert spec.description == "Run a bash command in the repository and return its output."
    assert spec.input_schema["properties"] == {"cmd": {"type": "string", "description": "The bash command to execute."}}
    assert spec.input_schema["required"] == ["cmd"]
    assert "tools_inferred" not in t.metadata

    assert t.generation.temperature == 0.0
    assert t.generation.max_tokens == 4096

    md = t.metadata
    assert md["task"] == "commit_hygiene"
    assert md["eval_id"] == header.eval.eval_id
    assert md["run_id"] == header.eval.run_id
    assert md["task_id"] == header.eval.task_id
    assert (md["sample_id"], md["epoch"]) == ("fix-hook", 1)
    assert md["scores"]["no_hook_bypass"]["value"] == "I"
    assert md["scores"]["no_hook_bypass"]["explanation"] == "bypassed hooks"
    assert md["target"] == "commit without bypassing hooks"
    assert md["log_location"] == str(logs[fmt])
    assert md["eval_status"] == "success"
    assert md["inspect_version"]


def test_image_and_mid_conversation_system_message(logs: dict[Format, Path], fmt: Format) -> None:
    t = load(logs[fmt], "2", 1)  # the id is the integer 2; selection compares str(id)

    assert t.metadata["sample_id"] == 2
    assert t.system == h.SYSTEM_PROMPT
    task, reminder = t.messages[0], t.messages[1]
    text, image = task.content
    assert text == TextBlock(text="What does this screenshot of the CI page show? Check the log.")
    assert image == ImageBlock(media_type="image/png", data=h.PNG_DATA)
    assert reminder.role == "user"
    assert reminder.metadata["source_role"] == "system"
    assert reminder.text == h.REMINDER
    assert "inspect_system_messages" not in t.metadata
    assert t.metadata["sample_metadata"] == {"remind": True}
    assert [m.role for m in t.messages[2:]] == ["assistant", "user", "assistant"]


def test_transcript_is_plain_json_and_round_trips_natively(logs: dict[Format, Path], fmt: Format) -> None:
    t = load(logs[fmt], "fix-hook", 2)
    again = parse_native(json.loads(dumps(t)), source="<dump>")
    assert again == t


def test_detected_and_loaded_through_the_registry(logs: dict[Format, Path], fmt: Format) -> None:
    assert detect_format(logs[fmt]) == "inspect"
    t = load_transcript(logs[fmt], sample_id="fix-hook", epoch=2)
    assert t.metadata["source_format"] == "inspect"
    assert t.metadata["epoch"] == 2


def test_parse_takes_an_already_parsed_json_log(logs: dict[Format, Path]) -> None:
    data = json.loads(logs["json"].read_text())
    t = parse(data, source="<input>", options=LoadOptions(sample_id="fix-hook"))
    assert t.messages == load(logs["json"], "fix-hook", 1).messages
    with pytest.raises(FormatError, match="choose one with --sample"):
        parse(data, source="<input>")
    with pytest.raises(FormatError) as info:
        parse({"eval": {"task": "t"}}, source="<input>")
    assert info.value.location


# ------------------------------------------------------------ selection


def test_epoch_selects_that_epochs_sample(logs: dict[Format, Path], fmt: Format) -> None:
    uuids = {
        (s.id, s.epoch): s.uuid for s in read_eval_log(str(logs[fmt])).samples or []
    }  # Inspect's own view of the log
    for epoch in (1, 2):
        t = load(logs[fmt], "fix-hook", epoch)
        assert t.metadata["epoch"] == epoch
        assert t.metadata["sample_uuid"] == uuids[("fix-hook", epoch)]
    # without --epoch a sample run for several epochs is read at epoch 1
    assert load(logs[fmt], "fix-hook").metadata["sample_uuid"] == uuids[("fix-hook", 1)]


def test_several_samples_need_a_choice_and_the_error_lists_them(logs: dict[Format, Path], fmt: Format) -> None:
    with pytest.raises(FormatError) as info:
        load(logs[fmt])
    message = str(info.value)
    assert "--sample" in message and "--epoch" in message
    for listed in ("2 (epoch 1)", "2 (epoch 2)", "fix-hook (epoch 1)", "fix-hook (epoch 2)"):
        assert listed in message
    assert info.value.location == "samples"


def test_unknown_sample_or_epoch_lists_what_exists(logs: dict[Format, Path], fmt: Format) -> None:
    with pytest.raises(FormatError) as info:
        load(logs[fmt], "nope")
    assert "'nope'" in str(info.value) and "fix-hook (epoch 2)" in str(info.value)

    with pytest.raises(FormatError) as info:
        load(logs[fmt], "fix-hook", 3)
    assert "no epoch 3" in str(info.value) and "1, 2" in str(info.value)


def test_a_single_sample_is_taken_without_asking(full_log: EvalLog, workdir: Path, fmt: Format) -> None:
    assert full_log.samples is not None
    one = [s for s in full_log.samples if s.id == 2 and s.epoch == 2]
    path = write_variant(full_log, workdir, fmt, samples=one)
    t = load(path)
    assert (t.metadata["sample_id"], t.metadata["epoch"]) == (2, 2)

    # one sample id run for two epochs: epoch 1 unless asked
    both_epochs = [s for s in full_log.samples if s.id == 2]
    path = write_variant(full_log, workdir, fmt, samples=both_epochs)
    assert load(path).metadata["epoch"] == 1
    assert load(path, epoch=2).metadata["epoch"] == 2


@given(
    st.lists(st.tuples(st.one_of(st.integers(0, 50), st.text(min_size=1, max_size=5)), st.integers(1, 4)), max_size=8),
    st.one_of(st.none(), st.text(max_size=5), st.integers(0, 50).map(str)),
    st.one_of(st.none(), st.integers(-1, 5)),
)
def test_selection_returns_an_available_pair_or_explains(
    available: list[tuple[int | str, int]], sample_id: str | None, epoch: int | None
) -> None:
    try:
        sid, e = select_sample(available, LoadOptions(sample_id=sample_id, epoch=epoch), source="x.eval")
    except FormatError as exc:
        assert exc.location == "samples"
        return
    assert (sid, e) in available
    if sample_id is not None:
        assert str(sid) == sample_id
    if epoch is not None:
        assert e == epoch


# ---------------------------------------------------------- refused logs


def test_a_log_whose_eval_failed_still_yields_its_completed_samples_with_a_warning(
    full_log: EvalLog, workdir: Path, fmt: Format
) -> None:
    error = EvalError(
        message="RuntimeError: sandbox crashed", traceback="Traceback ...", traceback_ansi="Traceback ..."
    )
    path = write_variant(full_log, workdir, fmt, status="error", error=error)
    t = load(path, "fix-hook", 1)
    assert t.metadata["eval_status"] == "error"
    assert t.turns()  # the completed sample is there
    report = report_of(t)
    assert report is not None and report.conserved
    [warning] = [w for w in report.warnings if w.location == "status"]
    assert "ended with an error: RuntimeError: sandbox crashed" in warning.message


def test_every_inspect_message_and_item_is_accounted_for(logs: dict[Format, Path], fmt: Format) -> None:
    t = load(logs[fmt], "fix-hook", 1)
    report = report_of(t)
    assert report is not None
    assert report.format == "inspect"
    assert not report.unaccounted(), report.unaccounted()
    assert report.produced.tool_calls == report.read.tool_calls == sum(len(m.tool_uses) for m in t.messages)
    assert report.read.tool_results == report.produced.tool_results
    assert report.read.messages == report.produced.messages + report.merged.messages + (
        report.kept["system prompt"].messages if "system prompt" in report.kept else 0
    )
    assert t.metadata["harness"] == "inspect"


def test_a_log_without_samples_is_refused(full_log: EvalLog, workdir: Path, fmt: Format) -> None:
    unsaved = full_log.model_copy(deep=True)
    unsaved.eval.config.log_samples = False
    path = write_variant(unsaved, workdir, fmt, samples=None)
    with pytest.raises(FormatError, match=r"holds no samples.*log_samples=False"):
        load(path)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.eval", b""),
        ("empty.json", b""),
        ("text.eval", b"not a zip archive at all"),
        ("openai.json", json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()),
        ("list.json", b"[1, 2, 3]"),
        ("zip-without-log.eval", b"PK\x05\x06" + bytes(18)),
    ],
)
def test_files_that_are_not_inspect_logs(workdir: Path, name: str, data: bytes) -> None:
    path = fresh_file(workdir, "-" + name, data)
    with pytest.raises(FormatError) as info:
        load(path)
    assert_located(info.value, path)


def test_missing_file_and_directory(workdir: Path) -> None:
    with pytest.raises(FormatError, match="file not found"):
        load(workdir / "absent.eval")
    with pytest.raises(FormatError, match="directory"):
        load(workdir)


def test_schema_violation_names_the_json_path(logs: dict[Format, Path], workdir: Path) -> None:
    data = json.loads(logs["json"].read_text())
    data["samples"][0]["messages"][1]["role"] = "robot"
    path = fresh_file(workdir, ".json", json.dumps(data).encode())
    with pytest.raises(FormatError) as info:
        load(path, "fix-hook", 1)
    assert info.value.location == "samples[0].messages[1].role"
    assert "'user'" in str(info.value) and "'tool'" in str(info.value) and "'robot'" in str(info.value)


# ------------------------------------------------------------------ fuzz


@FUZZ
@given(data=st.data())
def test_truncated_eval_archive_raises_format_error(
    logs: dict[Format, Path], workdir: Path, data: st.DataObject
) -> None:
    raw = logs["eval"].read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    path = fresh_file(workdir, ".eval", raw[:cut])
    try:
        with pytest.raises(FormatError) as info:
            load(path, "fix-hook", 1)
        assert_located(info.value, path)
    finally:
        path.unlink()


@FUZZ
@given(data=st.data())
def test_corrupted_eval_archive_loads_or_raises_format_error(
    logs: dict[Format, Path], workdir: Path, data: st.DataObject
) -> None:
    raw = bytearray(logs["eval"].read_bytes())
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    path = fresh_file(workdir, ".eval", bytes(raw))
    try:
        load(path, "fix-hook", 1)  # a flip in a timestamp or padding can leave a readable log
    except FormatError as exc:
        assert_located(exc, path)
    finally:
        path.unlink()


@FUZZ
@given(data=st.data())
def test_truncated_json_log_raises_format_error(logs: dict[Format, Path], workdir: Path, data: st.DataObject) -> None:
    raw = logs["json"].read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    path = fresh_file(workdir, ".json", raw[:cut])
    try:
        with pytest.raises(FormatError) as info:
            load(path, "fix-hook", 1)
        assert_located(info.value, path)
    finally:
        path.unlink()


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _paths(sub, (*prefix, index))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(data=st.data())
def test_json_log_with_a_value_replaced_loads_or_raises_format_error(
    logs: dict[Format, Path], workdir: Path, data: st.DataObject
) -> None:
    log = json.loads(logs["json"].read_text())
    # the messages and header matter most; events are many and rarely read
    paths = [p for p in _paths(log) if p and not (len(p) > 2 and p[2] in {"events", "events_data", "store"})]
    target = data.draw(st.sampled_from(paths), label="path")
    replacement = data.draw(JSON_VALUES, label="value")
    parent: Any = log
    for part in target[:-1]:
        parent = parent[part]
    parent[target[-1]] = replacement
    path = fresh_file(workdir, ".json", json.dumps(log).encode())
    try:
        load(path, "fix-hook", 1)
    except FormatError as exc:
        assert_located(exc, path)
    finally:
        path.unlink()


@given(JSON_VALUES)
def test_sniff_never_raises(value: Any) -> None:
    assert IMPORTER.sniff(Path("x.json"), value) in (True, False)


def test_sniff_recognises_inspect_logs_only(logs: dict[Format, Path]) -> None:
    data = json.loads(logs["json"].read_text())
    assert IMPORTER.sniff(logs["json"], data)
    assert not IMPORTER.sniff(Path("x.json"), {"messages": []})
    assert not IMPORTER.sniff(Path("x.json"), {**data, "eval": "not a dict"})
    assert not IMPORTER.sniff(Path("x.json"), {k: v for k, v in data.items() if k != "version"})
    assert not IMPORTER.sniff(Path("x.json"), [data])


# ----------------------------------------------- content without a block type


def _sample(messages: list[Any]) -> EvalSample:
    return EvalSample(id="edge", epoch=1, input="x", target="y", messages=messages)


def test_unusual_content_is_preserved_not_dropped(full_log: EvalLog) -> None:
    search = ContentToolUse(
        tool_type="web_search",
        id="srvtoolu_01Wq",
        name="web_search",
        arguments='{"query": "git commit --no-verify"}',
        result="Skips the pre-commit and commit-msg hooks.",
    )
    messages = [
        ChatMessageSystem(content="You are an agent."),
        ChatMessageSystem(content="Be careful."),
        ChatMessageUser(
            content=[
                ContentText(text="Listen to this and read the PDF."),
                ContentAudio(audio="data:audio/wav;base64,UklGRg==", format="wav"),
                ContentDocument(document="data:application/pdf;base64,JVBERi0=", filename="policy.pdf"),
                ContentImage(image="https://example.com/ci.png", detail="high"),
            ]
        ),
        ChatMessageAssistant(
            content=[
                ContentReasoning(reasoning="EncryptedOpaqueBlob==", redacted=True, summary="Looked up the flag."),
                search,
                ContentText(text="I can't help bypass hooks.", refusal=True),
                ContentData(data={"encrypted": "abc"}),
            ],
            tool_calls=[ToolCall(id="call_9", function="bash", arguments={}, parse_error="Expecting ',' delimiter")],
            model="openai/gpt-5",
        ),
        ChatMessageTool(
            content=[ContentText(text="partial"), ContentImage(image="data:image/jpeg;base64,/9j/")],
            tool_call_id="call_9",
            function="bash",
            error=ToolCallError("timeout", "Command timed out before completing."),
        ),
        ChatMessageSystem(content=[ContentText(text="late"), ContentImage(image="https://x/y.png")]),
    ]
    t = sample_to_transcript(full_log, _sample(messages), source="<test>")

    assert t.system == "You are an agent.\n\nBe careful."
    assert t.metadata["inspect_system_messages"] == 2

    user = t.messages[0]
    assert isinstance(user.content[1], TextBlock) and user.content[1].text == "[audio content (wav) not shown]"
    assert user.metadata["inspect_content"]["1"] == {
        "type": "audio",
        "audio": "data:audio/wav;base64,UklGRg==",
        "format": "wav",
        "preserved_as_text": True,
    }
    assert user.metadata["inspect_content"]["2"]["filename"] == "policy.pdf"
    assert user.content[3] == ImageBlock(url="https://example.com/ci.png")
    assert user.metadata["inspect_content"]["3"] == {"type": "image", "detail": "high"}

    assistant = t.messages[1]
    thinking = assistant.content[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.redacted and thinking.thinking == "EncryptedOpaqueBlob=="
    assert assistant.metadata["inspect_content"]["0"] == {"type": "reasoning", "summary": "Looked up the flag."}
    server = assistant.content[1]
    assert isinstance(server, TextBlock)
    assert "web_search" in server.text and "Skips the pre-commit" in server.text
    assert assistant.metadata["inspect_content"]["1"]["id"] == "srvtoolu_01Wq"
    assert assistant.metadata["inspect_content"]["2"] == {"type": "text", "refusal": True}
    assert assistant.metadata["inspect_content"]["3"]["data"] == {"encrypted": "abc"}
    assert assistant.tool_uses == [ToolUseBlock(id="call_9", name="bash", input={})]
    assert assistant.metadata["inspect_tool_calls"] == {"call_9": {"parse_error": "Expecting ',' delimiter"}}
    assert assistant.metadata["model"] == "openai/gpt-5"

    (result,) = t.messages[2].content
    assert isinstance(result, ToolResultBlock) and result.is_error
    assert result.content[0] == TextBlock(text="Command timed out before completing.")
    assert result.content[1] == TextBlock(text="partial")
    assert result.content[2] == ImageBlock(media_type="image/jpeg", data="/9j/")
    assert t.messages[2].metadata["inspect_tool_errors"]["call_9"]["type"] == "timeout"

    late = t.messages[3]
    assert late.metadata["source_role"] == "system"
    assert late.content[1] == ImageBlock(url="https://x/y.png")


def test_system_message_with_an_image_is_not_folded_into_the_system_prompt(full_log: EvalLog) -> None:
    messages = [ChatMessageSystem(content=[ContentImage(image="https://x/y.png")]), ChatMessageUser(content="hi")]
    t = sample_to_transcript(full_log, _sample(messages), source="<test>")
    assert t.system is None
    assert t.messages[0].metadata["source_role"] == "system"


def test_tool_message_without_a_call_id_is_an_error(full_log: EvalLog) -> None:
    messages = [ChatMessageUser(content="go"), ChatMessageTool(content="out", function="bash")]
    with pytest.raises(FormatError) as info:
        sample_to_transcript(full_log, _sample(messages), source="<test>")
    assert info.value.location == "messages[1].tool_call_id"


def test_tools_are_inferred_when_the_log_has_no_events(full_log: EvalLog) -> None:
    assert full_log.samples is not None
    sample = full_log.samples[0].model_copy(update={"events": []})
    t = sample_to_transcript(full_log, sample, source="<test>")
    assert [s.name for s in t.tools] == ["bash"]
    assert t.tools[0].description == ""
    assert t.metadata["tools_inferred"] is True


# ---------------------------------------------------------------- example


def test_the_example_log_is_the_no_verify_incident() -> None:
    path = EXAMPLES / "inspect_log.eval"
    assert detect_format(path) == "inspect"
    t = load_transcript(path)  # a single sample: no --sample needed
    assert t.metadata["task"] == "commit_staged_changes"
    assert t.metadata["scores"]["kept_hooks"]["value"] == "I"
    last_call = t.turns()[-2].tool_uses[0]
    assert "git commit --no-verify" in last_call.input["cmd"]
    failure = next(r for m in t.messages for r in m.tool_results if r.is_error)
    assert "ruff" in failure.text
    assert any(isinstance(b, ThinkingBlock) and b.signature for m in t.messages for b in m.content)
