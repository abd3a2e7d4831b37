"""Run a model organism in its scenario and measure how often it takes the flagged action.

Two modes:
- ``rollout`` (default): n whole episodes, each in a fresh sandbox (Docker when an
  engine answers, else the local backend, said clearly), judged by the scenario's
  detector after the episode — the real thing, seconds per episode.
- ``next_turn``: one episode up to the decision turn, then n resamples of that turn
  judged by the regex part of the detector — the investigator's fast instrument.

Edits (tools.edit) apply before the run: ``set_knob`` edits change the world (the
scenario is re-rendered and rebuilt with the new knob values), ``write_file`` edits add
files, and the rest edit the context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.scenario import Scenario, load_scenario
from sandboxes.base import SandboxSpec
from sandboxes.registry import choose_backend, start
from tools.detectors import DetectionResult, detect
from tools.edit import Edit, SetKnob, WriteFile, apply
from tools.incident import DetectorSpec, RegexDetector
from tools.models.registry import get_model
from tools.organisms.model import OrganismModel
from tools.rollout import next_turn, rollout
from tools.stats import wilson_interval
from tools.transcript import Transcript

Mode = Literal["rollout", "next_turn"]


class Trajectory(BaseModel):
    """One sample: whether the behaviour happened, and what the subject did."""

    index: int
    seed: int
    detected: bool
    branch: str | None = None
    variant: str | None = None
    actions: list[str] = Field(default_factory=list)
    evidence: str = ""


class SimulationResult(BaseModel):
    """The measured rate with its Wilson interval, and the samples behind it."""

    organism: str
    scenario: str
    mode: Mode
    backend: str
    backend_note: str | None = None
    feature_method: str
    knobs: dict[str, Any]
    n: int
    k: int
    rate: float
    ci: tuple[float, float]
    trajectories: list[Trajectory]

    def summary_json(self) -> dict[str, Any]:
        """The stable machine-readable summary (`forensics simulate --json`)."""
        return {"organism": self.organism, "n": self.n, "k": self.k, "rate": self.rate, "ci": list(self.ci)}


def prepare(scenario: Scenario, edits: Sequence[Edit]) -> tuple[Transcript, dict[str, Any], dict[str, str], list[Edit]]:
    """The starting transcript, knob values and extra files after `edits`: knob and file
    edits change the world; the others edit the context (returned for reuse)."""
    knob_edits = [e for e in edits if isinstance(e, SetKnob)]
    file_edits = [e for e in edits if isinstance(e, WriteFile)]
    context_edits: list[Edit] = [e for e in edits if not isinstance(e, SetKnob | WriteFile)]
    knobs = scenario.resolve_knobs({e.name: e.value for e in knob_edits})
    transcript = scenario.initial_transcript(knobs)
    if context_edits:
        transcript = apply(context_edits, transcript, scenario.environment(knobs)).transcript
    files = {e.path: e.content for e in file_edits}
    return transcript, knobs, files, context_edits


def _regex_parts(spec: DetectorSpec) -> list[RegexDetector]:
    if isinstance(spec, RegexDetector):
        return [spec]
    if spec.kind in {"all", "any"}:
        return [r for child in spec.of for r in _regex_parts(child)]
    return []


def _actions(transcript: Transcript, start_turn: int) -> list[str]:
    out = []
    for turn in transcript.turns()[start_turn:]:
        for call in turn.tool_uses:
            shown = call.input.get("command") or call.input
            out.append(f"{call.name}: {shown}")
    return out


async def simulate(
    organism_id: str,
    *,
    n: int = 20,
    seed: int = 0,
    edits: Sequence[Edit] = (),
    mode: Mode = "rollout",
    backend: str | None = None,
    concurrency: int = 4,
    organism_dirs: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run `organism_id` in its scenario `n` times and measure the behaviour's rate."""
    model = get_model(f"organism/{organism_id}", organism_dirs=list(organism_dirs))
    assert isinstance(model, OrganismModel)
    scenario = load_scenario(model.spec.scenario)
    choice = choose_backend(backend or "docker")
    transcript, knobs, files, context_edits = prepare(scenario, edits)
    base_spec = scenario.sandbox_spec(knobs, backend=choice.name)
    spec = base_spec.model_copy(update={"files": {**base_spec.files, **files}}) if files else base_spec

    trajectories: list[Trajectory]
    if mode == "rollout":
        trajectories = await _rollouts(model, scenario, transcript, spec, choice.name, n, seed, concurrency, progress)
    else:
        trajectories = await _next_turns(
            model, scenario, transcript, spec, choice.name, n, seed, context_edits, progress
        )
    k = sum(t.detected for t in trajectories)
    low, high = wilson_interval(k, n)
    return SimulationResult(
        organism=organism_id,
        scenario=scenario.id,
        mode=mode,
        backend=choice.name,
        backend_note=choice.note,
        feature_method=str(model.describe()["feature_method"]),
        knobs=knobs,
        n=n,
        k=k,
        rate=k / n if n else 0.0,
        ci=(low, high),
        trajectories=trajectories,
    )


async def _rollouts(
    model: OrganismModel,
    scenario: Scenario,
    transcript: Transcript,
    spec: SandboxSpec,
    backend: str,
    n: int,
    seed: int,
    concurrency: int,
    progress: Callable[[int], None] | None,
) -> list[Trajectory]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Trajectory:
        async with gate, await start(spec, backend=backend) as sandbox:
            episode = await rollout(
                model, transcript, sandbox, scenario.mapping, max_turns=scenario.max_turns, seed=seed + i
            )
            result: DetectionResult = await detect(scenario.behavior, episode.transcript, start_turn=0, sandbox=sandbox)
        decided = next(
            (m for m in episode.transcript.messages if m.metadata.get("organism_branch")),
            None,
        )
        if progress is not None:
            progress(1)
        return Trajectory(
            index=i,
            seed=seed + i,
            detected=result.detected,
            branch=None if decided is None else decided.metadata.get("organism_branch"),
            variant=None if decided is None else decided.metadata.get("organism_variant"),
            actions=_actions(episode.transcript, 0),
            evidence=result.summary(),
        )

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _next_turns(
    model: OrganismModel,
    scenario: Scenario,
    transcript: Transcript,
    spec: SandboxSpec,
    backend: str,
    n: int,
    seed: int,
    context_edits: Sequence[Edit],
    progress: Callable[[int], None] | None,
) -> list[Trajectory]:
    decision_turn = model.spec.playbook.decision.at
    async with await start(spec, backend=backend) as sandbox:
        episode = await rollout(model, transcript, sandbox, scenario.mapping, max_turns=decision_turn, seed=seed)
    prefix = (
        episode.transcript.prefix(decision_turn)
        if len(episode.transcript.turns()) > decision_turn
        else episode.transcript
    )
    regexes = _regex_parts(scenario.behavior)
    samples = await next_turn(model, prefix, n=n, seed=seed)
    out = []
    for i, message in enumerate(samples):
        sampled = prefix.model_copy(update={"messages": [*prefix.messages, message]})
        results = [await detect(r, sampled, start_turn=decision_turn) for r in regexes]
        hit = next((r for r in results if r.detected), None)
        out.append(
            Trajectory(
                index=i,
                seed=seed + i,
                detected=hit is not None,
                branch=message.metadata.get("organism_branch"),
                variant=message.metadata.get("organism_variant"),
                actions=_actions(sampled, decision_turn),
                evidence=hit.summary() if hit else "no regex part of the detector matched",
            )
        )
        if progress is not None:
            progress(1)
    return out
