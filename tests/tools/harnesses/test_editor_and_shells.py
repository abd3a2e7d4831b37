"""The str_replace editor family and the harnesses' shell tools, in a real sandbox: an
editor call is a file operation (never a shell command), and each harness renders
results its own way."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tools.harnesses.conftest import in_module_loop

pytestmark = [pytest.mark.docker, in_module_loop]


@pytest.mark.parametrize("profile,tool", [("inspect", "text_editor"), ("swe-agent", "str_replace_editor")])
async def test_editor_commands_are_file_operations(make_session: Any, profile: str, tool: str) -> None:
    s = await make_session(profile)
    path = s.path("app.py")
    # `create` with shell metacharacters in the text: it is file content, nothing runs
    text = "print('a')\n$(touch /tmp/pwned)\nprint('c')"
    created = await s.call(tool, command="create", path=path, file_text=text)
    assert created.output == f"File created successfully at: {path}"
    assert await s.read("app.py") == text
    assert not (await s.sandbox.exec(["test", "-e", "/tmp/pwned"])).ok
    again = await s.call(tool, command="create", path=path, file_text="x")
    assert again.is_error and "Cannot overwrite files using command `create`" in again.output

    view = await s.call(tool, command="view", path=path, view_range=[2, 3])
    assert (
        view.output
        == f"Here's the result of running `cat -n` on {path}:\n     2\t$(touch /tmp/pwned)\n     3\tprint('c')\n"
    )

    replaced = await s.call(tool, command="str_replace", path=path, old_str="$(touch /tmp/pwned)", new_str="print('b')")
    assert replaced.output.startswith(
        f"The file {path} has been edited. Here's the result of running `cat -n` on a snippet"
    )
    assert await s.read("app.py") == "print('a')\nprint('b')\nprint('c')"
    none = await s.call(tool, command="str_replace", path=path, old_str="nowhere", new_str="x")
    assert none.is_error and "did not appear verbatim" in none.output
    await s.call(tool, command="insert", path=path, insert_line=1, new_str="print('a2')")
    assert await s.read("app.py") == "print('a')\nprint('a2')\nprint('b')\nprint('c')"
    twice = await s.call(tool, command="str_replace", path=path, old_str="print('a", new_str="x")
    assert twice.is_error and "Multiple occurrences of old_str" in twice.output and "[1, 2]" in twice.output

    undone = await s.call(tool, command="undo_edit", path=path)
    assert undone.output.startswith(f"Last edit to {path} undone successfully.")
    assert await s.read("app.py") == "print('a')\nprint('b')\nprint('c')"

    listing = await s.call(tool, command="view", path=s.root)
    assert listing.output.startswith(f"Here's the files and directories up to 2 levels deep in {s.root}")
    assert f"{s.root}/app.py" in listing.output
    relative = await s.call(tool, command="view", path="app.py")
    assert relative.is_error and "is not an absolute path" in relative.output


async def test_the_2025_anthropic_editor_has_no_undo(make_session: Any) -> None:
    s = await make_session("anthropic-tools")
    await s.write("f.txt", "a")
    out = await s.call("str_replace_based_edit_tool", command="undo_edit", path=s.path("f.txt"))
    assert out.is_error and "Unrecognized command undo_edit" in out.output
    older = await s.call("str_replace_editor", command="str_replace", path=s.path("f.txt"), old_str="a", new_str="b")
    assert not older.is_error
    assert not (await s.call("str_replace_editor", command="undo_edit", path=s.path("f.txt"))).is_error
    assert await s.read("f.txt") == "a"


async def test_inspect_shells_put_stderr_first_and_do_not_flag_exit_codes(make_session: Any) -> None:
    s = await make_session("inspect")
    out = await s.call("bash", command="echo out; echo err >&2; exit 3")
    assert out.output == "err\n\nout\n" and not out.is_error
    legacy = await s.call("bash", cmd="echo old-style")
    assert legacy.output == "old-style\n"
    python = await s.call("python", code="import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    assert python.output == "warn\n\n42\n"


async def test_anthropic_bash_is_a_session_with_restart(make_session: Any) -> None:
    s = await make_session("anthropic-tools")
    await s.call("bash", command="mkdir -p d && cd d")
    assert (await s.call("bash", command="pwd")).output == s.path("d")
    err = await s.call("bash", command="ls missing-file")
    assert err.is_error and "missing-file" in err.output
    assert (await s.call("bash", restart=True)).output == "tool has been restarted."
    assert (await s.call("bash", command="pwd")).output == s.root


async def test_swe_agent_and_openhands_shell_renderings(make_session: Any) -> None:
    swe = await make_session("swe-agent")
    assert (
        await swe.call("bash", command="true")
    ).output == "Your command ran successfully and did not produce any output."
    hands = await make_session("openhands")
    out = await hands.call("execute_bash", command="echo hi; false")
    assert out.output == "hi\n[The command completed with exit code 1.]" and out.is_error
    assert (await hands.call("think", thought="hmm")).provenance == "passive"
