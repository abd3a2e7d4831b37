"""Choosing a harness profile, its tool schemas, and the reconstruction note."""

from __future__ import annotations

import jsonschema
import pytest

from tests.conftest import EXAMPLES
from tools.formats import load_transcript
from tools.harnesses import (
    PROFILES,
    RECONSTRUCTION_KEY,
    HarnessError,
    choose_profile,
    detect_profile,
    get_profile,
    reconstruct_tools,
    session_workdir,
)
from tools.transcript import Message, ToolSpec, ToolUseBlock, Transcript


def _calls(*names: str, **metadata: object) -> Transcript:
    return Transcript(
        messages=[
            Message(role="assistant", content=[ToolUseBlock(id=f"t{i}", name=n, input={}) for i, n in enumerate(names)])
        ],
        metadata=dict(metadata),
    )


@pytest.mark.parametrize(
    ("transcript", "expected"),
    [
        (_calls("Bash", source_format="claude-code"), "claude-code"),
        (_calls("Bash", "Read", "Edit"), "claude-code"),
        (_calls("bash", "text_editor"), "inspect"),
        (_calls("bash", source_format="inspect"), "inspect"),
        (_calls("bash", "str_replace_based_edit_tool"), "anthropic-tools"),
        (_calls("bash", harness="mini-swe-agent"), "mini-swe-agent"),
        (_calls("shell", "apply_patch"), "codex"),
        (_calls("bash", "str_replace_editor", "submit"), "swe-agent"),
        (_calls("execute_bash", "str_replace_editor", "finish"), "openhands"),
        (_calls("whatever", harness="codex"), "codex"),
    ],
)
def test_the_profile_is_detected_from_format_metadata_and_tools(transcript: Transcript, expected: str) -> None:
    found = detect_profile(transcript)
    assert found is not None and found.name == expected


def test_an_incident_can_name_its_harness_and_unknown_names_are_errors() -> None:
    assert choose_profile(_calls("Bash", "Read"), "inspect").name == "inspect"  # type: ignore[union-attr]
    assert get_profile("claude_code").name == "claude-code"  # aliases
    with pytest.raises(HarnessError, match="unknown harness 'vim'; known harnesses: claude-code"):
        get_profile("vim")
    assert detect_profile(_calls("frobnicate")) is None


def test_every_profile_binds_every_tool_it_documents_and_its_schemas_are_valid() -> None:
    for profile in PROFILES.values():
        specs = profile.tool_specs()
        assert specs, profile.name
        bindings = profile.bindings()
        for spec in specs:
            jsonschema.Draft202012Validator.check_schema(spec.input_schema)
            assert spec.name in bindings, f"{profile.name} documents {spec.name} but does not bind it"
        # file tools are file operations, never shell commands
        for binding in bindings.values():
            if "edit" in binding.name.lower() or binding.name in {"Write", "Read", "apply_patch"}:
                assert binding.kind in {"file", "passive", "simulated"}, (profile.name, binding.name)


def test_claude_code_logs_get_the_profiles_schemas_and_a_note() -> None:
    transcript = load_transcript(EXAMPLES / "claude-code-session" / "session.jsonl")
    assert transcript.metadata["tools_inferred"] is True
    assert all(t.description == "" for t in transcript.tools)
    notes = reconstruct_tools(transcript, get_profile("claude-code"))
    assert len(notes) == 2 and "no tool definitions" in notes[0] and "system prompt" in notes[1]
    by_name = {t.name: t for t in transcript.tools}
    assert {"Bash", "Read", "Edit", "Write", "TodoWrite", "Glob", "Task"} <= set(by_name)
    assert by_name["Edit"].input_schema["required"] == ["file_path", "old_string", "new_string"]
    assert [t.name for t in transcript.tools][:5] == ["Read", "Bash", "Edit", "TodoWrite", "Write"]  # used ones first
    assert transcript.metadata[RECONSTRUCTION_KEY] == notes
    assert reconstruct_tools(transcript, get_profile("claude-code")) == notes[1:]  # schemas are no longer missing
    assert transcript.metadata[RECONSTRUCTION_KEY] == notes  # not duplicated
    assert session_workdir(transcript) == "/home/dev/tally"


def test_a_log_with_its_own_tool_definitions_is_left_alone() -> None:
    transcript = _calls("bash", source_format="inspect")
    transcript.tools = [ToolSpec(name="bash", description="the eval's own bash")]
    assert reconstruct_tools(transcript, get_profile("inspect")) == []
    assert transcript.tools[0].description == "the eval's own bash"
    assert RECONSTRUCTION_KEY not in transcript.metadata


def test_open_tool_sets_keep_an_applications_own_shell_tools() -> None:
    """An API application using Anthropic's editor also defines its own tools; those that
    carry a shell string run it, while a closed harness (Claude Code) simulates unknown ones."""
    transcript = _calls("str_replace_based_edit_tool")
    transcript.messages[0].content.append(ToolUseBlock(id="x", name="execute_command", input={"command": "ls"}))
    open_mapping = get_profile("anthropic-tools").mapping(transcript=transcript)
    assert open_mapping.for_name("execute_command").kind == "command"
    assert open_mapping.for_name("str_replace_based_edit_tool").kind == "file"
    closed = get_profile("claude-code").mapping(transcript=transcript)
    assert closed.for_name("execute_command").kind == "simulated"


def test_generic_api_harness_names_do_not_pick_a_profile() -> None:
    """The Anthropic and OpenAI importers record `anthropic` / `openai-chat`: applications
    with their own tools, not a harness; the tools decide."""
    assert detect_profile(_calls("execute_command", harness="anthropic")) is None
    assert detect_profile(_calls("execute_command", harness="openai-chat")) is None
