"""Run a model organism in its scenario and measure how often it takes the flagged action.

Two modes:
- ``rollout`` (default): n whole episodes, each in a fresh sandbox (Docker when an
  engine answers, else the local backend, said clearly), judged by the scenario's
  detector after the episode — the real thing, seconds per episode.
- ``next_turn``: one episode up to the decision turn, then n resamples of that turn,
  judged the way an investigation judges a resampled turn (`tools.agent_tools.resample`):
  by the parts of the detector that need no sandbox when it has such parts (a regex over
  the tool calls), else — when the detector reads the world's state, as the math
  grader does — each resampled turn is executed in a fork of the world as it stood at
  the decision turn and the whole detector judges that fork (a ``max_turns=1``
  rollout, as `tools.resample` runs it).

Edits (tools.edit) apply before the run: ``set_knob`` edits change the world (the
scenario is re-rendered and rebuilt with the new knob values), ``write_file`` edits add
files, and the rest edit the context. A context edit that refers to text the episode
has not produced yet (a tool result) applies, in ``next_turn`` mode, to the context of
the decision turn once the opening is played; in ``rollout`` mode it is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evals.scenario import Scenario, load_scenario
from sandboxes.base import SandboxSpec, SnapshotRef
from sandboxes.registry import choose_backend, remove_snapshot, start
from tools.detectors import DetectionResult, detect
from tools.edit import Edit, SetKnob, WriteFile, apply
from tools.errors import EditError, ForensicsError
from tools.models.registry import get_model
from tools.organisms.model import OrganismModel
from tools.resample import sandbox_free
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
    judged_by: str = ""
    """How each sample was judged (next_turn: the sandbox-free detector parts, or execution in the world)."""
    n: int
    k: int
    rate: float
    ci: tuple[float, float]
    trajectories: list[Trajectory]

    def summary_json(self) -> dict[str, Any]:
        """The stable machine-readable summary (`forensics simulate --json`)."""
        return {"organism": self.organism, "n": self.n, "k": self.k, "rate": self.rate, "ci": list(self.ci)}


class Prepared(BaseModel):
    """What a simulation starts from once the edits are applied."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    transcript: Transcript
    knobs: dict[str, Any]
    files: dict[str, str]
    context_edits: list[Edit]
    deferred: list[Edit] = Field(default_factory=list)
    """Context edits that refer to text the episode has not produced yet (tool results):
    applied to the decision turn's context in next_turn mode."""
    deferred_reasons: list[str] = Field(default_factory=list)
    """Why each deferred edit did not apply to the starting transcript."""


def prepare(scenario: Scenario, edits: Sequence[Edit]) -> Prepared:
    """The starting transcript, knob values and extra files after `edits`: knob and file
    edits change the world; the others edit the context (see the module doc)."""
    knob_edits = [e for e in edits if isinstance(e, SetKnob)]
    file_edits = [e for e in edits if isinstance(e, WriteFile)]
    context_edits: list[Edit] = [e for e in edits if not isinstance(e, SetKnob | WriteFile)]
    knobs = scenario.resolve_knobs({e.name: e.value for e in knob_edits})
    transcript = scenario.initial_transcript(knobs)
    environment = scenario.environment(knobs)
    deferred: list[Edit] = []
    reasons: list[str] = []
    for edit in context_edits:
        try:
            transcript = apply([edit], transcript, environment).transcript
        except EditError as exc:
            deferred.append(edit)
            reasons.append(str(exc))
    files = {e.path: e.content for e in file_edits}
    return Prepared(
        transcript=transcript,
        knobs=knobs,
        files=files,
        context_edits=context_edits,
        deferred=deferred,
        deferred_reasons=reasons,
    )


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
    allow_host: bool = False,
    concurrency: int = 4,
    organism_dirs: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run `organism_id` in its scenario `n` times and measure the behaviour's rate."""
    model = get_model(f"organism/{organism_id}", organism_dirs=list(organism_dirs))
    assert isinstance(model, OrganismModel)
    scenario = load_scenario(model.spec.scenario)
    from evals.world import is_trusted_world

    # shipped organisms in shipped scenarios are ours; one from another directory is not
    trusted = not organism_dirs and is_trusted_world(scenario.environment(), f"organism/{organism_id}")
    choice = choose_backend(backend, trusted=trusted, allow_host=allow_host)
    prepared = prepare(scenario, edits)
    knobs = prepared.knobs
    if mode == "rollout" and prepared.deferred:
        raise ForensicsError(
            f"{prepared.deferred_reasons[0]}: in rollout mode an edit can only change the starting context; "
            "use a set_knob edit to change what the world shows, or --mode next_turn to edit the decision turn's "
            "context (tool results included)"
        )
    base_spec = scenario.sandbox_spec(knobs, backend=choice.name)
    files = prepared.files
    spec = base_spec.model_copy(update={"files": {**base_spec.files, **files}}) if files else base_spec

    trajectories: list[Trajectory]
    judged_by = "the whole detector, after each episode"
    if mode == "rollout":
        trajectories = await _rollouts(
            model, scenario, prepared.transcript, spec, choice.name, n, seed, concurrency, progress
        )
    else:
        trajectories, judged_by = await _next_turns(
            model, scenario, prepared, spec, choice.name, n, seed, concurrency, progress
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
        judged_by=judged_by,
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
    prepared: Prepared,
    spec: SandboxSpec,
    backend: str,
    n: int,
    seed: int,
    concurrency: int,
    progress: Callable[[int], None] | None,
) -> tuple[list[Trajectory], str]:
    """Play the opening once, then resample the decision turn n times, judged as an
    investigation judges a resampled turn (see the module doc)."""
    decision_turn = model.spec.playbook.decision.at
    reduced = sandbox_free(scenario.behavior)
    snapshot: SnapshotRef | None = None
    async with await start(spec, backend=backend) as sandbox:
        episode = await rollout(
            model, prepared.transcript, sandbox, scenario.mapping, max_turns=decision_turn, seed=seed
        )
        if reduced is None:
            snapshot = await sandbox.snapshot()  # the world as it stands at the decision turn
    try:
        prefix = (
            episode.transcript.prefix(decision_turn)
            if len(episode.transcript.turns()) > decision_turn
            else episode.transcript
        )
        if prepared.deferred:
            prefix = apply(prepared.deferred, prefix, scenario.environment(prepared.knobs)).transcript
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> Trajectory:
            if snapshot is None:
                assert reduced is not None
                message = (await next_turn(model, prefix, n=1, seed=seed + i))[0]
                sampled = prefix.model_copy(update={"messages": [*prefix.messages, message]})
                result = await detect(reduced, sampled, start_turn=decision_turn)
            else:
                async with gate, await start(spec, backend=backend, from_snapshot=snapshot) as fork:
                    resampled = await rollout(model, prefix, fork, scenario.mapping, max_turns=1, seed=seed + i)
                    sampled = resampled.transcript
                    result = await detect(scenario.behavior, sampled, start_turn=decision_turn, sandbox=fork)
                message = sampled.turn(decision_turn).message
            if progress is not None:
                progress(1)
            return Trajectory(
                index=i,
                seed=seed + i,
                detected=result.detected,
                branch=message.metadata.get("organism_branch"),
                variant=message.metadata.get("organism_variant"),
                actions=_actions(sampled, decision_turn),
                evidence=result.summary(),
            )

        trajectories = list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        if snapshot is not None:
            await remove_snapshot(snapshot)
    if snapshot is None:
        return trajectories, "the detector's sandbox-free parts, on the resampled turn"
    return trajectories, "the whole detector, on a fork of the world where the resampled turn was executed"
