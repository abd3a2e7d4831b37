"""Shared property checks for the importers: whatever a mutated, truncated or arbitrary
input does, an importer raises only a located `FormatError` or returns a valid
transcript whose import report balances."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tools.errors import FormatError
from tools.formats.accounting import report_of
from tools.transcript import Transcript

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=16) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON tree (the root excluded)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            out += paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += paths(sub, (*prefix, i))
    return out


def replaced(doc: Any, where: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    target = out
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = copy.deepcopy(value)
    return out


def deleted(doc: Any, where: tuple[Any, ...]) -> Any:
    out = copy.deepcopy(doc)
    target = out
    for key in where[:-1]:
        target = target[key]
    del target[where[-1]]
    return out


def check(parse: Callable[[Any], Transcript], data: Any, source: str) -> Transcript | None:
    """`parse(data)` raises a `FormatError` naming `source`, or gives a transcript that
    validates, serializes, and whose import report has nothing unaccounted."""
    try:
        transcript = parse(data)
    except FormatError as err:
        assert err.source == source, (err.source, source)
        assert err.detail
        return None
    Transcript.model_validate(transcript.model_dump())
    json.dumps(transcript.metadata)
    report = report_of(transcript)
    assert report is not None
    assert not report.unaccounted(), report.unaccounted().nonzero()
    return transcript


def check_file(load: Callable[[Path], Transcript], path: Path) -> Transcript | None:
    try:
        transcript = load(path)
    except FormatError as err:
        assert err.source == str(path)
        return None
    report = report_of(transcript)
    assert report is not None and not report.unaccounted(), report
    return transcript
