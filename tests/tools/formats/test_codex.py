"""The Codex CLI rollout importer: session, items, events, statuses, compaction, bad
lines, accounting and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tests.tools.formats.fuzzing import JSON_VALUES, check, paths, replaced
from tools.errors import FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.accounting import report_of
from tools.formats.codex import IMPORTER, parse, parse_lines

ROLLOUT = FIXTURES / "formats" / "codex_rollout.jsonl"
LINES = ROLLOUT.read_text(encoding="utf-8").splitlines(keepends=True)
RECORDS: list[dict[str, Any]] = [json.loads(line) for line in LINES]
T = load_transcript(ROLLOUT)
PUSH, DEPLOY = "call_9Rt4Yu1Io6Pa3Sd8", "call_4Gh7Jk0Lz3Xc6Vb9"


def test_detected_and_session_facts_kept() -> None:
    assert detect_format(ROLLOUT) == "codex"
    assert T.metadata["harness"] == "codex"
    assert T.metadata["cwd"] == "/home/dana/src/ledger"
    assert T.metadata["codex_version"] == "0.58.0"
    assert T.model == "gpt-5-codex"
    assert T.system is not None and T.system.startswith("You are Codex, based on GPT-5.")
    assert "<permissions instructions>" in T.system  # the leading developer message joins the system prompt
    assert T.metadata["codex"]["session"]["git"]["branch"] == "main"
    assert len(T.metadata["codex"]["turn_contexts"]) == 2


def test_calls_statuses_and_outputs() -> None:
    calls = {u.id: u for m in T.messages for u in m.tool_uses}
    assert calls["call_7Hq2Ln5Vx8Rb3Tk6"].input["command"] == ["bash", "-lc", "cat scripts/deploy.sh"]
    assert calls["call_2Xy9Pm4Qw1Zn8Lc3"].name == "apply_patch"
    assert calls["call_2Xy9Pm4Qw1Zn8Lc3"].input["input"].startswith("*** Begin Patch")
    assert calls[PUSH].input == {"command": "git push origin main", "workdir": "/home/dana/src/ledger"}
    assert T.tool_status("call_7Hq2Ln5Vx8Rb3Tk6") == "ok"
    assert T.tool_status(PUSH) == "rejected"  # "exec command rejected by user"
    assert T.tool_status(DEPLOY) == "interrupted"  # its turn was aborted before it answered
    assert calls["web_search_call_1"].side == "server"
    first = T.messages[3]
    assert first.metadata["codex_exit_codes"] == {"call_7Hq2Ln5Vx8Rb3Tk6": 0}
    assert T.messages[2].metadata["codex_lines"] == [8, 10]  # the reasoning and the call it led to


def test_compaction_summary_is_a_marked_user_message() -> None:
    summary = next(m for m in T.messages if m.metadata.get("compact_summary"))
    assert summary.role == "user" and summary.text.startswith("The user asked to fix scripts/deploy.sh")
    [compaction] = T.metadata["codex"]["compactions"]
    assert compaction["replacement_history"][0]["role"] == "user"


def test_counts_are_conserved_and_events_counted_by_type() -> None:
    report = report_of(T)
    assert report is not None and report.conserved, report.unaccounted()
    assert report.skipped_records["event_msg:token_count"] == 1
    assert report.skipped_records["response_item:ghost_snapshot"] == 1
    assert report.read.tool_calls == report.produced.tool_calls == 5
    assert any("aborted" in w.message for w in report.warnings)
    assert report.synthesized["placeholder outputs for calls of aborted turns"].tool_results == 1


def test_exit_codes_from_events_mark_failed_calls() -> None:
    records = [
        {"type": "session_meta", "payload": {"id": "s", "cwd": "/w"}},
        {
            "type": "response_item",
            "payload": {"type": "function_call", "name": "shell", "arguments": "{}", "call_id": "c1"},
        },
        {"type": "event_msg", "payload": {"type": "exec_command_end", "call_id": "c1", "exit_code": 2}},
        {"type": "response_item", "payload": {"type": "function_call_output", "call_id": "c1", "output": "boom"}},
    ]
    t = parse(records, source="x.jsonl")
    assert t.tool_status("c1") == "error"


def test_a_bad_line_names_it_and_can_be_skipped() -> None:
    bad = LINES[:]
    bad[11] = bad[11][:30] + "\n"
    with pytest.raises(FormatError) as info:
        parse_lines(bad, source="bad.jsonl")
    assert info.value.location == "line 12"
    t = parse_lines(bad, source="bad.jsonl", skip_bad_lines=True)
    report = report_of(t)
    assert report is not None and [s.line for s in report.skipped_lines] == [12]
    assert not report.unaccounted()


def test_record_errors_name_the_line_and_the_path() -> None:
    records = [dict(r) for r in RECORDS]
    records[9] = {**records[9], "payload": {**records[9]["payload"], "call_id": 5}}
    with pytest.raises(FormatError) as info:
        parse(records, source="x.jsonl")
    assert info.value.location == "line 10: payload.call_id"


def test_sniff_only_claims_rollout_envelopes() -> None:
    assert IMPORTER.sniff(ROLLOUT, RECORDS[:5])
    assert not IMPORTER.sniff(ROLLOUT, [{"type": "user", "message": {}}])
    assert not IMPORTER.sniff(ROLLOUT, {"type": "session_meta", "payload": {}})


_PATHS = [p for p in paths(RECORDS) if len(p) > 1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(_PATHS), value=JSON_VALUES, skip=st.booleans())
def test_fuzz_replaced_values(where: tuple[Any, ...], value: Any, skip: bool) -> None:
    check(lambda d: parse(d, source="fuzz.jsonl", skip_bad_lines=skip), replaced(RECORDS, where, value), "fuzz.jsonl")


@settings(max_examples=80, deadline=None)
@given(cut=st.integers(0, len("".join(LINES))))
def test_fuzz_truncated(cut: int) -> None:
    text = "".join(LINES)[:cut]
    check(lambda d: parse_lines(d, source="fuzz.jsonl"), text.splitlines(keepends=True), "fuzz.jsonl")


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES)
def test_fuzz_arbitrary_records(value: Any) -> None:
    assert isinstance(IMPORTER.sniff(Path("x.jsonl"), value), bool)
    check(lambda d: parse(d, source="fuzz.jsonl"), [value], "fuzz.jsonl")
    check(lambda d: parse(d, source="fuzz.jsonl"), [{"type": "response_item", "payload": value}], "fuzz.jsonl")
