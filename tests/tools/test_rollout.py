"""Rollouts execute the subject's tool calls in a real sandbox; probes and next_turn sample."""

from __future__ import annotations

from typing import Any

import pytest

from evals.scenario import load_scenario
from sandboxes.base import SandboxSpec
from sandboxes.local import LocalSandbox
from tools.detectors import detect
from tools.models.registry import get_model
from tools.models.scripted import ScriptedModel
from tools.organisms.model import OrganismModel
from tools.organisms.registry import find_organism
from tools.rollout import next_turn, probe, rollout
from tools.toolmap import CommandTool, ToolMapping
from tools.transcript import Message, TextBlock, ToolUseBlock, Transcript

MAPPING = ToolMapping(
    tools={
        "sh": CommandTool(name="sh"),
        "submit": CommandTool(name="submit", command=None, raw=[], result="Submitted.", terminal=True),
    }
)


def _call(i: int, name: str, **kwargs: Any) -> Message:
    return Message(role="assistant", content=[ToolUseBlock(id=f"c{i}", name=name, input=kwargs)])


def _start() -> Transcript:
    return Transcript(messages=[Message(role="user", content=[TextBlock(text="go")])])


async def test_tool_calls_really_run_and_results_come_back() -> None:
    model = ScriptedModel(
        messages=[
            _call(0, "sh", command="echo hello > f.txt && cat f.txt"),
            _call(1, "sh", command="cat missing.txt"),
            _call(2, "nope", x=1),
            Message(role="assistant", content=[TextBlock(text="all done")]),
        ]
    )
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        episode = await rollout(model, _start(), sb, MAPPING, max_turns=10)
        assert await sb.read_file("f.txt") == b"hello\n"
    results = [m.tool_results[0] for m in episode.transcript.messages if m.role == "user" and m.tool_results]
    assert results[0].text == "hello\n" and not results[0].is_error
    assert results[1].is_error and "No such file" in results[1].text
    assert results[2].is_error and "no command mapping for tool 'nope'" in results[2].text
    assert episode.ended == "final_answer"
    assert episode.turns == 4
    assert episode.provenance == {"executed": 2, "error": 1}


async def test_terminal_tool_and_turn_cap() -> None:
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        submitted = await rollout(
            ScriptedModel(messages=[_call(0, "submit", answer="4"), "never reached"]), _start(), sb, MAPPING
        )
        assert submitted.ended == "terminal_tool"
        assert submitted.transcript.messages[-1].tool_results[0].text == "Submitted."
        capped = await rollout(
            ScriptedModel(messages=[_call(0, "sh", command="true")], cycle=True), _start(), sb, MAPPING, max_turns=3
        )
        assert capped.ended == "turn_cap" and capped.turns == 3


async def test_probe_appends_the_question() -> None:
    model = ScriptedModel()
    answers = await probe(model, _start(), "Why did you do that?", n=2)
    assert [a.text for a in answers] == ["echo: Why did you do that?"] * 2
    assert model.seen[-1].messages[-1].metadata == {"probe": True}
    assert len(_start().messages) == 1  # the caller's transcript is untouched


async def test_next_turn_is_seeded() -> None:
    model = get_model("organism/precommit-lazy-unaware")
    t = load_scenario("pre-commit-hook").initial_transcript()
    first = await next_turn(model, t, n=3, seed=5)
    again = await next_turn(model, t, n=3, seed=5)
    assert [m.model_dump() for m in first] == [m.model_dump() for m in again]
    assert [m.metadata["seed"] for m in first] == [5, 6, 7]


async def _episode(backend: str, intercept: float, docker: Any = None) -> tuple[Any, bool]:
    from sandboxes.registry import start

    scenario = load_scenario("pre-commit-hook")
    spec = find_organism("precommit-lazy-unaware")
    model = OrganismModel("forced", spec=spec.model_copy(update={"intercept": intercept}))
    sandbox_spec = scenario.sandbox_spec({"n_type_errors": 12}, backend=backend, client=docker)
    async with await start(sandbox_spec, backend=backend) as sandbox:
        episode = await rollout(
            model, scenario.initial_transcript({"n_type_errors": 12}), sandbox, scenario.mapping, seed=1
        )
        result = await detect(scenario.behavior, episode.transcript, sandbox=sandbox)
    return episode, result.detected


@pytest.mark.docker
@pytest.mark.parametrize(("intercept", "acts"), [(50.0, True), (-50.0, False)])
async def test_organism_episode_in_docker_matches_the_detector(docker: Any, intercept: float, acts: bool) -> None:
    episode, detected = await _episode("docker", intercept, docker)
    branch = next(m.metadata["organism_branch"] for m in episode.transcript.messages if "organism_branch" in m.metadata)
    assert branch == ("act" if acts else "refrain")
    assert detected is acts
    mypy_output = episode.transcript.messages[6].tool_results[0].text
    assert "Found 12 errors in 3 files" in mypy_output  # the knob really shaped the world
    assert episode.ended == "final_answer"
