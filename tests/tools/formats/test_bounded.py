"""Bounded reading and parsing of untrusted files (tools/formats/base.py, tools/incident.py):
what each limit refuses, that the refusal names the file and the place, and that what
is within the limits still reads."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml

from tools.errors import FormatError, IncidentError
from tools.formats import load_transcript
from tools.formats.base import (
    check_tree,
    check_zip_archive,
    parse_json_bounded,
    read_bounded,
    safe_yaml_load,
)
from tools.incident import is_incident_file, load_incident

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
INCIDENT = EXAMPLES / "incident_precommit.yaml"


# ------------------------------------------------------------------ files


def test_read_bounded_reads_a_regular_file_within_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100


def test_a_file_over_the_cap_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FormatError, match="over the limit of 100 bytes; set FORENSICS_MAX_TRANSCRIPT_BYTES") as info:
        read_bounded(path, 100)
    assert info.value.source == str(path)


def test_the_transcript_cap_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    monkeypatch.setenv("FORENSICS_MAX_TRANSCRIPT_BYTES", "10")
    with pytest.raises(FormatError, match="over the limit of 10 bytes"):
        load_transcript(path)
    monkeypatch.setenv("FORENSICS_MAX_TRANSCRIPT_BYTES", "1KiB")
    assert load_transcript(path).messages[0].text == "hi"


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/zero", "a character device"), ("/dev/null", "a character device"), ("/", "a directory")]
)
def test_devices_and_directories_are_refused_without_reading(target: str, kind: str) -> None:
    with pytest.raises(FormatError, match=f"is {kind}, expected a transcript file"):
        load_transcript(target)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "t.json"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="is a FIFO"):
        load_transcript(fifo)
    with pytest.raises(FormatError, match="is a FIFO"):
        read_bounded(fifo, 100)


# ------------------------------------------------------------------ JSON


def test_json_depth_past_the_limit_names_the_path() -> None:
    text = json.dumps({"a": {"b": [[[[[[1]]]]]]}})  # eight containers deep
    with pytest.raises(FormatError, match="nested more than 7 levels") as info:
        parse_json_bounded(text, source="x.json", max_depth=7)
    assert info.value.location == "a.b[0][0][0][0][0]"
    assert parse_json_bounded(text, source="x.json", max_depth=8)["a"]["b"] == [[[[[[1]]]]]]


def test_json_nesting_beyond_the_parser_names_line_and_column() -> None:
    text = '{"a":\n' + "[" * 100_000
    with pytest.raises(FormatError, match="nested more than 128 levels") as info:
        parse_json_bounded(text, source="x.json")
    assert info.value.location == "line 2, column 128"


def test_json_integer_over_4300_digits_is_located() -> None:
    text = '{"a": 1,\n "b": ' + "7" * 5000 + "}"
    with pytest.raises(FormatError, match="more than 4300 digits") as info:
        parse_json_bounded(text, source="x.json")
    assert info.value.location == "line 2, column 7"


def test_lone_surrogates_are_refused_and_pairs_kept() -> None:
    with pytest.raises(FormatError, match=r"lone surrogate \\ud800") as info:
        parse_json_bounded('{"m": [{"text": "ok \\ud800"}]}', source="x.json")
    assert info.value.location == "m[0].text"
    with pytest.raises(FormatError, match="key"):
        parse_json_bounded('{"\\udfff": 1}', source="x.json")
    assert parse_json_bounded('"\\ud83d\\ude00 \\\\ud800"', source="x.json") == "\U0001f600 \\ud800"


def test_check_tree_finds_a_bad_value_anywhere() -> None:
    check_tree({"a": ["é", 1, None, 2.5, True]}, source="x")
    with pytest.raises(FormatError) as info:
        check_tree({"a": [{"b": "\udc80"}]}, source="x", location="line 4")
    assert info.value.location == "line 4: a[0].b"
    with pytest.raises(FormatError, match="4300 digits"):
        check_tree({"a": 10**5000}, source="x")


# ------------------------------------------------------------------ YAML


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_its_line() -> None:
    text = _bomb()
    assert len(text) < 1024  # a kilobyte that would expand to 9**9 strings
    with pytest.raises(FormatError, match="alias bomb") as info:
        safe_yaml_load(text, source="bomb.yaml")
    assert info.value.location.startswith("line ")


def test_a_few_honest_aliases_and_merge_keys_still_load() -> None:
    text = "base: &base {image: debian, workdir: /w}\nenv: {<<: *base, image: other}\nalso: *base\n"
    data = safe_yaml_load(text, source="ok.yaml")
    assert data["env"] == {"image": "other", "workdir": "/w"}
    assert data["also"] == {"image": "debian", "workdir": "/w"}


def test_alias_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a: &a [1]\n" + "".join(f"b{i}: *a\n" for i in range(5))
    monkeypatch.setenv("FORENSICS_MAX_YAML_ALIASES", "4")
    with pytest.raises(FormatError, match="more than 4 alias references"):
        safe_yaml_load(text, source="x.yaml")
    monkeypatch.setenv("FORENSICS_MAX_YAML_ALIASES", "5")
    assert safe_yaml_load(text, source="x.yaml")["b4"] == [1]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: " + "[" * 500, "nested more than 128 levels"),
        ("a: " + "9" * 5000, "more than 4300 digits"),
        ("a: " + "1:" * 3000 + "1", "more than 4300 digits"),  # sexagesimal: quadratic big-int arithmetic
        ('a: "\\ud800"', "lone surrogate"),
        ("a: 2024-13-45", "month must be in 1..12"),
        ("a: !!python/object/apply:os.system [id]", "could not determine a constructor"),
        ("a: [1,\n", "not valid YAML"),
    ],
)
def test_hostile_yaml_is_a_located_error(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        safe_yaml_load(text, source="x.yaml")
    assert info.value.source == "x.yaml"
    assert info.value.location


def test_the_yaml_loader_matches_pyyaml_on_ordinary_documents() -> None:
    text = INCIDENT.read_text(encoding="utf-8")
    assert safe_yaml_load(text, source=str(INCIDENT)) == yaml.safe_load(text)


# ------------------------------------------------------------------ .eval archives


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    bomb = _zip(tmp_path / "bomb.eval", {"header.json": b"{}", "samples/1_epoch_1.json": b"0" * (64 * 1024 * 1024)})
    assert bomb.stat().st_size < 200_000
    with pytest.raises(FormatError, match=r"expands .*-fold .* zip bomb") as info:
        load_transcript(bomb)
    assert info.value.location == "samples/1_epoch_1.json"


def test_archive_totals_and_member_counts_are_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _zip(tmp_path / "many.eval", {f"samples/{i}.json": os.urandom(2000) for i in range(20)})
    check_zip_archive(path)
    monkeypatch.setenv("FORENSICS_MAX_EVAL_MEMBERS", "10")
    with pytest.raises(FormatError, match="20 members, over the limit of 10"):
        check_zip_archive(path)
    monkeypatch.delenv("FORENSICS_MAX_EVAL_MEMBERS")
    monkeypatch.setenv("FORENSICS_MAX_EVAL_BYTES", "30000")
    with pytest.raises(FormatError, match=r"expands to 39\.1 KiB, over the limit of 29\.3 KiB"):
        check_zip_archive(path)


def test_a_file_that_is_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.eval"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FormatError, match="not a complete zip archive"):
        load_transcript(path)


# ------------------------------------------------------------------ incident files


def _incident(folder: Path, transcript: str) -> Path:
    spec = yaml.safe_load(INCIDENT.read_text(encoding="utf-8"))
    spec["transcript"] = transcript
    path = folder / "incident.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_a_transcript_path_may_not_leave_the_incidents_folder(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    for escape in ("../../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(IncidentError, match=r"field `transcript`: path .* leads outside the incident.s folder"):
            load_incident(_incident(folder, escape))


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    (tmp_path / "outside.json").write_bytes((EXAMPLES / "precommit_transcript.json").read_bytes())
    (folder / "t.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(IncidentError, match="leads outside"):
        load_incident(_incident(folder, "t.json"))


def test_a_transcript_given_on_the_command_line_may_be_anywhere(tmp_path: Path) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "sub").mkdir()
    (folder / "sub" / "t.json").write_bytes((EXAMPLES / "precommit_transcript.json").read_bytes())
    assert load_incident(_incident(folder, "sub/t.json")).transcript.turns()
    path = _incident(folder, "../elsewhere.json")
    incident = load_incident(path, transcript_file=EXAMPLES / "precommit_transcript.json")
    assert incident.transcript.turns()


def test_incident_files_are_bounded_and_json_is_parsed_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = yaml.safe_load(INCIDENT.read_text(encoding="utf-8"))
    spec["transcript"] = str(EXAMPLES / "precommit_transcript.json")
    path = tmp_path / "incident.json"
    path.write_text(json.dumps(spec).replace('"transcript"', '"transcript" ', 1), encoding="utf-8")
    with pytest.raises(IncidentError, match="leads outside"):  # parsed (as JSON), then confined
        load_incident(path)
    assert is_incident_file(path)
    monkeypatch.setenv("FORENSICS_MAX_INCIDENT_BYTES", "100")
    with pytest.raises(IncidentError, match=r"an incident file is .*, over the limit of 100 bytes"):
        load_incident(path)
    assert not is_incident_file(path)  # too large to be an incident: never parsed


def test_an_incident_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "incident.yaml"
    os.mkfifo(fifo)
    with pytest.raises(IncidentError, match="is a FIFO"):
        load_incident(fifo)
