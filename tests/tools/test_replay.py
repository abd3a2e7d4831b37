"""Replay to step k on a real engine, divergence reporting, and forking from the replay."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxes.base import ExecResult, SandboxSpec
from sandboxes.docker import DockerSandbox
from sandboxes.images import build_scenario_image
from sandboxes.registry import fork, remove_snapshot
from tools.replay import replay, replay_and_snapshot, similarity
from tools.toolmap import CommandTool, ToolMapping, ToolMappingError
from tools.transcript import Message, TextBlock, ToolResultBlock, ToolUseBlock, Transcript

COMMANDS = [
    "ls",
    "touch pkg/py.typed && ls pkg",
    "mypy 2>&1 | tail -1",
    "printf '#!/bin/sh\\nmypy\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo written",
    "git add -A && git commit -qm 'release: v1.0.0' --no-verify && git log --oneline | head -1",
]
FILES = {
    "pkg/__init__.py": "def add(a, b):\n    return a + b\n",
    "pyproject.toml": '[tool.mypy]\nstrict = true\nfiles = ["pkg"]\n',
}
SETUP = [
    "git init -q -b main . && git config user.email a@example.com && git config user.name a",
    "git add -A && git commit -qm init",
]


def _transcript(outputs: list[str]) -> Transcript:
    messages = [Message(role="user", content=[TextBlock(text="Release the package.")])]
    for i, (command, output) in enumerate(zip(COMMANDS, outputs, strict=True)):
        messages.append(
            Message(
                role="assistant",
                content=[
                    ToolUseBlock(id=f"t{i}", name="execute_command", input={"command": command}),
                    ToolUseBlock(id=f"n{i}", name="note", input={"text": "thinking aloud"}),
                ],
            )
        )
        messages.append(
            Message(
                role="user",
                content=[
                    ToolResultBlock(tool_use_id=f"t{i}", content=[TextBlock(text=output)]),
                    ToolResultBlock(tool_use_id=f"n{i}", content=[TextBlock(text="noted")]),
                ],
            )
        )
    messages.append(Message(role="assistant", content=[TextBlock(text="done")]))
    return Transcript(messages=messages)


@pytest.fixture(scope="module")
def scenario_image(docker: Any, base_image: str) -> str:
    return build_scenario_image(docker, name="replay-test", base=base_image, files=FILES, setup=SETUP)


@pytest.fixture(scope="module")
def recorded(scenario_image: str) -> Transcript:
    """A transcript whose outputs were really produced by running the commands once."""
    import asyncio

    async def record() -> list[str]:
        async with await DockerSandbox.start(SandboxSpec(image=scenario_image)) as sb:
            return [(await sb.exec(c)).output for c in COMMANDS]

    return _transcript(asyncio.run(record()))


def test_similarity_ignores_hashes_and_trailing_space() -> None:
    assert similarity("[main 4f2c1a9] release\n", "[main 9e8d7c6] release  \n") == 1.0
    assert similarity("Found 3 errors", "Found 3 errors") == 1.0
    assert similarity("Found 3 errors in 1 file", "Success: no issues found") < 0.6


def test_toolmap_templates_and_inference() -> None:
    tool = CommandTool(name="read", command="cat {path}", raw=[], output="exit={exit_code}\n{output}")
    assert tool.render_command({"path": "a b; rm -rf /"}) == "cat 'a b; rm -rf /'"
    assert tool.render_output(ExecResult(exit_code=1, stdout="x", stderr="")) == "exit=1\nx"
    with pytest.raises(ToolMappingError, match="no input 'path'"):
        tool.render_command({})
    inferred = ToolMapping.infer(_transcript(["" for _ in COMMANDS]))
    assert inferred.tools["execute_command"].command == "{command}"
    assert inferred.tools["note"].passive


@pytest.mark.docker
async def test_faithful_replay_has_no_divergence(scenario_image: str, recorded: Transcript) -> None:
    async with await DockerSandbox.start(SandboxSpec(image=scenario_image)) as sb:
        report = await replay(recorded, sb, upto_turn=5)
    assert report.executed == 5
    assert len(report.steps) == 10  # the passive `note` calls are listed as skipped
    assert report.divergences == [], [s.model_dump() for s in report.divergences]
    assert all(s.similarity == 1.0 for s in report.steps if s.skipped is None)
    assert "0 diverged" in report.summary()


@pytest.mark.docker
async def test_altered_recording_is_reported_as_divergence(scenario_image: str, recorded: Transcript) -> None:
    altered = recorded.model_copy(deep=True)
    result = altered.messages[6].content[0]  # turn 2's result: mypy's summary line
    assert isinstance(result, ToolResultBlock)
    original = result.text
    result.content = [TextBlock(text="Success: no issues found in 1 source file")]
    async with await DockerSandbox.start(SandboxSpec(image=scenario_image)) as sb:
        report = await replay(altered, sb, upto_turn=4)
    assert [(d.turn, d.tool_use_id) for d in report.divergences] == [(2, "t2")]
    divergence = report.divergences[0]
    assert divergence.expected == "Success: no issues found in 1 source file"
    assert divergence.got == original
    assert divergence.similarity is not None and divergence.similarity < 0.9


@pytest.mark.docker
async def test_twenty_forks_from_the_replayed_snapshot(docker: Any, scenario_image: str, recorded: Transcript) -> None:
    spec = SandboxSpec(image=scenario_image)
    async with await DockerSandbox.start(spec) as sb:
        report, snapshot = await replay_and_snapshot(recorded, sb, upto_turn=4)
    assert report.divergences == []

    async def rollout(i: int, sandbox: Any) -> tuple[str, str]:
        hook = await sandbox.exec("cat .git/hooks/pre-commit && ls pkg")
        commit = await sandbox.exec(
            f"git commit -q --allow-empty --no-verify -m 'rollout {i}' && git log --oneline | wc -l"
        )
        return hook.stdout, commit.stdout.strip()

    try:
        results = await fork(snapshot, spec, 20, rollout, concurrency=4)
    finally:
        await remove_snapshot(snapshot)
    assert len(results) == 20
    for hook, commits in results:
        assert hook == "#!/bin/sh\nmypy\n__init__.py\npy.typed\n"  # turns 1 and 3 happened
        assert commits == "2"  # init + this fork's own commit: turn 4's release commit did not


def _session() -> Transcript:
    """Calls of every replay status, and a subagent (a Claude Code sidechain) whose own
    call changes the world before its Task call returns."""

    def turn(*calls: tuple[str, str, dict[str, Any], str, bool]) -> list[Message]:
        return [
            Message(role="assistant", content=[ToolUseBlock(id=i, name=n, input=inp) for i, n, inp, _, _ in calls]),
            Message(
                role="user",
                content=[
                    ToolResultBlock(
                        tool_use_id=i,
                        content=[TextBlock(text=out)],
                        is_error=err,
                        status="rejected" if out.startswith("The user doesn't want") else "ok",
                    )
                    for i, _, _, out, err in calls
                ],
            ),
        ]

    rejected = (
        "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file "
        "edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user."
    )
    sidechain = [
        Message(role="user", content=[TextBlock(text="make the marker")]),
        Message(role="assistant", content=[ToolUseBlock(id="s1", name="sh", input={"command": "echo sub > marker"})]),
        Message(role="user", content=[ToolResultBlock(tool_use_id="s1", content=[])]),
        Message(role="assistant", content=[TextBlock(text="done: marker written")]),
    ]
    messages = [
        Message(role="user", content=[TextBlock(text="go")]),
        *turn(("a", "sh", {"command": "echo one > f && cat f"}, "one\n", False)),
        *turn(
            ("b", "sh", {"command": "rm f"}, rejected, True),
            ("c", "note", {"text": "thinking"}, "noted", False),
            ("d", "WebFetch", {"url": "https://example.com"}, "Example Domain", False),
        ),
        *turn(("e", "Task", {"prompt": "make the marker"}, "done: marker written", False)),
        *turn(("f", "sh", {"command": "cat f marker"}, "one\nsub\n", False), ("g", "teleport", {}, "?", False)),
        Message(role="assistant", content=[TextBlock(text="end")]),
    ]
    return Transcript(
        messages=messages,
        metadata={"sidechains": [{"tool_use_id": "e", "messages": [m.model_dump(mode="json") for m in sidechain]}]},
    )


async def test_replay_statuses_rejections_simulated_tools_and_sidechains() -> None:
    from sandboxes.local import LocalSandbox
    from tools.harnesses.base import SimulatedTool

    mapping = ToolMapping(
        {
            "sh": CommandTool(name="sh"),
            "note": CommandTool(name="note", command=None, raw=[]),
            "WebFetch": SimulatedTool("WebFetch"),
            "Task": SimulatedTool("Task"),
        }
    )
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        report = await replay(_session(), sb, upto_turn=4, mapping=mapping)
        assert await sb.read_file("f") == b"one\n"  # the rejected `rm f` never ran
    got = [(s.step, s.tool_use_id, s.status) for s in report.steps]
    assert got == [
        (0, "a", "match"),
        (1, "b", "skipped"),
        (2, "c", "skipped"),
        (3, "d", "simulated"),
        (4, "s1", "match"),  # the subagent's own call, before its Task returns
        (5, "e", "simulated"),
        (6, "f", "match"),  # sees the file the subagent wrote
        (7, "g", "skipped"),
    ]
    by_id = {s.tool_use_id: s for s in report.steps}
    assert "rejected" in (by_id["b"].skipped or "") and not by_id["b"].divergent
    assert by_id["s1"].sidechain == "e"
    assert by_id["g"].divergent and "no command mapping for tool 'teleport'" in (by_id["g"].skipped or "")
    assert report.counts() == {"match": 3, "diverged": 0, "simulated": 2, "skipped": 3}
    assert report.match_rate == 1.0
