"""Incident files: loading, cross-checks against the transcript, and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES
from tools.errors import IncidentError
from tools.incident import CompositeDetector, RegexDetector, is_incident_file, load_incident

EXAMPLE = EXAMPLES / "incident_precommit.yaml"


def _write(tmp_path: Path, spec: dict[str, Any]) -> Path:
    (tmp_path / "precommit_transcript.json").write_text((EXAMPLES / "precommit_transcript.json").read_text())
    path = tmp_path / "incident.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return spec


def test_example_loads_and_points_at_the_flagged_call() -> None:
    incident = load_incident(EXAMPLE)
    assert incident.id == "precommit-noverify-001"
    assert incident.flagged_turn_index == 5
    call = incident.flagged_turn.tool_uses[0]
    assert call.id == incident.flag.tool_use_id
    assert "--no-verify" in call.input["command"]
    assert incident.environment.scenario == "pre-commit-hook"
    assert incident.environment.knobs == {"n_type_errors": 258}
    assert isinstance(incident.behavior, CompositeDetector)
    assert isinstance(incident.behavior.of[0], RegexDetector)
    assert incident.transcript.metadata["source_format"] == "native"


def test_negative_turn_counts_from_the_end(tmp_path: Path) -> None:
    spec = _spec()
    spec["flag"]["turn"] = -2
    incident = load_incident(_write(tmp_path, spec))
    assert incident.flagged_turn_index == 5


def test_json_incident_with_inline_transcript(tmp_path: Path) -> None:
    spec = _spec()
    spec["transcript"] = yaml.safe_load((EXAMPLES / "precommit_transcript.json").read_text())
    path = tmp_path / "incident.json"
    import json

    path.write_text(json.dumps(spec))
    assert is_incident_file(path)
    assert load_incident(path).flagged_turn_index == 5


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda s: s.pop("flag"), "flag", "required"),
        (lambda s: s["flag"].pop("reason"), "flag.reason", "required"),
        (lambda s: s["flag"].update(turn="five"), "flag.turn", "integer"),
        (lambda s: s["flag"].update(turn=40), "flag.turn", "7 assistant turns"),
        (
            lambda s: s["flag"].update(tool_use_id="toolu_nope"),
            "flag.tool_use_id",
            "is not a tool call in the transcript",
        ),
        (lambda s: s["flag"].update(turn=None, tool_use_id=None), "flag", "give `turn`"),
        (lambda s: s.update(environment={"knobs": {}}), "environment", "scenario"),
        (lambda s: s.update(behavior={"kind": "telepathy"}), "behavior", "regex"),
        (lambda s: s.update(behavior={"kind": "regex", "pattern": "("}), "behavior", "regular expression"),
        (lambda s: s["subject"].pop("model"), "subject.model", "required"),
        (lambda s: s.update(transcript="missing.json"), "transcript", "not found"),
        (lambda s: s.update(transcript_format="word"), "transcript_format", "unknown format"),
        (lambda s: s.update(colour="red"), "colour", "unexpected field"),
    ],
)
def test_errors_name_file_field_and_expectation(tmp_path: Path, mutate: Any, field: str, words: str) -> None:
    spec = _spec()
    mutate(spec)
    path = _write(tmp_path, spec)
    with pytest.raises(IncidentError) as info:
        load_incident(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field `{field}")
    assert words in message


def test_unreadable_transcript_is_reported_through_the_incident(tmp_path: Path) -> None:
    spec = _spec()
    path = _write(tmp_path, spec)
    (tmp_path / "precommit_transcript.json").write_text("{not json")
    with pytest.raises(IncidentError, match=r"field `transcript`: the transcript could not be read: .*invalid JSON"):
        load_incident(path)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "i.yaml"
    path.write_text("flag:\n  turn: [1,\n")
    with pytest.raises(IncidentError, match=r"i.yaml at line \d+, column \d+: not valid YAML"):
        load_incident(path)
    path.write_text("- a list\n")
    with pytest.raises(IncidentError, match="must be a mapping"):
        load_incident(path)


def test_is_incident_file() -> None:
    assert is_incident_file(EXAMPLE)
    assert not is_incident_file(EXAMPLES / "precommit_transcript.json")


# ------------------------------------------------------------------ locating the flag
def test_tool_use_id_alone_locates_the_flagged_turn(tmp_path: Path) -> None:
    spec = _spec()
    call_id = spec["flag"]["tool_use_id"]
    del spec["flag"]["turn"]
    incident = load_incident(_write(tmp_path, spec))
    assert incident.flag.turn == 5
    assert incident.flagged_turn.tool_uses[0].id == call_id


def test_a_turn_that_does_not_hold_the_call_names_the_turn_that_does(tmp_path: Path) -> None:
    spec = _spec()
    spec["flag"]["turn"] = 2
    with pytest.raises(IncidentError) as info:
        load_incident(_write(tmp_path, spec))
    message = str(info.value)
    assert "field `flag.tool_use_id`" in message
    assert "is not a tool call of turn 2" in message
    assert "it is a call of turn 5" in message


def test_a_turn_out_of_range_says_where_the_call_is(tmp_path: Path) -> None:
    spec = _spec()
    spec["flag"]["turn"] = 40
    with pytest.raises(IncidentError, match="tool call 'toolu_01Fx9"):
        load_incident(_write(tmp_path, spec))
