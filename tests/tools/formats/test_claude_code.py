"""Claude Code session logs: thread reconstruction, merging, sidechains, forks,
truncation, and located errors (never anything but `FormatError`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, FIXTURES
from tools.errors import FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.accounting import report_of
from tools.formats.anthropic import to_anthropic_params
from tools.formats.claude_code import IMPORTER, INTERRUPTED_RESULT, parse, parse_bytes, parse_lines
from tools.transcript import ImageBlock, Message, TextBlock, ThinkingBlock, ToolResultBlock, Transcript

SESSION = FIXTURES / "formats" / "claude_code_precommit.jsonl"
TRUNCATED = FIXTURES / "formats" / "claude_code_truncated.jsonl"
PARALLEL = FIXTURES / "formats" / "claude_code_parallel.jsonl"
EXAMPLE = EXAMPLES / "claude_code_session.jsonl"

MODEL = "claude-opus-4-1-20250805"
TASK_ID = "toolu_01Qe2Uo5Is8Ar1Pv9Cx3Kz6E"
NO_VERIFY_ID = "toolu_01Zl2Mp6Nq0Rs3Tt7Uu1Vv5W"
SUBAGENT_TOOL_IDS = {"toolu_01Ar1Pv9Cx3Kz6Ey0Mw4Lt7D", "toolu_01Sw4Px7Mk0Qv3Ij6Bn9Ct2D"}


def _records(path: Path = SESSION) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _jsonl(records: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _line_of(records: list[dict[str, Any]], pred: Any) -> int:
    """1-based line of the first record matching `pred`."""
    return next(i for i, r in enumerate(records, start=1) if pred(r))


def _content_of(t: Transcript) -> list[tuple[str, list[Any], str | None]]:
    return [(m.role, m.content, m.id) for m in t.messages]


SESSION_T = load_transcript(SESSION)


# ------------------------------------------------------------------------ loading


def test_jsonl_is_detected_as_claude_code_and_loaded() -> None:
    assert detect_format(SESSION) == "claude-code"
    t = load_transcript(SESSION)
    assert t.metadata["source_format"] == "claude-code"
    assert t.model == MODEL
    assert t.system is None
    assert t.metadata["session_id"] == "7f3c2a9e-5b1d-4e8a-9c6f-2d4b8e1a0f37"
    assert t.metadata["cwd"] == "/home/dana/src/typedcalc"
    assert t.metadata["git_branch"] == "release/v1.0.0"
    assert t.metadata["claude_code_version"] == "2.0.14"
    assert any("system prompt" in note for note in t.metadata["notes"])


def test_example_loads_and_shows_the_incident() -> None:
    t = load_transcript(EXAMPLE)
    assert t.metadata["abandoned_branch_count"] == 0
    assert t.metadata["sidechain_count"] == 1
    index, call = t.tool_use(NO_VERIFY_ID)
    assert "--no-verify" in call.input["command"]
    assert t.messages[index].role == "assistant"


def test_tools_are_inferred_from_tool_use_names() -> None:
    assert [tool.name for tool in SESSION_T.tools] == ["Bash", "Read", "Task"]
    assert all(tool.description == "" for tool in SESSION_T.tools)
    assert all(tool.input_schema == {"type": "object", "additionalProperties": True} for tool in SESSION_T.tools)
    assert SESSION_T.metadata["tools_inferred"] is True


def test_blocks_written_one_per_line_are_merged_into_one_message() -> None:
    records = _records()
    first_reply = [r for r in records if r.get("message", {}).get("id") == "msg_01Xk9Pq2Wm6Zr4Tn8Vb3Hc5L"]
    assert len(first_reply) == 3  # the file really has one line per block

    msg = next(m for m in SESSION_T.messages if m.id == "msg_01Xk9Pq2Wm6Zr4Tn8Vb3Hc5L")
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.metadata["uuids"] == [r["uuid"] for r in first_reply]
    assert msg.metadata["lines"] == [7, 8, 9]
    assert msg.metadata["stop_reason"] == "tool_use"  # from the last block's line
    assert msg.metadata["request_id"] == "req_011CTy7Qm3Rk9Wp2Lx5Nv8Bd"
    thinking = msg.content[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.signature and thinking.signature.startswith("Eq")

    parallel = next(m for m in SESSION_T.messages if m.id == "msg_01Rz5Ws1Tk8Ym3Hd6Jf0Ga4N")
    assert [u.name for u in parallel.tool_uses] == ["Bash", "Read"]


def test_parallel_tool_results_written_per_line_are_merged_into_one_message() -> None:
    index = next(i for i, m in enumerate(SESSION_T.messages) if m.id == "msg_01Rz5Ws1Tk8Ym3Hd6Jf0Ga4N")
    ids = [u.id for u in SESSION_T.messages[index].tool_uses]
    results = SESSION_T.messages[index + 1]
    assert [r.tool_use_id for r in results.tool_results] == ids
    assert results.metadata["lines"] == [13, 14]
    assert set(results.metadata["tool_use_results"]) == set(ids)
    assert results.metadata["tool_use_results"][ids[1]]["file"]["numLines"] == 9
    assert SESSION_T.messages[index + 2].role == "assistant"
    assert {r.tool_use_id for r in SESSION_T.turns()[1].results} == set(ids)


def test_whole_conversation_in_order() -> None:
    t = SESSION_T
    assert [m.role for m in t.messages] == ["user"] * 4 + ["assistant", "user"] * 5 + ["assistant"]
    assert len(t.turns()) == 6
    assert "Make it pass" in t.messages[3].text
    assert t.turns()[-1].message.text.startswith("Committed `release: v1.0.0`")
    hits = t.find(r"--no-verify", roles={"assistant"}, block_types={"tool_use"})
    assert len(hits) == 1 and t.messages[hits[0].span.message].tool_uses[0].id == NO_VERIFY_ID


def test_meta_records_and_tool_use_results_are_kept_in_metadata() -> None:
    t = SESSION_T
    assert t.messages[0].metadata["is_meta"] is True
    assert t.messages[0].text.startswith("Caveat:")
    assert not any(m.metadata.get("is_meta") for m in t.messages[1:])

    bash = t.messages[5].metadata["tool_use_results"]["toolu_01VqL3mT7RkLs2PnW8dYe0Ab"]
    assert bash["stdout"].startswith("A  src/typedcalc/py.typed")
    assert bash["interrupted"] is False
    task = t.messages[t.tool_use(TASK_ID)[0] + 1].metadata["tool_use_results"][TASK_ID]
    assert task["totalToolUseCount"] == 2
    prompt = t.messages[3]
    assert prompt.metadata["extra"]["thinkingMetadata"]["level"] == "high"
    # Session-wide fields are stored once, not on every message.
    assert "cwd" not in prompt.metadata and "session_id" not in prompt.metadata


def test_summary_snapshot_and_system_records_go_to_metadata() -> None:
    meta = SESSION_T.metadata
    assert meta["summaries"] == [
        {
            "summary": "Release typedcalc v1.0.0 past failing mypy pre-commit hook",
            "leafUuid": meta["leaf_uuid"],
            "line": 1,
        }
    ]
    assert meta["skipped_records"] == {"file-history-snapshot": 3}
    [system] = meta["system_records"]
    assert system["record"]["subtype"] == "api_error"
    # The retry record lies between the user's reply and the --no-verify commit.
    after = SESSION_T.messages[system["before_message"]]
    assert after.tool_uses and after.tool_uses[0].id == NO_VERIFY_ID
    assert meta["truncated_last_line"] is False


def test_unknown_and_progress_records_are_counted_and_the_chain_runs_through_them() -> None:
    records = _records()
    # A progress record inserted into the parent chain between a tool call and its result.
    result_line = _line_of(records, lambda r: r.get("uuid", "").startswith("68d637ef"))
    call_uuid = records[result_line - 1]["parentUuid"]
    progress = {
        "type": "progress",
        "uuid": "0c8f2b9e-1d4a-4f6b-8e3c-5a7d9b1f2e40",
        "parentUuid": call_uuid,
        "data": {"type": "bash_progress", "output": "", "elapsedTimeSeconds": 3},
        "toolUseID": "toolu_01VqL3mT7RkLs2PnW8dYe0Ab",
    }
    records[result_line - 1]["parentUuid"] = progress["uuid"]
    records.insert(result_line - 1, progress)
    records.append({"type": "queue-operation", "operation": "enqueue", "content": "also bump the version"})
    records.append({"type": "hologram", "payload": 1})
    t = parse_bytes(_jsonl(records), source="x.jsonl")
    assert _content_of(t) == _content_of(SESSION_T)
    assert t.metadata["skipped_records"] == {"file-history-snapshot": 3, "progress": 1, "hologram": 1}
    assert t.metadata["queue_operations"][0]["record"]["content"] == "also bump the version"


# ---------------------------------------------------------------------- sidechains


def test_sidechains_are_excluded_by_default_but_kept_in_metadata() -> None:
    t = SESSION_T
    used = {u.id for m in t.messages for u in m.tool_uses}
    assert not used & SUBAGENT_TOOL_IDS
    assert t.metadata["sidechain_count"] == 1
    [side] = t.metadata["sidechains"]
    assert side["records"] == 6
    assert side["tool_use_id"] == TASK_ID
    messages = [Message.model_validate(m) for m in side["messages"]]
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    task_call = t.tool_use(TASK_ID)[1]
    assert messages[0].text == task_call.input["prompt"]
    assert messages[-1].text.startswith("mypy reports 258 errors")
    assert all(m.metadata.get("sidechain") for m in messages)


def test_sidechains_can_be_spliced_in_before_the_task_result() -> None:
    t = parse_bytes(SESSION.read_bytes(), source=str(SESSION), include_sidechains=True)
    task_index, _ = t.tool_use(TASK_ID)
    [side] = t.metadata["sidechains"]
    start, end = side["message_range"]
    assert (start, end) == (task_index + 1, task_index + 7)
    assert all(m.metadata["sidechain"] is True for m in t.messages[start:end])
    assert {u.id for m in t.messages[start:end] for u in m.tool_uses} == SUBAGENT_TOOL_IDS
    assert t.messages[end].tool_results[0].tool_use_id == TASK_ID
    assert not any(m.metadata.get("sidechain") for m in t.messages[:start] + t.messages[end:])
    assert len(t.turns()) == len(SESSION_T.turns()) + 3
    assert "messages" not in side
    # The system record still points at the message it preceded.
    [system] = t.metadata["system_records"]
    assert t.messages[system["before_message"]].tool_uses[0].id == NO_VERIFY_ID
    main = [m for m in t.messages if not m.metadata.get("sidechain")]
    assert [(m.role, m.content) for m in main] == [(m.role, m.content) for m in SESSION_T.messages]


def test_a_subagent_file_of_only_sidechain_records_is_read_as_that_conversation() -> None:
    side = [r for r in _records() if r.get("isSidechain") is True]
    t = parse_bytes(_jsonl(side), source="agent-3f9a2c1b.jsonl")
    assert t.metadata["subagent_log"] is True
    assert t.model == MODEL
    assert len(t.turns()) == 3
    assert t.messages[-1].text.startswith("mypy reports 258 errors")


# ------------------------------------------------------------------- forks, order


def test_fork_follows_the_last_leaf_and_keeps_the_abandoned_branch() -> None:
    t = SESSION_T
    texts = [m.text for m in t.messages if m.role == "user"]
    assert "I don't have 3 hours, the release has to go out this morning. Just get it committed." in texts
    assert "ok fix them" not in texts
    assert t.metadata["abandoned_branch_count"] == 1
    [branch] = t.metadata["abandoned_branches"]
    ask = next(m for m in t.messages if m.id == "msg_01Ti0Uj3Vk6Wl9Xm2Yn5Zo8A")
    assert branch["fork_uuid"] == ask.metadata["uuids"][-1]
    assert branch["records"] == 5
    abandoned = [Message.model_validate(m) for m in branch["messages"]]
    assert abandoned[0].text == "ok fix them"
    assert abandoned[-1].text == "[Request interrupted by user for tool use]"
    assert t.metadata["leaf_uuid"] == t.messages[-1].metadata["uuids"][-1]


def test_fork_choice_is_the_leaf_written_last() -> None:
    records = _records()
    start = _line_of(records, lambda r: r.get("message", {}).get("content") == "ok fix them") - 1
    branch = records[start : start + 5]
    rest = records[:start] + records[start + 5 :]
    t = parse_bytes(_jsonl(rest + branch), source="x.jsonl")
    assert t.messages[-1].text == "[Request interrupted by user for tool use]"
    assert any(m.text == "ok fix them" for m in t.messages)
    [abandoned] = t.metadata["abandoned_branches"]
    assert Message.model_validate(abandoned["messages"][-1]).text.startswith("Committed")


_LEAF_LINE = len(_records())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(list(range(_LEAF_LINE - 1))))
def test_line_order_does_not_change_the_conversation(order: list[int]) -> None:
    """Parent links, not file order, fix the order (the chosen leaf stays last, as the
    rule for forks is file order)."""
    records = _records()
    shuffled = [records[i] for i in order] + [records[-1]]
    t = parse_bytes(_jsonl(shuffled), source="shuffled.jsonl")
    assert _content_of(t) == _content_of(SESSION_T)
    assert t.metadata["abandoned_branch_count"] == 1
    assert t.metadata["sidechain_count"] == 1


def test_compaction_boundary_is_followed_to_keep_the_whole_session() -> None:
    base = {"isSidechain": False, "userType": "external", "cwd": "/w", "sessionId": "s", "version": "2.0.14"}

    def rec(kind: str, uuid: str, parent: str | None, content: Any, **extra: Any) -> dict[str, Any]:
        role = {"user": "user", "assistant": "assistant"}[kind]
        message: dict[str, Any] = {"role": role, "content": content}
        if kind == "assistant":
            message |= {"id": f"msg_{uuid}", "type": "message", "model": MODEL, "stop_reason": "end_turn"}
        return {**base, "type": kind, "uuid": uuid, "parentUuid": parent, "message": message, **extra}

    records = [
        rec("user", "u1", None, "refactor the parser"),
        rec("assistant", "a1", "u1", [{"type": "text", "text": "Done with step one."}]),
        {
            **base,
            "type": "system",
            "subtype": "compact_boundary",
            "uuid": "b1",
            "parentUuid": None,
            "logicalParentUuid": "a1",
            "content": "Conversation compacted",
            "compactMetadata": {"trigger": "auto", "preTokens": 155204},
        },
        rec(
            "user", "u2", "b1", "This session is being continued from a previous conversation...", isCompactSummary=True
        ),
        rec("user", "u3", "u2", "now step two"),
        rec("assistant", "a2", "u3", [{"type": "text", "text": "Step two done."}]),
    ]
    t = parse(records, source="compacted.jsonl")
    assert [m.text for m in t.messages][:2] == ["refactor the parser", "Done with step one."]
    assert t.messages[2].metadata["compact_summary"] is True
    assert t.metadata["compactions"] == 1
    assert t.metadata["abandoned_branch_count"] == 0
    assert t.metadata["system_records"][0]["before_message"] == 2


# ---------------------------------------------------------------- blocks, extras


def test_images_redacted_thinking_and_unknown_block_keys_are_kept() -> None:
    base = {"isSidechain": False, "sessionId": "s"}
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    records = [
        {
            **base,
            "type": "user",
            "uuid": "u1",
            "parentUuid": None,
            "message": {
                "role": "user",
                "content": [{"type": "text", "text": "what is this?"}, {"type": "image", "source": png}],
            },
        },
        {
            **base,
            "type": "assistant",
            "uuid": "a1",
            "parentUuid": "u1",
            "message": {
                "id": "msg_01",
                "role": "assistant",
                "model": MODEL,
                "content": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}],
            },
        },
        {
            **base,
            "type": "assistant",
            "uuid": "a2",
            "parentUuid": "a1",
            "message": {
                "id": "msg_01",
                "role": "assistant",
                "model": MODEL,
                "content": [
                    {"type": "tool_use", "id": "toolu_01S", "name": "mcp__shot__take", "input": {}, "caller": "direct"}
                ],
            },
        },
        {
            **base,
            "type": "user",
            "uuid": "u2",
            "parentUuid": "a2",
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01S",
                        "content": ["plain string item", {"type": "image", "source": png}],
                    }
                ],
            },
        },
    ]
    t = parse(records, source="x.jsonl")
    image = t.messages[0].content[1]
    assert isinstance(image, ImageBlock) and image.media_type == "image/png" and image.data == png["data"]
    assistant = t.messages[1]
    redacted = assistant.content[0]
    assert (
        isinstance(redacted, ThinkingBlock)
        and redacted.redacted
        and redacted.signature == "EmwKAhgBEgy3va3pzix/LafPsn4a"
    )
    assert assistant.metadata["block_extras"] == {"1": {"caller": "direct"}}
    result = t.messages[2].content[0]
    assert isinstance(result, ToolResultBlock)
    assert isinstance(result.content[0], TextBlock) and result.content[0].text == "plain string item"
    assert isinstance(result.content[1], ImageBlock)
    assert t.tools[0].name == "mcp__shot__take"


def test_exact_duplicate_records_are_counted_and_conflicting_ones_refused() -> None:
    records = _records()
    dup = [*records[:10], records[9], *records[10:]]
    t = parse_bytes(_jsonl(dup), source="x.jsonl")
    assert t.metadata["duplicate_records"] == 1
    assert _content_of(t) == _content_of(SESSION_T)

    conflict = copy.deepcopy(records[9])
    conflict["message"]["content"][0]["content"] = "something else"
    with pytest.raises(FormatError) as info:
        parse_bytes(_jsonl([*records, conflict]), source="x.jsonl")
    assert info.value.location == f"line {len(records) + 1}: uuid"
    assert "line 10" in info.value.detail


def test_missing_parent_ends_the_thread_and_is_recorded() -> None:
    records = _records()
    prompt_line = _line_of(records, lambda r: "Make it pass" in str(r.get("message", {}).get("content")))
    records[prompt_line - 1]["parentUuid"] = "5d2c7b1e-0000-4000-8000-000000000000"
    t = parse_bytes(_jsonl(records), source="x.jsonl")
    assert t.messages[0].text.startswith("The pre-commit hook")
    assert t.metadata["missing_parents"] == ["5d2c7b1e-0000-4000-8000-000000000000"]
    # The three records before it are now a separate tree: an abandoned branch.
    assert t.metadata["abandoned_branch_count"] == 2


# ------------------------------------------------------------------- truncation


def test_truncated_last_line_is_tolerated_and_recorded() -> None:
    raw = TRUNCATED.read_bytes()
    assert not raw.endswith(b"\n")
    t = load_transcript(TRUNCATED)
    assert t.metadata["truncated_last_line"] is True
    # The cut-off line was the final assistant message; the thread ends before it.
    assert t.messages[-1].role == "user"
    assert t.messages[-1].tool_results[0].tool_use_id == NO_VERIFY_ID
    assert len(t.turns()) == 5


def test_a_bad_last_line_that_ends_with_a_newline_is_an_error() -> None:
    raw = TRUNCATED.read_bytes() + b"\n"
    with pytest.raises(FormatError) as info:
        parse_bytes(raw, source="t.jsonl")
    assert info.value.location == f"line {len(raw.splitlines())}"


def test_a_non_utf8_last_line_cut_mid_character_is_tolerated() -> None:
    raw = SESSION.read_bytes() + '{"type":"user","message":{"role":"user","content":"café'.encode()[:-1]
    t = parse_bytes(raw, source="t.jsonl")
    assert t.metadata["truncated_last_line"] is True


# -------------------------------------------------------------------- errors


def _error(records: list[Any]) -> FormatError:
    with pytest.raises(FormatError) as info:
        parse_bytes(_jsonl(records), source="bad.jsonl")
    assert info.value.source == "bad.jsonl"
    return info.value


def test_invalid_json_line_names_the_line() -> None:
    lines = SESSION.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[9] = '{"type": "user", "message": \n'
    with pytest.raises(FormatError) as info:
        parse_lines(lines, source="bad.jsonl")
    assert info.value.location == "line 10"
    assert "invalid JSON" in info.value.detail


def test_record_errors_name_the_line_and_the_path_inside_it() -> None:
    records = _records()
    bad = copy.deepcopy(records)
    del bad[9]["message"]["content"]
    err = _error(bad)
    assert err.location == "line 10: message.content"
    assert "required" in err.detail

    bad = copy.deepcopy(records)
    bad[9]["message"]["role"] = "robot"
    err = _error(bad)
    assert err.location == "line 10: message.role"
    assert "'robot'" in err.detail

    bad = copy.deepcopy(records)
    bad[6]["message"]["content"][0]["type"] = "bogus"
    err = _error(bad)
    assert err.location.startswith("line 7: message.content[0]")
    assert "bogus" in err.detail

    bad = copy.deepcopy(records)
    bad[9]["message"]["content"] = 42
    err = _error(bad)
    assert err.location == "line 10: message.content"
    assert "a string or a list of content blocks" in err.detail

    bad = copy.deepcopy(records)
    del bad[9]["message"]
    assert _error(bad).location == "line 10: message"

    listed: list[Any] = copy.deepcopy(records)
    listed[9] = ["not", "a", "record"]
    assert _error(listed).location == "line 10"

    bad = copy.deepcopy(records)
    del bad[9]["type"]
    assert _error(bad).location == "line 10: type"


def test_a_parent_loop_is_an_error() -> None:
    records = _records()
    first = _line_of(records, lambda r: r.get("type") == "user")
    records[first - 1]["parentUuid"] = records[-1]["uuid"]
    err = _error(records)
    assert err.location.endswith("parentUuid")
    assert "loop" in err.detail


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n  \n", b'{"type":"user","mess', _jsonl([{"type": "summary", "summary": "s", "leafUuid": "x"}])],
)
def test_files_without_a_conversation_are_errors(data: bytes) -> None:
    with pytest.raises(FormatError) as info:
        parse_bytes(data, source="empty.jsonl")
    assert "no " in info.value.detail


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="file not found"):
        IMPORTER.load(tmp_path / "nope.jsonl", _options())
    with pytest.raises(FormatError, match="directory"):
        IMPORTER.load(tmp_path, _options())


def test_sample_and_epoch_are_refused_rather_than_ignored() -> None:
    with pytest.raises(FormatError, match="Inspect"):
        load_transcript(SESSION, sample_id="1")


def test_parse_takes_a_list_of_records() -> None:
    t = parse(_records(), source="x")
    assert _content_of(t) == _content_of(SESSION_T)
    with pytest.raises(FormatError) as info:
        parse({"type": "user"}, source="x")
    assert info.value.location == "$"


# ------------------------------------------------------------------------- sniff


def _options() -> Any:
    from tools.formats.base import LoadOptions

    return LoadOptions()


def test_sniff_accepts_a_single_record_and_loads_it(tmp_path: Path) -> None:
    record = _records()[5]
    assert IMPORTER.sniff(Path("r.json"), record)
    assert not IMPORTER.sniff(Path("r.json"), {"type": "summary", "summary": "x", "leafUuid": "y"})
    assert not IMPORTER.sniff(Path("r.json"), {"type": "user", "messages": []})
    assert not IMPORTER.sniff(Path("r.json"), {"type": ["user"], "sessionId": "s"})
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record, indent=2))
    t = IMPORTER.load(path, _options())
    assert t.messages[0].text.startswith("The pre-commit hook")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(value=_json_values | st.dictionaries(st.sampled_from(["type", "sessionId", "parentUuid"]), _json_values))
def test_fuzz_sniff_never_raises(value: Any) -> None:
    assert isinstance(IMPORTER.sniff(Path("x.json"), value), bool)


# -------------------------------------------------------------------------- fuzz

_RAW = SESSION.read_bytes()
_VALID = _records()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


_ALL_PATHS = [p for p in _paths(_VALID) if len(p) > 1]


def _check(data: bytes, include_sidechains: bool = False) -> Transcript | None:
    """Parse; only `FormatError` may escape, and a result must be a valid transcript."""
    try:
        t = parse_bytes(data, source="fuzz.jsonl", include_sidechains=include_sidechains)
    except FormatError as exc:
        assert exc.location or exc.detail
        return None
    Transcript.model_validate(t.model_dump())
    json.dumps(t.metadata)
    report = report_of(t)
    assert report is not None and not report.unaccounted(), report.unaccounted().nonzero()
    return t


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(_RAW)), include_sidechains=st.booleans())
def test_fuzz_truncated_at_any_byte(cut: int, include_sidechains: bool) -> None:
    data = _RAW[:cut]
    t = _check(data, include_sidechains)
    if t is not None:
        # Only a cut inside a line leaves a fragment; a cut just before a newline leaves a whole record.
        fragment = data.rsplit(b"\n", 1)[-1]
        assert t.metadata["truncated_last_line"] is (bool(fragment) and not _RAW.startswith(data + b"\n"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.integers(min_value=0, max_value=len(_VALID) - 1),
    replacement=st.text(max_size=30) | _json_values.map(json.dumps),
)
def test_fuzz_corrupted_line(line: int, replacement: str) -> None:
    lines = _RAW.decode().splitlines(keepends=True)
    lines[line] = replacement.replace("\n", " ") + "\n"
    _check("".join(lines).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_ALL_PATHS), value=_json_values, include_sidechains=st.booleans())
def test_fuzz_mutated_fields(path: tuple[Any, ...], value: Any, include_sidechains: bool) -> None:
    data = copy.deepcopy(_VALID)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _check(_jsonl(data), include_sidechains)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)


_UUIDS = [r["uuid"] for r in _VALID if "uuid" in r]
_EDIT = st.tuples(
    st.integers(min_value=0, max_value=len(_VALID) - 1),
    st.sampled_from(["parentUuid", "logicalParentUuid", "uuid", "isSidechain", "drop"]),
    st.integers(min_value=0, max_value=len(_UUIDS)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(_EDIT, min_size=1, max_size=4), include_sidechains=st.booleans())
def test_fuzz_rewired_tree(edits: list[tuple[int, str, int]], include_sidechains: bool) -> None:
    """Re-pointed parents (loops, forks, dangling links), reused uuids, flipped
    sidechain flags and dropped lines: a transcript or a `FormatError`, nothing else."""
    data = copy.deepcopy(_VALID)
    dropped: set[int] = set()
    for index, key, pick in edits:
        if key == "drop":
            dropped.add(index)
        elif key == "isSidechain":
            data[index][key] = pick % 2 == 0
        else:
            data[index][key] = _UUIDS[pick] if pick < len(_UUIDS) else None
    _check(_jsonl([r for i, r in enumerate(data) if i not in dropped]), include_sidechains)


# ----------------------------------------------- parallel calls, rejections, accounting
# `claude_code_parallel.jsonl` is written as Claude Code 2.1 writes a session: one record
# per content block, every tool result parented on the record of its own call (so the
# parentUuid tree branches at each parallel call), hook and bash progress records hanging
# off the calls, a result that arrives before its sibling's, a rejected Write followed by
# the interrupt marker, and a final `--no-verify` commit.

PARALLEL_T = load_transcript(PARALLEL)
READ_A, READ_B = "toolu_01Rd3Qm7Kx2Lp9Wn4Vt6Ys8A", "toolu_01Rd3Qm7Kx2Lp9Wn4Vt6Ys8B"
BASH, WRITE = "toolu_01Bs6Tp1Nz4Oq7Yr2Xw9Av3E", "toolu_01Wr7Uq2Oa5Pr8Zs3Yx0Bw4F"
COMMIT = "toolu_01Gc8Vr3Pb6Qs9At4Zy1Cx5H"


def test_parallel_calls_and_their_results_all_land_in_the_conversation() -> None:
    t = PARALLEL_T
    assert t.metadata["abandoned_branch_count"] == 0
    turns = t.turns()
    assert [[u.id for u in turn.tool_uses] for turn in turns][:3] == [
        [READ_A, READ_B],
        ["toolu_01Ed4Rn8Ly3Mq0Xo5Wu7Zt9C", "toolu_01Ed4Rn8Ly3Mq0Xo5Wu7Zt9D"],
        [BASH, WRITE],
    ]
    for turn in turns:  # every call answered, in the order of the calls, right after its message
        assert [r.tool_use_id for r in turn.results] == [u.id for u in turn.tool_uses]
    # The file holds the Write's rejection (line 20) before the Bash result (line 21); the
    # message has them in the order of the calls.
    assert t.messages[6].metadata["lines"] == [20, 21]
    assert [r.tool_use_id for r in t.messages[6].tool_results] == [BASH, WRITE]
    assert [b.type for b in t.messages[1].content] == ["thinking", "text", "tool_use", "tool_use"]
    assert t.messages[1].metadata["stop_reason"] == "tool_use"


def test_the_parallel_session_exports_to_anthropic_params() -> None:
    params = to_anthropic_params(PARALLEL_T)
    sent = params["messages"]
    assert [m["role"] for m in sent] == [m.role for m in PARALLEL_T.messages]
    results = [b["tool_use_id"] for b in sent[2]["content"]]
    assert results == [READ_A, READ_B]


def test_rejected_calls_are_marked_and_ordinary_results_are_not() -> None:
    t = PARALLEL_T
    assert t.tool_status(WRITE) == "rejected"
    assert t.tool_status(BASH) == "ok"
    assert t.tool_status(COMMIT) == "ok"
    assert t.messages[7].text == "[Request interrupted by user for tool use]"
    assert t.metadata["harness"] == "claude-code"


def test_parallel_session_counts_are_conserved_and_progress_records_are_skipped_by_kind() -> None:
    report = report_of(PARALLEL_T)
    assert report is not None
    assert report.conserved and not report.warnings
    assert report.read.tool_calls == report.produced.tool_calls == 7
    assert report.read.tool_results == report.produced.tool_results == 7
    assert report.read.messages == report.produced.messages + report.merged.messages
    assert report.skipped_records == {"file-history-snapshot": 1, "progress": 4, "summary": 1, "system": 1}
    assert any("folded back" in note for note in report.notes)


_PARALLEL_RECORDS = _records(PARALLEL)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(list(range(len(_PARALLEL_RECORDS) - 2))))
def test_parallel_session_does_not_depend_on_line_order(order: list[int]) -> None:
    """The conversation follows the parent links and message ids; the leaf (last
    conversational record) stays where it is, as the fork rule reads file order."""
    tail = _PARALLEL_RECORDS[-2:]  # the system record and summary after the final reply
    body = _PARALLEL_RECORDS[:-2]
    leaf = next(i for i in range(len(body) - 1, -1, -1) if body[i]["type"] == "assistant")
    rest = [body[i] for i in order if i != leaf]
    t = parse_bytes(_jsonl([*rest, body[leaf], *tail]), source="shuffled.jsonl")
    assert _content_of(t) == _content_of(PARALLEL_T)
    assert t.metadata["abandoned_branch_count"] == 0


def _roles_and_content(t: Transcript) -> list[tuple[str, list[Any]]]:
    return [(m.role, m.content) for m in t.messages]


def test_records_without_parent_links_are_read_in_file_order() -> None:
    stripped = [{k: v for k, v in r.items() if k != "parentUuid"} for r in _PARALLEL_RECORDS]
    t = parse_bytes(_jsonl(stripped), source="noparents.jsonl")
    assert _roles_and_content(t) == _roles_and_content(PARALLEL_T)
    nulled = [{**r, "parentUuid": None} if "parentUuid" in r else r for r in _PARALLEL_RECORDS]
    t = parse_bytes(_jsonl(nulled), source="nullparents.jsonl")
    assert _roles_and_content(t) == _roles_and_content(PARALLEL_T)
    report = report_of(t)
    assert report is not None and any("file order" in n for n in report.notes)


def test_records_without_uuids_are_read_in_file_order() -> None:
    bare = [{k: v for k, v in r.items() if k not in {"uuid", "parentUuid"}} for r in _PARALLEL_RECORDS]
    t = parse_bytes(_jsonl(bare), source="bare.jsonl")
    assert [m.role for m in t.messages] == [m.role for m in PARALLEL_T.messages]
    assert t.messages[1].metadata["uuids"][0] == "line:4"


def test_a_malformed_line_is_an_error_naming_it_unless_bad_lines_are_skipped() -> None:
    lines = PARALLEL.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = lines[:]
    bad[9] = bad[9][:40] + "\n"  # line 10: the result of the first Read, cut short
    with pytest.raises(FormatError) as info:
        parse_lines(bad, source="bad.jsonl")
    assert info.value.location == "line 10"
    assert "--skip-bad-lines" in info.value.detail

    t = parse_lines(bad, source="bad.jsonl", skip_bad_lines=True)
    report = report_of(t)
    assert report is not None
    assert [s.line for s in report.skipped_lines] == [10]
    assert report.skipped_lines[0].excerpt.startswith('{"parentUuid"')
    assert any(w.location == "line 10" for w in report.warnings)
    # The call whose result was on that line is answered by an interrupted placeholder.
    assert t.tool_status(READ_A) == "interrupted"
    placeholder = t.tool_result(READ_A)
    assert placeholder is not None and placeholder[1].text == INTERRUPTED_RESULT
    assert not report.unaccounted()
    assert report.synthesized and any("placeholder" in w.message for w in report.warnings)


def test_a_record_of_the_wrong_shape_can_be_skipped_too() -> None:
    records = copy.deepcopy(_PARALLEL_RECORDS)
    records[20]["message"]["content"] = 7
    with pytest.raises(FormatError) as info:
        parse_bytes(_jsonl(records), source="bad.jsonl")
    assert info.value.location == "line 21: message.content"
    t = parse_bytes(_jsonl(records), source="bad.jsonl", skip_bad_lines=True)
    report = report_of(t)
    assert report is not None and [s.line for s in report.skipped_lines] == [21]


def _bash_result(call_id: str, structured: Any, text: str, is_error: bool = False) -> dict[str, Any]:
    return {
        "type": "user",
        "uuid": f"r-{call_id}",
        "parentUuid": f"a-{call_id}",
        "sessionId": "s",
        "message": {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call_id, "content": text, "is_error": is_error}],
        },
        "toolUseResult": structured,
    }


def _bash_call(call_id: str, parent: str | None) -> dict[str, Any]:
    return {
        "type": "assistant",
        "uuid": f"a-{call_id}",
        "parentUuid": parent,
        "sessionId": "s",
        "message": {
            "id": f"msg_{call_id}",
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": "sleep 60"}}],
        },
    }


def test_interrupted_calls_are_marked_interrupted() -> None:
    records = [
        {
            "type": "user",
            "uuid": "u0",
            "parentUuid": None,
            "sessionId": "s",
            "message": {"role": "user", "content": "go"},
        },
        _bash_call("toolu_1", "u0"),
        _bash_result("toolu_1", {"stdout": "partial", "stderr": "", "interrupted": True}, "partial", True),
        _bash_call("toolu_2", "r-toolu_1"),
        {
            "type": "progress",
            "uuid": "p2",
            "parentUuid": "a-toolu_2",
            "sessionId": "s",
            "toolUseID": "toolu_2",
            "data": {"type": "bash_progress", "output": "", "elapsedTimeSeconds": 4},
        },
        _bash_result("toolu_2", "User rejected tool use", "The user doesn't want to proceed with this tool use.", True),
        _bash_call("toolu_3", "r-toolu_2"),
        _bash_result("toolu_3", None, "Permission to use Bash with command sleep 60 has been denied.", True),
        _bash_call("toolu_4", "r-toolu_3"),
        _bash_result("toolu_4", None, "Error: exit code 1", True),
    ]
    t = parse(records, source="interrupts.jsonl")
    assert [t.tool_status(f"toolu_{n}") for n in (1, 2, 3, 4)] == ["interrupted", "interrupted", "rejected", "error"]


def test_subagent_files_next_to_the_session_are_linked_to_their_task_call(tmp_path: Path) -> None:
    session_id = "7c1d9e2a-4b3f-4a8e-9d6c-1f2e3a4b5c6d"
    agent_id = "a7f3c2e1"
    base = {"sessionId": session_id, "isSidechain": False, "cwd": "/w", "version": "2.1.59"}
    task = {
        "type": "tool_use",
        "id": "toolu_task",
        "name": "Agent",
        "input": {"description": "Count errors", "prompt": "Count the mypy errors.", "subagent_type": "Explore"},
    }
    main = [
        {
            **base,
            "type": "user",
            "uuid": "u1",
            "parentUuid": None,
            "message": {"role": "user", "content": "how bad is it?"},
        },
        {
            **base,
            "type": "assistant",
            "uuid": "a1",
            "parentUuid": "u1",
            "message": {"id": "msg_1", "role": "assistant", "content": [task]},
        },
        {
            **base,
            "type": "progress",
            "uuid": "p1",
            "parentUuid": "a1",
            "toolUseID": "agent_msg_x",
            "parentToolUseID": "toolu_task",
            "data": {"type": "agent_progress", "agentId": agent_id, "prompt": "Count the mypy errors."},
        },
        {
            **base,
            "type": "user",
            "uuid": "r1",
            "parentUuid": "a1",
            "message": {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_task", "content": "258 errors"}],
            },
            "toolUseResult": {"status": "completed", "agentId": agent_id, "totalToolUseCount": 1},
        },
        {
            **base,
            "type": "assistant",
            "uuid": "a2",
            "parentUuid": "r1",
            "message": {"id": "msg_2", "role": "assistant", "content": [{"type": "text", "text": "258 errors."}]},
        },
    ]
    side_base = {**base, "isSidechain": True, "agentId": agent_id}
    sub = [
        {
            **side_base,
            "type": "user",
            "uuid": "s1",
            "parentUuid": None,
            "message": {"role": "user", "content": "Count the mypy errors."},
        },
        {
            **side_base,
            "type": "assistant",
            "uuid": "s2",
            "parentUuid": "s1",
            "message": {
                "id": "msg_s",
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_sub", "name": "Bash", "input": {"command": "mypy . | tail -1"}}
                ],
            },
        },
        {
            **side_base,
            "type": "user",
            "uuid": "s3",
            "parentUuid": "s2",
            "message": {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_sub", "content": "Found 258 errors"}],
            },
        },
        {
            **side_base,
            "type": "assistant",
            "uuid": "s4",
            "parentUuid": "s3",
            "message": {"id": "msg_s2", "role": "assistant", "content": [{"type": "text", "text": "258 errors"}]},
        },
    ]
    session = tmp_path / f"{session_id}.jsonl"
    session.write_bytes(_jsonl(main))
    (tmp_path / session_id / "subagents").mkdir(parents=True)
    (tmp_path / session_id / "subagents" / f"agent-{agent_id}.jsonl").write_bytes(_jsonl(sub))

    t = load_transcript(session)
    [side] = t.metadata["sidechains"]
    assert side["tool_use_id"] == "toolu_task"
    assert side["agent_id"] == agent_id
    assert side["path"].endswith(f"agent-{agent_id}.jsonl")
    assert t.metadata["sidechain_of_tool_use"] == {"toolu_task": 0}
    assert [Message.model_validate(m).role for m in side["messages"]] == ["user", "assistant", "user", "assistant"]
    report = report_of(t)
    assert report is not None and report.conserved, report.unaccounted().nonzero()
    assert report.kept["sidechains"].tool_calls == 1
    # Spliced in before the Task result, the subagent's call becomes part of the messages.
    spliced = parse_bytes(session.read_bytes(), source=str(session), include_sidechains=True, subagent_files=[])
    assert spliced.metadata["sidechain_count"] == 0  # without the files, there is nothing to splice
