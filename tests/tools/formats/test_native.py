"""The project's own transcript JSON: exact round trip, detection, located errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES
from tools.errors import FormatError
from tools.formats import detect_format, load_transcript
from tools.formats.native import dumps, parse, save

EXAMPLE = EXAMPLES / "precommit_transcript.json"


def test_detected_and_loaded() -> None:
    assert detect_format(EXAMPLE) == "native"
    t = load_transcript(EXAMPLE)
    assert t.metadata["source_format"] == "native"
    assert len(t.turns()) == 7


def test_save_and_load_is_identity(tmp_path: Path) -> None:
    original = load_transcript(EXAMPLE)
    target = tmp_path / "t.json"
    save(original, target)
    again = load_transcript(target)
    assert again.messages == original.messages
    assert again.tools == original.tools
    assert again.system == original.system
    assert again.generation == original.generation
    assert not list(tmp_path.glob("*.tmp"))


def test_errors_name_the_json_path() -> None:
    data = json.loads(EXAMPLE.read_text())
    data["messages"][2]["content"][0]["type"] = "bogus"
    with pytest.raises(FormatError) as info:
        parse(data, source="x.json")
    assert info.value.location.startswith("messages[2].content[0]")
    assert info.value.source == "x.json"

    data = json.loads(EXAMPLE.read_text())
    data["messages"][1]["role"] = "robot"
    with pytest.raises(FormatError) as info:
        parse(data, source="x.json")
    assert info.value.location == "messages[1].role"
    assert "robot" in str(info.value)


def test_newer_schema_is_refused_with_advice() -> None:
    data = json.loads(dumps(load_transcript(EXAMPLE)))
    data["schema_version"] = 99
    with pytest.raises(FormatError, match="upgrade"):
        parse(data, source="x.json")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "model-forensics/transcript",\n "messages": [,]}')
    with pytest.raises(FormatError) as info:
        load_transcript(bad)
    assert info.value.location.startswith("line 2")


_VALID = json.loads(EXAMPLE.read_text())
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


_ALL_PATHS = [p for p in _paths(_VALID) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_ALL_PATHS), value=_json_values)
def test_fuzz_mutated_values_only_raise_format_error(path: tuple[Any, ...], value: Any) -> None:
    data = json.loads(json.dumps(_VALID))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        parse(data, source="fuzz.json")
    except FormatError as exc:
        assert exc.location or exc.detail


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(EXAMPLE.read_bytes()) - 2))
def test_fuzz_truncated_file_raises_format_error(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    path = tmp_path_factory.mktemp("trunc") / "t.json"
    path.write_bytes(EXAMPLE.read_bytes()[:cut])
    with pytest.raises(FormatError):
        load_transcript(path, format="native")
