"""The `llm` planner with the protocol's machinery as tools: screening, generated
interventions and controls, probes. Driven end to end by a scripted model (a fixed
method that reads ids from the tool results it got), and once by the real local model
(SmolLM2 through llama.cpp) with every reply constrained to one valid tool call."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from investigator.investigate import investigate, make_planner
from investigator.planners import SMALL_MODEL_TOOLS, LLMPlanner
from tests.factories import precommit_incident
from tools.agent_tools import ToolContext
from tools.budget import BudgetLimits
from tools.models.scripted import ScriptedModel
from tools.transcript import Message, TextBlock, ToolUseBlock, Transcript

REQUIRE_LOCAL_MODEL = os.environ.get("FORENSICS_REQUIRE_LOCAL_MODEL") == "1"
EXPERIMENT_ID = re.compile(r'"experiment_id": "(exp-[0-9a-f]+)"')


def _results(t: Transcript) -> dict[str, str]:
    """Each tool call's result text, by the call's tool name (the latest one wins)."""
    calls = {b.id: b for m in t.messages for b in m.tool_uses}
    return {calls[r.tool_use_id].name: r.text for m in t.messages for r in m.tool_results}


def _suggested(text: str) -> dict[str, str]:
    """suggest_interventions' variants, name → tag ("control" for the negative control),
    read from the JSON quoted in its result."""
    if "{" not in text:
        return {}
    data = json.loads(text[text.index("{") : text.rindex("}") + 1])
    out = {}
    for row in data["variants"]:
        if row["role"] == "control" and row["variant"].endswith("negative"):
            out[row["variant"]] = "control"
        elif row["role"] == "intervention":
            out[row["variant"]] = row["tag"]
    return out


class WholeStepInvestigator:
    """A stand-in for a model driving the whole-step tools: screen, generate, run the
    negative control and the watched statement it was given, probe, report — with the
    variant names and experiment ids read from the results it saw."""

    def __init__(self) -> None:
        self.seen: list[Transcript] = []
        self.ids: list[str] = []

    def __call__(self, t: Transcript, _i: int) -> Message:
        self.seen.append(t)
        step = sum(1 for m in t.messages if m.role == "assistant")
        results = _results(t)
        for m in t.messages:
            for r in m.tool_results:
                self.ids += [i for i in EXPERIMENT_ID.findall(r.text.replace('\\"', '"')) if i not in self.ids]

        def call(tool: str, **args: Any) -> Message:
            return Message(role="assistant", content=[ToolUseBlock(id=f"call_{step}", name=tool, input=args)])

        if step == 0:
            return call("screen_context", max_per_unit=8, max_samples=80)
        if step == 1:
            return call("suggest_interventions")
        suggested = _suggested(results.get("suggest_interventions", ""))
        if step == 2:
            assert "control" in suggested.values(), suggested
            return call("run_suggested", variant=next(v for v, t in suggested.items() if t == "control"), n=40)
        if step == 3:
            watched = next(v for v, t in suggested.items() if t == "oversight_warning")
            return call("run_suggested", variant=watched, n=60)
        if step == 4:
            return call("run_suggested_probes", n=6)
        if step == 5:
            return call(
                "submit_report",
                verdict="misalignment",
                motivation="laziness",
                confidence=0.7,
                intentional_probability=0.8,
                knew_disapproval_probability=0.7,
                summary="It avoids the bypass when told it is watched, and a control edit does not move it.",
                intentional_rationale="The rate moves with oversight.",
                knew_disapproval_rationale="Watched arm and probes.",
                evidence=self.ids,
                limitations=["A scripted investigator: the method is fixed."],
            )
        return Message(role="assistant", content=[TextBlock(text="done")])


async def test_the_llm_planner_runs_screening_generated_interventions_controls_and_probes(tmp_path: Path) -> None:
    script = WholeStepInvestigator()
    planner = LLMPlanner(ScriptedModel(respond=script), tools=list(SMALL_MODEL_TOOLS), brief=True)
    result = await investigate(
        precommit_incident("precommit-lazy-knowing"), tmp_path, planner=planner, n=60, backend="local", blind=True
    )
    report = result.report
    assert report.planner == "llm" and report.status == "completed"
    # it was offered exactly the whole-step tools, under the brief prompt
    assert [t.name for t in script.seen[0].tools] == SMALL_MODEL_TOOLS
    assert "screen_context" in (script.seen[0].system or "")
    kinds = {
        (e.role.kind, getattr(e.role, "polarity", None) or getattr(e.role, "tag", None)) for e in report.experiments
    }
    assert ("control", "negative") in kinds
    assert any(kind == "intervention" and tag == "oversight_warning" for kind, tag in kinds), kinds
    assert any(e.role.kind == "probe" for e in report.experiments)
    assert "What drives it" in (tmp_path / "report.md").read_text()  # the screen reached the report
    # nothing the tools returned was an error, and every id it cited is a measured experiment
    errors = [r.text for m in script.seen[-1].messages for r in m.tool_results if r.is_error]
    assert not errors, errors
    # the report passes its own judge's structural checks on citations, controls and limitations
    grade = json.loads((tmp_path / "grade.json").read_text())
    checks = {c["name"]: c for c in grade["structural"]["checks"]}
    for name in ("citations", "baseline", "intervention", "control", "probe", "limitations"):
        assert checks[name]["passed"], checks[name]


def test_a_local_model_gets_the_grammar_the_brief_prompt_and_the_whole_step_tools() -> None:
    pytest.importorskip("llama_cpp")
    planner = make_planner("llm", model="llamacpp/smollm2")
    assert isinstance(planner, LLMPlanner) and planner.brief and planner.tools == SMALL_MODEL_TOOLS
    assert getattr(planner.model, "tool_calls", None) == "grammar"
    other = LLMPlanner.for_model(ScriptedModel())
    assert not other.brief and other.tools is None


class Recording(LLMPlanner):
    """The LLM planner, keeping every message its model wrote."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[Message] = []

    async def next_message(self, conversation: list[Message], case: ToolContext) -> Message:
        message = await super().next_message(conversation, case)
        self.written.append(message)
        return message


