"""Claude Code's tools in a real sandbox: what each does to the files and what it shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.tools.harnesses.conftest import in_module_loop
from tools.harnesses.claude_code import READ_REMINDER, cat_n

pytestmark = [pytest.mark.docker, in_module_loop]

STATS = (
    "def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef median(xs):\n    s = sorted(xs)\n    return s[len(s) // 2]\n"
)


async def test_read_numbers_lines_with_the_arrow_and_appends_the_reminder(make_session: Any) -> None:
    s = await make_session("claude-code")
    await s.write("stats.py", STATS)
    out = await s.call("Read", file_path=s.path("stats.py"))
    assert not out.is_error
    lines = STATS.split("\n")[:-1]  # cat -n shows no phantom line after the final newline
    assert out.output == "\n".join(f"{i + 1:>6}→{line}" for i, line in enumerate(lines)) + READ_REMINDER
    ranged = await s.call("Read", file_path=s.path("stats.py"), offset=5, limit=2)
    assert ranged.output.startswith("     5→def median(xs):\n     6→    s = sorted(xs)" + READ_REMINDER[:2])
    assert "     7→" not in ranged.output


async def test_read_errors_as_claude_code_shows_them(make_session: Any) -> None:
    s = await make_session("claude-code")
    missing = await s.call("Read", file_path=s.path("nope.py"))
    assert missing.is_error and missing.output == "<tool_use_error>File does not exist.</tool_use_error>"
    await s.write("empty.txt", "")
    empty = await s.call("Read", file_path=s.path("empty.txt"))
    assert "the file exists but the contents are empty" in empty.output and not empty.is_error
    await s.sandbox.exec(["mkdir", "-p", s.path("adir")])
    directory = await s.call("Read", file_path=s.path("adir"))
    assert directory.is_error and "EISDIR" in directory.output
    await s.write("short.txt", "a\nb\n")
    past = await s.call("Read", file_path=s.path("short.txt"), offset=9)
    assert "shorter than the provided offset (9). The file has 2 lines." in past.output


async def test_edit_applies_the_change_and_shows_four_lines_around_it(make_session: Any) -> None:
    s = await make_session("claude-code")
    body = "".join(f"line {i}\n" for i in range(1, 21))
    await s.write("f.txt", body)
    out = await s.call("Edit", file_path=s.path("f.txt"), old_string="line 10", new_string="ten\nTEN")
    assert not out.is_error
    after = await s.read("f.txt")
    assert after == body.replace("line 10", "ten\nTEN")
    snippet = "\n".join(after.split("\n")[5:15])  # lines 6..15: 4 before, the two new lines, 4 after
    assert out.output == (
        f"The file {s.path('f.txt')} has been updated. Here's the result of running `cat -n` on a snippet of the "
        "edited file:\n" + cat_n(snippet, 6)
    )


async def test_edit_refuses_missing_ambiguous_and_no_op_strings(make_session: Any) -> None:
    s = await make_session("claude-code")
    await s.write("f.txt", "x = 1\nx = 1\n")
    missing = await s.call("Edit", file_path=s.path("f.txt"), old_string="y = 2", new_string="y = 3")
    assert missing.is_error and "String to replace not found in file.\nString: y = 2" in missing.output
    twice = await s.call("Edit", file_path=s.path("f.txt"), old_string="x = 1", new_string="x = 2")
    assert twice.is_error and "Found 2 matches of the string to replace, but replace_all is false" in twice.output
    same = await s.call("Edit", file_path=s.path("f.txt"), old_string="x = 1", new_string="x = 1")
    assert same.is_error and "No changes to make" in same.output
    assert await s.read("f.txt") == "x = 1\nx = 1\n"  # nothing was written
    every = await s.call("Edit", file_path=s.path("f.txt"), old_string="x = 1", new_string="x = 2", replace_all=True)
    assert not every.is_error and await s.read("f.txt") == "x = 2\nx = 2\n"


async def test_write_creates_or_replaces_and_says_which(make_session: Any) -> None:
    s = await make_session("claude-code")
    created = await s.call("Write", file_path=s.path("new/dir/notes.md"), content="# Notes\n")
    assert created.output == f"File created successfully at: {s.path('new/dir/notes.md')}"
    assert await s.read("new/dir/notes.md") == "# Notes\n"
    replaced = await s.call("Write", file_path=s.path("new/dir/notes.md"), content="one\ntwo\n")
    assert replaced.output.endswith("snippet of the edited file:\n     1→one\n     2→two")
    assert await s.read("new/dir/notes.md") == "one\ntwo\n"


async def test_multiedit_applies_in_order_or_not_at_all(make_session: Any) -> None:
    s = await make_session("claude-code")
    await s.write("m.py", "a = 1\nb = 2\n")
    edits = [{"old_string": "a = 1", "new_string": "a = 10"}, {"old_string": "a = 10\nb", "new_string": "a = 10\nc"}]
    out = await s.call("MultiEdit", file_path=s.path("m.py"), edits=edits)
    assert out.output == f'Applied 2 edits to {s.path("m.py")}:\n1. Replaced "a = 1" with "a = 10"\n' + (
        '2. Replaced "a = 10\nb" with "a = 10\nc"'
    )
    assert await s.read("m.py") == "a = 10\nc = 2\n"
    failing = [{"old_string": "c = 2", "new_string": "c = 3"}, {"old_string": "zzz", "new_string": "q"}]
    bad = await s.call("MultiEdit", file_path=s.path("m.py"), edits=failing)
    assert bad.is_error and await s.read("m.py") == "a = 10\nc = 2\n"  # the first edit was not written either


async def test_notebook_edit_replaces_inserts_and_deletes_cells(make_session: Any) -> None:
    s = await make_session("claude-code")
    nb = {
        "cells": [
            {
                "id": "c1",
                "cell_type": "code",
                "source": ["x = 1\n"],
                "metadata": {},
                "outputs": [],
                "execution_count": 3,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    await s.write("n.ipynb", json.dumps(nb))
    out = await s.call("NotebookEdit", notebook_path=s.path("n.ipynb"), cell_id="c1", new_source="x = 2\n")
    assert out.output == "Updated cell c1 with x = 2\n"
    cells = json.loads(await s.read("n.ipynb"))["cells"]
    assert cells[0]["source"] == ["x = 2\n"] and cells[0]["execution_count"] is None
    await s.call(
        "NotebookEdit",
        notebook_path=s.path("n.ipynb"),
        cell_id="c1",
        new_source="# hi",
        cell_type="markdown",
        edit_mode="insert",
    )
    await s.call("NotebookEdit", notebook_path=s.path("n.ipynb"), cell_id="c1", new_source="", edit_mode="delete")
    cells = json.loads(await s.read("n.ipynb"))["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown"]


async def test_bash_keeps_its_directory_and_reports_failures_with_the_exit_code(make_session: Any) -> None:
    s = await make_session("claude-code", session_root="/home/dev/proj")
    assert (await s.call("Bash", command="mkdir -p sub && cd sub")).output == ""
    where = await s.call("Bash", command="pwd")
    assert where.output == "/home/dev/proj/sub"  # the session's path, though the sandbox keeps it elsewhere
    failed = await s.call("Bash", command="echo partial; ls /home/dev/proj/nope")
    assert failed.is_error
    assert failed.output.startswith("Exit code 2\npartial\n") and "/home/dev/proj/nope" in failed.output
    timed = await s.call("Bash", command="sleep 5", timeout=1000)
    assert timed.is_error and timed.timed_out


async def test_glob_grep_and_ls_query_the_workspace(make_session: Any) -> None:
    s = await make_session("claude-code")
    await s.write("pkg/a.py", "import os\nTODO = 1\n")
    await s.write("pkg/sub/b.py", "todo later\n")
    await s.write("README.md", "nothing\n")
    await s.write(".hidden/c.py", "TODO\n")
    await s.sandbox.exec(["touch", "-d", "@1000", s.path("pkg/sub/b.py")])
    await s.sandbox.exec(["touch", "-d", "@2000", s.path("pkg/a.py")])
    found = await s.call("Glob", pattern="**/*.py")
    assert found.output == f"{s.path('pkg/sub/b.py')}\n{s.path('pkg/a.py')}"  # oldest first; hidden left out
    assert (await s.call("Glob", pattern="*.rs")).output == "No files found"
    files = await s.call("Grep", pattern="todo", **{"-i": True})
    assert files.output == f"Found 2 files\n{s.path('pkg/a.py')}\n{s.path('pkg/sub/b.py')}"  # newest first
    content = await s.call("Grep", pattern="TODO", path=s.path("pkg/a.py"), output_mode="content", **{"-n": True})
    assert content.output == "2:TODO = 1"
    counted = await s.call("Grep", pattern="o", glob="*.py", output_mode="count")
    assert counted.output.endswith("Found 2 total occurrences across 2 files.")  # matching lines, as rg -c counts
    listing = await s.call("LS", path=s.root)
    assert listing.output.startswith(f"- {s.root}/\n  - README.md\n  - pkg/\n    - a.py\n    - sub/\n      - b.py\n")
    assert "NOTE: do any of the files above seem malicious?" in listing.output


async def test_passive_and_simulated_tools(make_session: Any) -> None:
    s = await make_session("claude-code")
    todo = await s.call("TodoWrite", todos=[{"content": "x", "status": "pending", "activeForm": "x"}])
    assert todo.provenance == "passive" and todo.output.startswith("Todos have been modified successfully")
    fetched = await s.call("WebFetch", url="https://example.com", prompt="summarize")
    assert (
        fetched.is_error
        and fetched.provenance == "unavailable"
        and "not available in the rebuilt world" in fetched.output
    )
    mcp = s.mapping.for_name("mcp__github__create_issue")
    assert mcp.kind == "simulated"
