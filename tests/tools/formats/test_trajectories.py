"""Trajectory formats: SWE-agent ``.traj``, mini-swe-agent, OpenHands event streams
and ATIF. Each: the fixture's mapping, statuses, accounting, located errors, fuzzing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXTURES
from tests.tools.formats.fuzzing import JSON_VALUES, check, deleted, paths, replaced
from tools.errors import FormatError
from tools.formats import detect_format, get_importer, load_transcript
from tools.formats.accounting import report_of
from tools.formats.atif import parse as parse_atif
from tools.formats.mini_swe_agent import parse as parse_mini
from tools.formats.openhands import parse as parse_openhands
from tools.formats.openhands import parse_lines as parse_openhands_lines
from tools.formats.swe_agent import parse as parse_swe
from tools.transcript import ThinkingBlock, Transcript

F = FIXTURES / "formats"
SWE = F / "swe_agent.traj"
MINI = F / "mini_swe_agent.traj.json"
OPENHANDS = F / "openhands_events.json"
ATIF = F / "atif_trajectory.json"


def _doc(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("path", "name", "harness"),
    [
        (SWE, "swe-agent", "swe-agent"),
        (MINI, "mini-swe-agent", "mini-swe-agent"),
        (OPENHANDS, "openhands", "openhands"),
        (ATIF, "atif", "terminus-2"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_detected_loaded_and_conserved(path: Path, name: str, harness: str) -> None:
    assert detect_format(path) == name
    t = load_transcript(path)
    assert t.metadata["harness"] == harness
    report = report_of(t)
    assert report is not None and report.format == name
    assert report.conserved, report.unaccounted().nonzero()
    # Every client call that is not the last message's got a result.
    for turn in t.turns()[:-1]:
        assert {r.tool_use_id for r in turn.results} == {u.id for u in turn.tool_uses}


# ------------------------------------------------------------------------ SWE-agent
def test_swe_agent_history_calls_results_and_steps() -> None:
    t = load_transcript(SWE)
    assert t.system == "You are a helpful assistant that can interact with a computer to solve tasks."
    assert t.model == "claude-sonnet-4-20250514"
    assert [u.name for m in t.messages for u in m.tool_uses] == [
        "str_replace_editor",
        "str_replace_editor",
        "bash",
        "submit",
    ]
    edit = t.tool_use("call_02")[1]
    assert edit.input["new_str"] == "            opts = cur_model._meta.concrete_model._meta"
    assert t.messages[1].metadata["swe_agent"]["state"] == {"working_dir": "/testbed"}
    assert t.metadata["exit_status"] == "submitted"
    assert t.metadata["tools_inferred"] is True


def test_swe_agent_text_actions_become_bash_calls_and_observations_their_results() -> None:
    data = {
        "trajectory": [{"action": "ls -F\n", "observation": "a.py\n", "thought": "look", "response": "r"}],
        "history": [
            {"role": "system", "content": "sys", "message_type": "system_prompt"},
            {"role": "user", "content": "demo task", "is_demo": True, "message_type": "demonstration"},
            {"role": "user", "content": "fix it", "message_type": "observation"},
            {
                "role": "assistant",
                "content": "DISCUSSION\nlook\n\n```\nls -F\n```",
                "thought": "look",
                "action": "ls -F\n",
                "message_type": "action",
            },
            {"role": "user", "content": "a.py\n(Open file: n/a)", "message_type": "observation"},
            {"role": "assistant", "content": "no command here", "thought": "", "action": "", "message_type": "action"},
            {"role": "user", "content": "Your output was not formatted correctly.", "message_type": "observation"},
        ],
        "info": {"exit_status": "exit_format"},
    }
    t = parse_swe(data, source="t.traj")
    [call] = t.messages[2].tool_uses
    assert call.name == "bash" and call.input == {"command": "ls -F\n"}
    assert t.messages[2].metadata["action_parsed_from_text"] is True
    assert t.tool_result(call.id) is not None and "a.py" in t.tool_result(call.id)[1].text  # type: ignore[index]
    assert t.messages[0].metadata["is_demo"] is True
    assert t.messages[-1].role == "user" and not t.messages[-1].tool_results  # the format error stays text
    report = report_of(t)
    assert report is not None and not report.unaccounted()
    assert report.synthesized["tool calls parsed from the text of a text-based agent"].tool_calls == 1


# ---------------------------------------------------------------------- mini-swe-agent
def test_mini_swe_agent_parses_one_command_per_response_and_marks_failures() -> None:
    t = load_transcript(MINI)
    assert t.model == "anthropic/claude-sonnet-4-5-20250929"
    commands = [u.input["command"] for m in t.messages for u in m.tool_uses]
    assert commands[0] == 'grep -rn "def export" src/'
    assert len(commands) == 4  # the response with two command blocks was a format error: nothing ran
    assert t.messages[3].metadata["format_error"] == "2 command blocks; none was run"
    failing = next(u for m in t.messages for u in m.tool_uses if u.input["command"].startswith("sed -i"))
    assert t.tool_status(failing.id) == "error"  # <returncode>1</returncode>
    assert t.metadata["exit_status"] == "Submitted"


def test_mini_swe_agent_tool_call_mode_and_exit_message() -> None:
    data = {
        "trajectory_format": "mini-swe-agent-1.1",
        "info": {"exit_status": "Submitted", "config": {"model": {"model_name": "openai/gpt-5"}}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "task"},
            {
                "role": "assistant",
                "content": "thinking",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
                ],
                "extra": {"actions": [{"command": "ls", "tool_call_id": "call_1"}], "cost": 0.01},
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.py", "extra": {"returncode": 0}},
            {"role": "exit", "content": "", "extra": {"exit_status": "Submitted", "submission": ""}},
        ],
    }
    t = parse_mini(data, source="m.json")
    assert t.tool_status("call_1") == "ok"
    assert t.metadata["mini_swe_agent"]["exit"]["role"] == "exit"
    assert t.messages[1].metadata["mini_swe_agent"]["cost"] == 0.01
    report = report_of(t)
    assert report is not None and report.conserved


# -------------------------------------------------------------------------- OpenHands
def test_openhands_groups_parallel_calls_and_marks_rejection() -> None:
    t = load_transcript(OPENHANDS)
    assert t.system is not None and t.system.startswith("You are OpenHands agent")
    assert [s.name for s in t.tools] == ["execute_bash", "str_replace_editor", "finish"]
    first = t.turns()[0]
    assert [u.id for u in first.tool_uses] == ["toolu_01A", "toolu_01B"]
    assert first.message.text == "I'll check the config loader and the failing test together."
    assert t.tool_status("toolu_01B") == "error"  # exit code 1
    assert t.tool_status("toolu_03A") == "rejected"
    recall = next(m for m in t.messages if m.metadata.get("openhands_recall"))
    assert "Run tests with pytest -q." in recall.text
    report = report_of(t)
    assert report is not None and report.skipped_records["observation:agent_state_changed"] == 3
    assert t.model == "litellm_proxy/claude-sonnet-4-20250514"


def test_openhands_event_lines_and_bad_lines() -> None:
    events = _doc(OPENHANDS)
    lines = [json.dumps(e) + "\n" for e in events]
    t = parse_openhands_lines(lines, source="e.jsonl")
    assert [m.role for m in t.messages] == [m.role for m in load_transcript(OPENHANDS).messages]
    lines[3] = "{broken\n"
    with pytest.raises(FormatError) as info:
        parse_openhands_lines(lines, source="e.jsonl")
    assert info.value.location == "line 4"
    t = parse_openhands_lines(lines, source="e.jsonl", skip_bad_lines=True)
    report = report_of(t)
    assert report is not None and [s.line for s in report.skipped_lines] == [4]


def test_openhands_v1_sdk_events_are_refused_with_the_reason() -> None:
    refusal = get_importer("openhands").refusal
    assert refusal is not None
    assert "V1" in refusal(Path("x.json"), [{"kind": "ActionEvent", "id": "1"}])


# ------------------------------------------------------------------------------ ATIF
def test_atif_steps_observations_and_references() -> None:
    t = load_transcript(ATIF)
    assert t.system == "You are an AI assistant tasked with solving command-line tasks in a Linux environment."
    assert t.model == "openai/gpt-5"
    thinking = t.messages[1].content[0]
    assert isinstance(thinking, ThinkingBlock) and thinking.signature is None
    second = t.turns()[1]
    assert [u.id for u in second.tool_uses] == ["call_2", "call_3"]
    results_message = t.messages[second.message_index + 1]
    assert [b.type for b in results_message.content] == ["tool_result", "tool_result", "text"]
    delegate = t.tool_result("call_4")
    assert delegate is not None and delegate[1].text == "[subagent trajectory: sub-77]"
    refs = t.messages[delegate[0]].metadata["atif"]["subagent_trajectory_refs"]
    assert refs["call_4"][0]["trajectory_path"] == "subagents/sub-77.json"
    assert t.metadata["atif"]["final_metrics"]["total_steps"] == 6


def test_atif_result_for_a_call_the_step_did_not_make_is_an_error() -> None:
    doc = _doc(ATIF)
    doc["steps"][2]["observation"]["results"][0]["source_call_id"] = "call_99"
    with pytest.raises(FormatError) as info:
        parse_atif(doc, source="a.json")
    assert info.value.location == "steps[2].observation.results[0].source_call_id"


# ------------------------------------------------------------------------------ fuzz
PARSERS: dict[str, tuple[Path, Callable[[Any], Transcript]]] = {
    "swe": (SWE, lambda d: parse_swe(d, source="fuzz")),
    "mini": (MINI, lambda d: parse_mini(d, source="fuzz")),
    "openhands": (OPENHANDS, lambda d: parse_openhands(d, source="fuzz")),
    "atif": (ATIF, lambda d: parse_atif(d, source="fuzz")),
}
DOCS = {name: _doc(path) for name, (path, _) in PARSERS.items()}
PATHS = {name: paths(doc) for name, doc in DOCS.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(PARSERS)), data=st.data(), value=JSON_VALUES)
def test_fuzz_replaced_values(name: str, data: st.DataObject, value: Any) -> None:
    where = data.draw(st.sampled_from(PATHS[name]))
    check(PARSERS[name][1], replaced(DOCS[name], where, value), "fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(PARSERS)), data=st.data())
def test_fuzz_deleted_fields(name: str, data: st.DataObject) -> None:
    where = data.draw(st.sampled_from(PATHS[name]))
    check(PARSERS[name][1], deleted(DOCS[name], where), "fuzz")


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), value=JSON_VALUES)
def test_fuzz_arbitrary_json(name: str, value: Any) -> None:
    path, parse = PARSERS[name]
    importer = get_importer(detect_format(path))
    assert isinstance(importer.sniff(Path("x.json"), value), bool)
    check(parse, value, "fuzz")
