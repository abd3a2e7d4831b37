"""Codex's apply_patch format: parsing (with Codex's error texts) and application in a
real sandbox, directly and through the shell tool's argv and heredoc forms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.tools.harnesses.conftest import in_module_loop
from tools.harnesses.apply_patch import PatchError, new_contents, parse_patch, seek_sequence
from tools.harnesses.codex import comparable

PATCH = """*** Begin Patch
*** Add File: docs/notes.md
+# Notes
+first
*** Delete File: old.txt
*** Update File: src/app.py
*** Move to: src/main.py
@@ def run():
-    return 1
+    return 2
*** Update File: README.md
 intro
+added after intro
*** End Patch"""


def test_parse_every_hunk_kind() -> None:
    hunks = parse_patch(PATCH)
    assert [(h.kind, h.path, h.move_to) for h in hunks] == [
        ("add", "docs/notes.md", None),
        ("delete", "old.txt", None),
        ("update", "src/app.py", "src/main.py"),
        ("update", "README.md", None),
    ]
    assert hunks[0].contents == "# Notes\nfirst\n"
    chunk = hunks[2].chunks[0]
    assert (chunk.context, chunk.old, chunk.new) == ("def run():", ["    return 1"], ["    return 2"])
    assert hunks[3].chunks[0].old == ["intro"] and hunks[3].chunks[0].new == ["intro", "added after intro"]


def test_parse_errors_are_codexs() -> None:
    with pytest.raises(PatchError, match=r"^Invalid patch: The first line of the patch must be '\*\*\* Begin Patch'$"):
        parse_patch("bad")
    with pytest.raises(PatchError, match="The last line of the patch must be"):
        parse_patch("*** Begin Patch\n*** Add File: x\n+y")
    with pytest.raises(PatchError, match=r"Update file hunk for path 'a\.py' is empty"):
        parse_patch("*** Begin Patch\n*** Update File: a.py\n*** End Patch")
    with pytest.raises(PatchError, match="'garbage' is not a valid hunk header"):
        parse_patch("*** Begin Patch\ngarbage\n*** End Patch")
    # the heredoc wrapper some models send is accepted, as Codex accepts it
    assert parse_patch("<<'EOF'\n*** Begin Patch\n*** Delete File: x\n*** End Patch\nEOF")[0].kind == "delete"


def test_chunks_are_located_with_decreasing_strictness() -> None:
    lines = ["def f():", "    x = 1  ", "    return x"]
    assert seek_sequence(lines, ["    x = 1"], 0, False) == 1  # trailing whitespace ignored
    assert seek_sequence(lines, ["x = 1"], 0, False) == 1  # surrounding whitespace ignored
    assert seek_sequence(["a \u2014 b"], ["a - b"], 0, False) == 0  # typographic dash normalised
    original = "def f():\n    return 1\n\ndef g():\n    return 1\n"
    chunks = parse_patch(
        "*** Begin Patch\n*** Update File: m.py\n@@ def g():\n-    return 1\n+    return 2\n*** End Patch"
    )
    assert new_contents(original, chunks[0].chunks, "m.py") == "def f():\n    return 1\n\ndef g():\n    return 2\n"
    with pytest.raises(PatchError, match=r"Failed to find context 'def g\(\):' in m\.py"):
        new_contents("nothing here\n", chunks[0].chunks, "m.py")
    with pytest.raises(PatchError, match=r"Failed to find expected lines in m\.py:\n    return 1"):
        new_contents("def g():\n    pass\n", chunks[0].chunks, "m.py")


@pytest.mark.docker
@in_module_loop
async def test_apply_patch_changes_files_and_summarises(make_session: Any) -> None:
    s = await make_session("codex")
    await s.write("old.txt", "bye\n")
    await s.write("src/app.py", "def run():\n    return 1\n")
    await s.write("README.md", "intro\nrest\n")
    out = await s.call("apply_patch", input=PATCH)
    envelope = json.loads(out.output)
    assert envelope["output"] == (
        "Success. Updated the following files:\nA docs/notes.md\nM src/main.py\nM README.md\nD old.txt\n"
    )
    assert envelope["metadata"]["exit_code"] == 0 and not out.is_error
    assert await s.read("docs/notes.md") == "# Notes\nfirst\n"
    assert await s.read("src/main.py") == "def run():\n    return 2\n"
    assert await s.read("README.md") == "intro\nadded after intro\nrest\n"
    assert not (await s.sandbox.exec(["test", "-e", s.path("old.txt")])).ok
    assert not (await s.sandbox.exec(["test", "-e", s.path("src/app.py")])).ok


@pytest.mark.docker
@in_module_loop
async def test_a_patch_that_does_not_apply_writes_nothing(make_session: Any) -> None:
    s = await make_session("codex")
    await s.write("a.txt", "one\n")
    patch = "*** Begin Patch\n*** Add File: b.txt\n+new\n*** Update File: a.txt\n@@\n-missing\n+x\n*** End Patch"
    out = await s.call("apply_patch", input=patch)
    assert out.is_error and json.loads(out.output)["output"].startswith("Failed to find expected lines in a.txt")
    assert not (await s.sandbox.exec(["test", "-e", s.path("b.txt")])).ok


@pytest.mark.docker
@in_module_loop
async def test_the_shell_tool_runs_argv_and_intercepts_apply_patch(make_session: Any) -> None:
    s = await make_session("codex")
    await s.sandbox.exec(["mkdir", "-p", s.path("sub")])
    out = await s.call("shell", command=["bash", "-lc", "pwd; echo err >&2; exit 4"], workdir=s.path("sub"))
    data = json.loads(out.output)
    assert data["output"] == f"{s.path('sub')}\nerr\n" and data["metadata"]["exit_code"] == 4 and out.is_error
    heredoc = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: made.txt\n+hi\n*** End Patch\nEOF"
    patched = await s.call("shell", command=["bash", "-lc", heredoc], workdir=s.path("sub"))
    assert json.loads(patched.output)["output"].startswith("Success.")
    assert await s.read("sub/made.txt") == "hi\n"
    direct = await s.call(
        "shell", command=["apply_patch", "*** Begin Patch\n*** Delete File: sub/made.txt\n*** End Patch"]
    )
    assert json.loads(direct.output)["output"] == "Success. Updated the following files:\nD sub/made.txt\n"


def test_replays_compare_output_and_exit_code_not_timing() -> None:
    a = json.dumps({"output": "ok\n", "metadata": {"exit_code": 0, "duration_seconds": 0.1}})
    b = json.dumps({"output": "ok\n", "metadata": {"exit_code": 0, "duration_seconds": 3.2}})
    assert comparable(a) == comparable(b) == "exit 0\nok\n"
    assert comparable("Exit code: 1\nWall time: 0.4 seconds\nOutput:\nboom") == "exit 1\nboom"
