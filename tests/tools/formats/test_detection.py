"""Format detection: every fixture is recognised, and a file nobody claims gets an error
naming the closest importer and the first reason it refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, FIXTURES
from tools.errors import FormatError
from tools.formats import FORMAT_NAMES, HARNESSES, detect_format, get_importer, load_transcript
from tools.formats.accounting import report_of

F = FIXTURES / "formats"
EXPECTED = {
    "anthropic_agentic_session.json": "anthropic",
    "anthropic_request_response.json": "anthropic",
    "anthropic_response.json": "anthropic",
    "anthropic_server_tools.json": "anthropic",
    "atif_trajectory.json": "atif",
    "claude_code_parallel.jsonl": "claude-code",
    "claude_code_precommit.jsonl": "claude-code",
    "claude_code_truncated.jsonl": "claude-code",
    "codex_rollout.jsonl": "codex",
    "mini_swe_agent.traj.json": "mini-swe-agent",
    "openai_agent_session.json": "openai",
    "openai_request_response.json": "openai",
    "openai_response_two_choices.json": "openai",
    "openai_responses_session.json": "openai-responses",
    "openhands_events.json": "openhands",
    "swe_agent.traj": "swe-agent",
}


def test_every_fixture_file_is_listed() -> None:
    assert sorted(p.name for p in F.iterdir() if p.is_file()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_fixture_is_detected_and_imports_with_counts_conserved(name: str) -> None:
    path = F / name
    assert detect_format(path) == EXPECTED[name]
    t = load_transcript(path)
    report = report_of(t)
    assert report is not None and report.format == EXPECTED[name]
    # In == out: every unit read is in the transcript, or kept, merged or synthesized as
    # recorded; nothing is dropped without a warning, and nothing is unaccounted.
    assert not report.unaccounted(), report.unaccounted().nonzero()
    assert not report.dropped
    assert isinstance(t.metadata.get("harness"), str)


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".json", ".jsonl", ".eval"}))
def test_shipped_examples_import_with_counts_conserved(path: Path) -> None:
    t = load_transcript(path)
    report = report_of(t)
    assert report is not None and not report.unaccounted()


def test_every_registered_format_describes_itself_and_names_markers() -> None:
    for name in FORMAT_NAMES:
        importer = get_importer(name)
        assert importer.name == name and importer.description
        assert importer.markers and importer.refusal is not None
    assert "claude-code" in HARNESSES and "openai-responses" in HARNESSES


def _write(tmp_path: Path, name: str, data: Any, *, lines: bool = False) -> Path:
    path = tmp_path / name
    text = "".join(json.dumps(r) + "\n" for r in data) if lines else json.dumps(data)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "data", "lines", "closest", "reason"),
    [
        ("chat.json", {"messages": [{"role": "robot", "content": "hi"}]}, False, "anthropic", "messages[0].role"),
        ("traj.json", {"trajectory": [], "info": {}}, False, "swe-agent", "no 'history'"),
        ("atif.json", {"schema_version": "1.4", "agent": {"name": "x"}, "steps": []}, False, "atif", "schema_version"),
        (
            "rollout.jsonl",
            [
                {"timestamp": "t", "type": "session_start", "payload": {}},
                {"timestamp": "t", "type": "item", "payload": {}},
            ],
            True,
            "codex",
            "record types",
        ),
        (
            "session.jsonl",
            [{"type": "user", "sessionId": "s", "uuid": "u", "text": "hi"}],
            True,
            "claude-code",
            "record",
        ),
    ],
)
def test_an_unclaimed_file_names_the_closest_importer_and_its_reason(
    tmp_path: Path, name: str, data: Any, lines: bool, closest: str, reason: str
) -> None:
    path = _write(tmp_path, name, data, lines=lines)
    with pytest.raises(FormatError) as info:
        detect_format(path)
    message = str(info.value)
    assert f"the closest is {closest!r}" in message
    assert reason in message
    assert f"--format {closest}" in message


def test_a_file_like_no_format_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path, "other.json", {"rows": [1, 2, 3]})
    with pytest.raises(FormatError, match="none of the keys or record types"):
        detect_format(path)


def test_json_lines_under_another_extension_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "rollout.log"
    path.write_bytes((F / "codex_rollout.jsonl").read_bytes())
    assert detect_format(path) == "codex"