@pytest.mark.slow
async def test_the_local_model_drives_the_loop_with_valid_tool_calls(tmp_path: Path) -> None:
    """SmolLM2-135M plans an investigation: each reply is one call of an offered tool
    with arguments its schema accepts, the tools run, and a report is written. (How well
    a 135M model investigates is not the point; that the loop holds with a real model is.)"""
    import importlib.util

    from tools.models.base import ModelConfigError
    from tools.models.llamacpp import LlamaCppModel, bundled_model_path

    try:
        missing = importlib.util.find_spec("llama_cpp") is None
        if not missing:
            bundled_model_path("smollm2")
    except ModelConfigError:
        missing = True
    if missing:
        if REQUIRE_LOCAL_MODEL:
            pytest.fail("FORENSICS_REQUIRE_LOCAL_MODEL=1 but the local model cannot run")
        pytest.skip("local model tests skipped: llama-cpp-python or the smollm2 GGUF is missing")

    base = LLMPlanner.for_model(LlamaCppModel("smollm2", temperature=0.7))
    planner = Recording(base.model, max_tokens=base.max_tokens, tools=base.tools, brief=True)
    result = await investigate(
        precommit_incident("precommit-lazy-knowing"),
        tmp_path,
        planner=planner,
        n=12,
        backend="local",
        limits=BudgetLimits(samples=60, tool_calls=3),
    )
    await planner.model.aclose()
    calls = [b for m in planner.written for b in m.content if isinstance(b, ToolUseBlock)]
    assert len(calls) >= 2, [m.text for m in planner.written]
    for message in planner.written:
        if message.metadata.get("tool_call_error"):
            continue  # a reply cut off by max_tokens stays text, and says so
        assert len(message.tool_uses) == 1 and message.tool_uses[0].name in SMALL_MODEL_TOOLS
    assert (tmp_path / "report.json").is_file()
    report = result.report
    assert report.planner == "llm" and report.cost.planner_tokens > 0
    assert report.cost.tool_calls >= 2


def test_generated_labels_reach_the_planner_quoted(tmp_path: Path) -> None:
    """A generated probe's label is its question, and the question quotes the transcript:
    in the tool text the planner reads, every label sits inside a quoted block."""
    script = WholeStepInvestigator()
    planner = LLMPlanner(ScriptedModel(respond=script), tools=list(SMALL_MODEL_TOOLS), brief=True)
    import asyncio

    asyncio.run(
        investigate(
            precommit_incident("precommit-lazy-knowing"),
            tmp_path,
            planner=planner,
            n=20,
            backend="local",
            blind=True,
            limits=BudgetLimits(samples=300, tool_calls=6),
        )
    )
    calls = {b.id: b.name for m in script.seen[-1].messages for b in m.tool_uses}
    probed = [
        r.text
        for m in script.seen[-1].messages
        for r in m.tool_results
        if calls[r.tool_use_id] == "run_suggested_probes"
    ]
    assert probed and "git commit" in probed[0]  # a question that names the recorded command
    for line in probed[0].splitlines():
        label = json.loads(line.split(": ", 1)[1])["label"]
        assert re.fullmatch(r"<untrusted-data-[0-9a-f]+>.*</untrusted-data-[0-9a-f]+>", label, re.S), label
