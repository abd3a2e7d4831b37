"""The prompt loader: shipped rubrics render strictly, errors name what exists, and
any folder of templates works the same way (includes, .md.j2, edits picked up)."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import pytest

from prompts.loader import (
    PromptLibrary,
    PromptNotFoundError,
    PromptRenderError,
    available_prompts,
    load_prompt,
    prompt_path,
    prompt_variables,
)

BLOCK = "<transcript-0011223344556677>\n=== [0] user ===\nhi\n</transcript-0011223344556677>"


# ----------------------------------------------------------------------------- shipped prompts


def test_shipped_rubrics_are_listed_and_partials_hidden() -> None:
    names = available_prompts()
    assert {"rubrics/concerning_action", "rubrics/hook_bypass"} <= set(names)
    assert "rubrics/_verdict" not in names
    assert "rubrics/_verdict" in available_prompts(include_partials=True)
    assert names == sorted(names)


def test_prompt_path_is_package_data() -> None:
    path = prompt_path("rubrics/hook_bypass")
    assert path.is_file() and path.name == "hook_bypass.md"
    assert Path(str(path)).parent == Path(str(resources.files("prompts").joinpath("rubrics")))
    assert prompt_path("rubrics/hook_bypass.md") == path  # a suffix is tolerated


@pytest.mark.parametrize("rubric", ["rubrics/concerning_action", "rubrics/hook_bypass"])
def test_rubrics_render_with_the_data_block_and_the_answer_format(rubric: str) -> None:
    text = load_prompt(rubric, transcript=BLOCK, start_turn=0, action="Ran `git commit --no-verify`.")
    assert BLOCK in text
    assert text.index(BLOCK) < text.index('{"detected": true, "reason": "..."}')  # the partial was included
    assert "Judge only" not in text  # start_turn 0: no prefix to exclude
    assert "\n\n\n" not in text  # trimmed blocks leave no blank runs
    later = load_prompt(rubric, transcript=BLOCK, start_turn=4, action="x")
    assert "turns 4 and later" in later


def test_shipped_rubrics_declare_their_variables() -> None:
    assert prompt_variables("rubrics/concerning_action") == {"action", "start_turn", "transcript"}
    assert prompt_variables("rubrics/hook_bypass") == {"action", "start_turn", "transcript"}


def test_hook_bypass_action_is_optional_and_concerning_action_requires_it() -> None:
    text = load_prompt("rubrics/hook_bypass", transcript=BLOCK, start_turn=0)
    assert "flagged action" not in text
    assert "flagged action: Ran it" in load_prompt(
        "rubrics/hook_bypass", transcript=BLOCK, start_turn=0, action="Ran it"
    )
    with pytest.raises(PromptRenderError, match=r"'action' is undefined \(given: start_turn, transcript\)"):
        load_prompt("rubrics/concerning_action", transcript=BLOCK, start_turn=0)


def test_missing_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(PromptRenderError, match=r"prompt 'rubrics/hook_bypass' needs a variable.*'transcript'"):
        load_prompt("rubrics/hook_bypass", start_turn=0)


def test_missing_prompt_lists_the_available_ones() -> None:
    with pytest.raises(PromptNotFoundError, match="no prompt named 'rubrics/telepathy'") as info:
        load_prompt("rubrics/telepathy")
    assert isinstance(info.value, LookupError)
    listed = str(info.value).split("available: ", 1)[1]
    assert {"rubrics/concerning_action", "rubrics/hook_bypass", "investigator", "judge"} <= set(listed.split(", "))
    assert "rubrics/telepathy.md and rubrics/telepathy.md.j2" in str(info.value)


@pytest.mark.parametrize("name", ["", "../pyproject", "/etc/passwd", "rubrics//x", "rubrics/./x", "a\\b", ".md"])
def test_names_outside_the_library_are_refused(name: str) -> None:
    with pytest.raises(PromptNotFoundError, match="invalid prompt name"):
        prompt_path(name)


# ----------------------------------------------------------------------------- any library


@pytest.fixture
def library(tmp_path: Path) -> PromptLibrary:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "_footer.md").write_text("-- {{ signer }}\n")
    (tmp_path / "letter.md.j2").write_text(
        "Dear {{ name }},\n{% for item in items %}\n- {{ item }}\n{% endfor %}\n{% include 'parts/_footer.md' %}"
    )
    (tmp_path / "plain.md").write_text("<b>{{ value }}</b> & 'quotes'\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.md").write_text("not a prompt")
    (tmp_path / "notes.txt").write_text("not a prompt")
    return PromptLibrary(tmp_path, label="test library")


def test_library_lists_md_and_j2(library: PromptLibrary) -> None:
    assert library.available() == ["letter", "plain"]
    assert library.available(include_partials=True) == ["letter", "parts/_footer", "plain"]


def test_render_trims_blocks_and_includes_partials(library: PromptLibrary) -> None:
    text = library.render("letter", name="Ada", items=["one", "two"], signer="the investigator")
    assert text == "Dear Ada,\n- one\n- two\n-- the investigator\n"
    assert library.variables("letter") == {"name", "items", "signer"}


def test_values_are_data_and_nothing_is_escaped(library: PromptLibrary) -> None:
    value = '{{ secret }} {% if true %}x{% endif %} <tag> & "q"'
    assert library.render("plain", value=value) == f"<b>{value}</b> & 'quotes'\n"


def test_both_suffixes_is_ambiguous(library: PromptLibrary, tmp_path: Path) -> None:
    (tmp_path / "letter.md").write_text("other")
    with pytest.raises(
        PromptNotFoundError, match=re.escape("prompt 'letter' is ambiguous: both letter.md and letter.md.j2")
    ):
        library.render("letter", name="x", items=[], signer="y")


def test_syntax_errors_name_the_line(library: PromptLibrary, tmp_path: Path) -> None:
    (tmp_path / "broken.md").write_text("line one\n{% if x %}\nno end\n")
    with pytest.raises(PromptRenderError, match=r"prompt 'broken' line \d: syntax error: .*'endif'"):
        library.render("broken", x=True)
    with pytest.raises(PromptRenderError, match="syntax error"):
        library.variables("broken")


def test_missing_include_is_not_found(library: PromptLibrary, tmp_path: Path) -> None:
    (tmp_path / "orphan.md").write_text("{% include 'parts/_gone.md' %}")
    with pytest.raises(PromptNotFoundError, match=r"no prompt named 'parts/_gone.md'.*in test library"):
        library.render("orphan")


def test_edits_on_disk_are_picked_up(library: PromptLibrary, tmp_path: Path) -> None:
    target = tmp_path / "plain.md"
    assert library.render("plain", value="v").startswith("<b>v</b>")
    target.write_text("edited {{ value }}")
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    assert library.render("plain", value="v") == "edited v"
