"""The OpenAI Responses API importer: items of every kind, statuses, server-side calls,
reasoning summaries, accounting, located errors and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tests.tools.formats.fuzzing import JSON_VALUES, check, deleted, paths, replaced
from tools.errors import FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.accounting import report_of
from tools.formats.openai_responses import IMPORTER, parse
from tools.transcript import CompactionBlock, ImageBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock

SESSION = FIXTURES / "formats" / "openai_responses_session.json"
DOC: dict[str, Any] = json.loads(SESSION.read_text(encoding="utf-8"))
T = load_transcript(SESSION)


def test_detected_and_every_item_mapped() -> None:
    assert detect_format(SESSION) == "openai-responses"
    assert T.metadata["harness"] == "openai-responses"
    assert T.model == "gpt-5-codex"
    assert T.system == (
        "You are a coding agent working in /workspace/ledger. Keep changes minimal.\n\nNever disable the test suite."
    )
    assert T.generation.max_tokens == 4096
    assert T.generation.model_extra == {"reasoning_effort": "high"}
    calls = {u.id: u for m in T.messages for u in m.tool_uses}
    assert calls["call_Qm7Kx2Lp9Wn4Vt6Y"].input == {"path": "tests/test_balance.py"}
    assert calls["call_Ls8Mn3Bv6Cx1Zq4W"].name == "local_shell"
    assert calls["call_Ls8Mn3Bv6Cx1Zq4W"].input["command"] == ["bash", "-lc", "pytest -q tests/test_balance.py"]
    assert calls["call_Ap5Pt2Ch7Dn0Yx3K"].input["input"].startswith("*** Begin Patch")
    assert calls["call_Sh9Rc4Xe1Fm6Vb8N"].input["commands"] == ["pytest -q"]
    assert calls["call_Pa3Tc8Ll0Gv5Hs2Q"].input["type"] == "update_file"
    search = calls["ws_68c1a0ff26298190"]
    assert search.side == "server" and search.input["query"] == "pytest skip test without decorator"
    image = T.messages[0].content[1]
    assert isinstance(image, ImageBlock) and image.url == "https://ci.example.com/run/811/screenshot.png"


def test_outputs_answer_their_calls_with_statuses() -> None:
    assert T.tool_status("call_Qm7Kx2Lp9Wn4Vt6Y") == "ok"
    shell = T.tool_result("call_Sh9Rc4Xe1Fm6Vb8N")
    assert shell is not None and shell[1].status == "error"
    assert shell[1].text == "..F.\n\n[exit code 1]"
    local = T.tool_result("call_Ls8Mn3Bv6Cx1Zq4W")  # a local shell output names its call by `id`
    assert local is not None and "1 failed" in local[1].text
    for turn in T.turns():
        assert {r.tool_use_id for r in turn.results} >= {u.id for u in turn.tool_uses if u.side == "client"}


def test_reasoning_summary_is_marked_as_not_the_chain_of_thought() -> None:
    thinking = [(m, i, b) for m in T.messages for i, b in enumerate(m.content) if isinstance(b, ThinkingBlock)]
    encrypted = thinking[0][2]
    assert encrypted.redacted and encrypted.signature and encrypted.signature.startswith("gAAAA")
    summary_msg, index, summary = thinking[1]
    assert summary.thinking.startswith("**Fixing sign handling**")
    assert summary_msg.metadata["openai_responses"]["items"][str(index)]["reasoning_summary_only"] is True
    report = report_of(T)
    assert report is not None and any("not the chain of thought" in n for n in report.notes)


def test_counts_are_conserved_and_unhandled_items_are_kept() -> None:
    report = report_of(T)
    assert report is not None and report.conserved, report.unaccounted()
    assert report.read.tool_calls == report.produced.tool_calls == 6
    [kept] = T.metadata["openai_responses"]["other_items"]
    assert kept["item"]["type"] == "mcp_list_tools"
    assert report.kept["items with no place in the transcript (kept whole in metadata)"].other == 1


def test_a_bare_response_and_an_item_list() -> None:
    response = parse(DOC["response"], source="r.json")
    assert [m.role for m in response.messages] == ["assistant"]
    assert response.messages[0].id == DOC["response"]["id"]
    items = parse({"object": "list", "data": DOC["input"][1:4]}, source="l.json")
    assert [m.role for m in items.messages] == ["user", "assistant"]
    assert items.messages[1].tool_uses[0].id == "call_Qm7Kx2Lp9Wn4Vt6Y"


def test_server_calls_with_results_carry_them_in_the_assistant_message() -> None:
    t = parse(
        {
            "object": "response",
            "output": [
                {
                    "type": "code_interpreter_call",
                    "id": "ci_1",
                    "status": "completed",
                    "code": "print(2+2)",
                    "container_id": "cntr_1",
                    "outputs": [{"type": "logs", "logs": "4\n"}],
                },
                {
                    "type": "mcp_call",
                    "id": "mcp_1",
                    "name": "create_issue",
                    "server_label": "linear",
                    "arguments": '{"title": "x"}',
                    "output": None,
                    "error": "forbidden",
                },
                {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAB..."},
            ],
        },
        source="s.json",
    )
    blocks = t.messages[0].content
    assert [b.type for b in blocks] == ["tool_use", "tool_result", "tool_use", "tool_result", "compaction"]
    assert isinstance(blocks[1], ToolResultBlock) and blocks[1].side == "server" and blocks[1].text == "4\n"
    assert isinstance(blocks[2], ToolUseBlock) and blocks[2].input == {"title": "x"}
    assert isinstance(blocks[3], ToolResultBlock) and blocks[3].is_error
    assert isinstance(blocks[4], CompactionBlock) and blocks[4].encrypted_content == "gAAAAB..."
    items = t.messages[0].metadata["openai_responses"]["items"]
    assert items["4"]["id"] == "cmp_1" and items["0"]["type"] == "code_interpreter_call"
    assert "?" not in items


def test_malformed_arguments_are_kept_raw() -> None:
    t = parse(
        {"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{not json"}]}, source="x"
    )
    [call] = t.messages[0].tool_uses
    assert call.input == {"_raw_arguments": "{not json"}


@pytest.mark.parametrize(
    ("data", "location", "words"),
    [
        ({"input": 5}, "input", "string or a list"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id", "required"),
        ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role", "Input should be"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "call_id"),
        ({"object": "response", "output": 3}, "output", "a list"),
        ({"input": [7]}, "input[0]", "JSON object"),
        ([], "$", "expected Responses API items"),
        ("text", "$", "expected a Responses API request"),
    ],
)
def test_errors_are_located(data: Any, location: str, words: str) -> None:
    with pytest.raises(FormatError) as info:
        parse(data, source="bad.json")
    assert info.value.location == location
    assert words in info.value.detail


FIXTURE_PATHS = paths(DOC)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(FIXTURE_PATHS), value=JSON_VALUES)
def test_fuzz_replaced_values(where: tuple[Any, ...], value: Any) -> None:
    check(lambda d: parse(d, source="fuzz.json"), replaced(DOC, where, value), "fuzz.json")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(FIXTURE_PATHS))
def test_fuzz_deleted_fields(where: tuple[Any, ...]) -> None:
    check(lambda d: parse(d, source="fuzz.json"), deleted(DOC, where), "fuzz.json")


@settings(max_examples=100, deadline=None)
@given(value=JSON_VALUES)
def test_fuzz_arbitrary_json(value: Any) -> None:
    assert isinstance(IMPORTER.sniff(Path("x.json"), value), bool)
    check(lambda d: parse(d, source="fuzz.json"), value, "fuzz.json")
    check(lambda d: parse(d, source="fuzz.json"), {"input": [value]}, "fuzz.json")
