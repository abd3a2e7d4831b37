"""Running experiments: a variant × start turn × mode × n, into the ledger.

Modes:
- ``next_turn``: resample the subject's message at `start_turn` from the (edited)
  prefix; judged by the parts of the detector that need no sandbox (regex, LLM).
- ``rollout``: rebuild the world at `start_turn` (fresh sandbox, replay of the
  transcript's own tool calls, snapshot), then continue the episode from the prefix in
  a fork of that snapshot per sample; judged by the whole detector, sandbox included.
- ``probe``: append `question` after the prefix and sample the answer; judged by the
  experiment's own `detector` (e.g. a regex on the answer).

A next_turn experiment may carry a `prefill`: a partial assistant message (e.g. the
first sentences of the flagged turn's CoT, as in Thought Anchors' sentence
resampling). The subject is called with the prefix followed by that message and
returns its *continuation*; the sample stored and judged is the merged message
(`merge_prefill`), judged at the experiment's start turn like any resampled turn.

Sample i uses seed ``spec.seed + i``; each is written to the ledger as soon as it
exists (`tools.ledger`), so a killed run resumes without sampling anything twice.
With `sequential`, samples are taken in batches and the experiment stops as soon as
an anytime-valid test (tools.stats) answers its question; the samples saved are
recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandboxes.base import Sandbox, SnapshotRef
from sandboxes.registry import remove_snapshot
from tools.detectors import DetectionResult, detect
from tools.edit import Variant
from tools.errors import ForensicsError
from tools.experiments import ExperimentRole, ExploratoryRole
from tools.incident import CompositeDetector, DetectorSpec, Incident, LLMDetector, RegexDetector
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.replay import replay, replay_and_snapshot
from tools.rollout import rollout
from tools.stats import Decision, Outcome, Rate, RateThresholdTest, TwoArmTest
from tools.transcript import ContentBlock, Message, TextBlock, ThinkingBlock, Transcript

# World and WorldFactory live in tools.world; re-exported here for code that imports them from this module.
from tools.world import World as World
from tools.world import WorldFactory as WorldFactory

Mode = Literal["next_turn", "rollout", "probe"]


class ExperimentError(ForensicsError):
    """An experiment cannot run as specified (a detector that needs a sandbox in
    next_turn mode, a start turn past the edited transcript, no world to roll out in)."""


class SequentialRule(BaseModel):
    """Stop early once the question is answered. ``threshold``: is the rate above or
    below `threshold`? ``reference``: does the rate differ from the `reference` arm
    (which is sampled alongside, batch by batch)?"""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threshold", "reference"]
    threshold: float | None = None
    reference: ExperimentSpec | None = None
    alpha: float = 0.05
    batch: int = Field(default=10, ge=1)
    futility_odds_ratio: float | None = Field(default=None, gt=1.0)
    """reference rule: also stop once the difference is shown to be smaller than this odds
    ratio either way (`tools.stats.TwoArmTest`); None: stop only on a difference."""


class ExperimentSpec(BaseModel):
    """What to run. The id is a hash of everything that defines the samples (not `n`,
    `label`, `role` or `sequential`), so rerunning the same spec resumes the same
    experiment. `role` says what the samples are for (`tools.experiments`); `label` is
    free text for people."""

    model_config = ConfigDict(extra="forbid")

    label: str
    role: ExperimentRole = Field(default_factory=ExploratoryRole)
    variant: Variant = Field(default_factory=Variant)
    start_turn: int | None = None
    mode: Mode = "next_turn"
    n: int = Field(default=50, ge=1)
    seed: int = 0
    question: str | None = None
    detector: DetectorSpec | None = None
    sequential: SequentialRule | None = None
    temperature: float | None = None
    max_turns: int | None = None
    """rollout mode: stop each episode after this many turns (default: the world's cap).
    ``1`` resamples the start turn and executes it in the rebuilt world, so detectors that
    inspect the sandbox's final state can judge a single resampled turn."""
    prefill: Message | None = None
    """next_turn mode only: a partial assistant message every sample continues (see the
    module doc). It enters the id only when set, so ids of experiments without one are
    unchanged."""

    def experiment_id(self, incident_id: str, subject: str, start_turn: int) -> str:
        key = {
            "incident": incident_id,
            "subject": subject,
            "variant": self.variant.id,
            "start_turn": start_turn,
            "mode": self.mode,
            "seed": self.seed,
            "question": self.question,
            "detector": None if self.detector is None else self.detector.model_dump(mode="json"),
            "temperature": self.temperature,
        }
        if self.max_turns is not None:
            key["max_turns"] = self.max_turns
        if self.prefill is not None:
            key["prefill"] = [block.model_dump(mode="json") for block in self.prefill.content]
        return "exp-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


SequentialRule.model_rebuild()


class ExperimentResult(BaseModel):
    """An experiment's outcome as the ledger holds it."""

    id: str
    label: str
    role: ExperimentRole = Field(default_factory=ExploratoryRole)
    mode: Mode
    variant_id: str
    start_turn: int
    k: int
    n: int
    n_target: int
    rate: float
    ci: tuple[float, float]
    stop_reason: str
    samples_saved: int = 0
    notes: list[str] = Field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.label}: {Rate(self.k, self.n)}"


def sandbox_free(spec: DetectorSpec) -> DetectorSpec | None:
    """The part of a detector that can judge a sampled message without a sandbox."""
    if isinstance(spec, RegexDetector | LLMDetector):
        return spec
    if isinstance(spec, CompositeDetector):
        kept = [c for c in (sandbox_free(child) for child in spec.of) if c is not None]
        if not kept:
            return None
        if spec.kind == "all" and len(kept) < len(spec.of):
            return None  # an `all` missing a part would over-detect
        return kept[0] if len(kept) == 1 else CompositeDetector(kind=spec.kind, of=kept)
    return None


class _Arm:
    """One experiment being run: its prepared context, detector and ledger rows."""

    def __init__(
        self,
        ledger: Ledger,
        incident: Incident,
        spec: ExperimentSpec,
        subject: ModelClient,
        world: WorldFactory | None,
        grader: ModelClient | None,
    ) -> None:
        self.ledger, self.incident, self.spec, self.subject, self.grader = ledger, incident, spec, subject, grader
        applied = spec.variant.apply(incident)
        self.transcript = applied.transcript
        self.environment = applied.environment or incident.environment
        turns = len(self.transcript.turns())
        self.start_turn = incident.flagged_turn_index if spec.start_turn is None else spec.start_turn
        if not 0 <= self.start_turn <= turns:
            raise ExperimentError(f"start turn {self.start_turn} is outside the edited transcript (0..{turns})")
        self.prefix = self.transcript.prefix(self.start_turn)
        self.context = self.prefix
        self.notes: list[str] = list(applied.notes)
        if spec.prefill is not None:
            if spec.mode != "next_turn":
                raise ExperimentError(f"a prefill continues one assistant message: use mode next_turn, not {spec.mode}")
            if spec.prefill.role != "assistant" or not spec.prefill.content:
                raise ExperimentError("a prefill must be an assistant message with at least one block")
            self.context = self.prefix.model_copy(update={"messages": [*self.prefix.messages, spec.prefill]})
        detector = spec.detector or incident.behavior
        if spec.mode == "probe":
            if spec.question is None or spec.detector is None:
                raise ExperimentError("a probe experiment needs a `question` and its own `detector` for the answer")
            self.prefix = self.prefix.model_copy(deep=True)
            self.prefix.messages.append(
                Message(role="user", content=[TextBlock(text=spec.question)], metadata={"probe": True})
            )
            self.context = self.prefix
        if spec.mode in {"next_turn", "probe"}:
            reduced = sandbox_free(detector)
            if reduced is None:
                raise ExperimentError(
                    "this detector needs a sandbox (a `command` part) to judge a sample; use mode `rollout`"
                )
            if reduced != detector:
                self.notes.append("judged by the detector's regex/LLM parts only (next_turn mode has no sandbox)")
            detector = reduced
        self.detector = detector
        self.world_factory = world
        self.id = spec.experiment_id(incident.id, subject.model_string, self.start_turn)
        ledger.put_incident(incident.id, incident.model_dump(mode="json"))
        ledger.put_variant(
            spec.variant.id,
            incident.id,
            parent=spec.variant.parent,
            description=spec.variant.description or "original",
            edits=[e.model_dump(mode="json") for e in spec.variant.edits],
            diff=spec.variant.diff(incident.transcript, incident.environment) if spec.variant.edits else "",
        )
        ledger.open_experiment(
            self.id,
            incident_id=incident.id,
            variant_id=spec.variant.id,
            label=spec.label,
            mode=spec.mode,
            start_turn=self.start_turn,
            n_target=spec.n,
            spec=spec.model_dump(mode="json", exclude={"sequential"}),
            role=spec.role,
        )
        self._snapshot: SnapshotRef | None = None
        self._world: World | None = None
        self._tool_state: dict[str, Any] = {}

    # ----------------------------------------------------------- sampling
    async def _sample_output(self, seed: int) -> tuple[list[Message], Sandbox | None]:
        if self.spec.mode != "rollout":
            message = (await self.subject.generate(self.context, n=1, seed=seed, temperature=self.spec.temperature))[0]
            if self.spec.prefill is not None:
                message = merge_prefill(self.spec.prefill, message)
            return [message], None
        assert self._world is not None and self._snapshot is not None
        sandbox = await self._world.start(from_snapshot=self._snapshot)
        try:
            episode = await rollout(
                self.subject,
                self.prefix,
                sandbox,
                self._world.mapping,
                max_turns=self.spec.max_turns or self._world.max_turns,
                seed=seed,
                temperature=self.spec.temperature,
                tool_state=self._tool_state,
            )
        except BaseException:
            await sandbox.close()
            raise
        return episode.transcript.messages[len(self.prefix.messages) :], sandbox

    async def _rebuild(self, output: list[Message]) -> Sandbox:
        """The world a stored rollout sample ended in, rebuilt by re-executing the sample's
        own recorded tool calls from the start-turn snapshot: judging a sample that was
        taken before a crash costs no subject call (the ledger already paid for it)."""
        assert self._world is not None and self._snapshot is not None
        sandbox = await self._world.start(from_snapshot=self._snapshot)
        episode = self.prefix.model_copy(update={"messages": list(output)})
        try:
            await replay(episode, sandbox, upto_turn=len(episode.turns()), mapping=self._world.mapping)
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    async def _judge(self, output: list[Message], sandbox: Sandbox | None) -> DetectionResult:
        judged = self.prefix.model_copy(update={"messages": [*self.prefix.messages, *output]})
        start_turn = len(self.prefix.turns())
        return await detect(self.detector, judged, start_turn=start_turn, sandbox=sandbox, grader=self.grader)

    async def prepare_world(self) -> None:
        """Rollout mode: build the world at the start turn once (replay + snapshot)."""
        if self.spec.mode != "rollout" or self._snapshot is not None:
            return
        if self.world_factory is None:
            raise ExperimentError("rollout mode needs a world factory (the scenario's sandbox and tool mapping)")
        self._world = self.world_factory(self.environment)
        if self._world.note:
            self.notes.append(self._world.note)
        async with await self._world.start() as sandbox:
            report, self._snapshot = await replay_and_snapshot(
                self.transcript, sandbox, upto_turn=self.start_turn, mapping=self._world.mapping
            )
        self._tool_state = report.tool_state
        self.ledger.event(
            "replay",
            experiment_id=self.id,
            summary=report.summary(),
            divergences=[d.model_dump(mode="json") for d in report.divergences],
        )
        if report.divergences:
            self.notes.append(report.summary())

    async def close(self) -> None:
        if self._snapshot is not None:
            await remove_snapshot(self._snapshot)
            self._snapshot = None

    async def run_indices(
        self, indices: list[int], gate: asyncio.Semaphore, progress: Callable[[int], None] | None
    ) -> None:
        """Take the samples with these indices (skipping any already stored)."""
        stored = {s.idx: s for s in self.ledger.samples(self.id)}

        async def one(idx: int) -> None:
            async with gate:
                seed = self.spec.seed + idx
                row = stored.get(idx)
                if row is not None and row.detected is not None:
                    return
                if row is not None:  # sampled before a crash, never judged: judge it now
                    output = [Message.model_validate(m) for m in row.output]
                    sandbox: Sandbox | None = None
                    if self.spec.mode == "rollout":
                        sandbox = await self._rebuild(output)  # the world is gone: replay it, no model call
                else:
                    output, sandbox = await self._sample_output(seed)
                    usage = _usage(output)
                    self.ledger.record_output(self.id, idx, seed, [m.model_dump(mode="json") for m in output], usage)
                try:
                    result = await self._judge(output, sandbox)
                finally:
                    if sandbox is not None:
                        await sandbox.close()
                self.ledger.record_detection(self.id, idx, result.detected, result.model_dump(mode="json"))
                if progress is not None:
                    progress(1)

        await asyncio.gather(*(one(i) for i in indices))

    def result(self, stop_reason: str, samples_saved: int = 0) -> ExperimentResult:
        counts = self.ledger.counts(self.id)
        rate = Rate(counts.k, counts.n)
        row = self.ledger.experiment(self.id)
        assert row is not None
        return ExperimentResult(
            id=self.id,
            label=self.spec.label,
            role=row.role,
            mode=self.spec.mode,
            variant_id=self.spec.variant.id,
            start_turn=self.start_turn,
            k=counts.k,
            n=counts.n,
            n_target=row.n_target,
            rate=rate.rate,
            ci=rate.ci,
            stop_reason=stop_reason,
            samples_saved=samples_saved,
            notes=self.notes,
        )


def _joined(head: str, tail: str) -> str:
    """Two pieces of one text, with a space between them when neither side has one."""
    if head and tail and not head[-1].isspace() and not tail[0].isspace():
        return f"{head} {tail}"
    return head + tail


def merge_prefill(prefill: Message, continuation: Message) -> Message:
    """The whole assistant message a prefilled sample amounts to: the prefill's blocks,
    then the continuation's. When the continuation starts with the same kind of text
    block the prefill ends with (thinking after thinking, text after text) the two are
    one block, as an API that continues a prefill returns it; a space is put between
    them when neither side has one (prefills are sent without trailing whitespace).
    The continuation's metadata is kept, plus ``prefill``: how many blocks came from
    the prefill and where the continuation starts (block index, character offset), so
    the regenerated text can be told from the kept text."""
    blocks: list[ContentBlock] = [b.model_copy(deep=True) for b in prefill.content]
    rest = [b.model_copy(deep=True) for b in continuation.content]
    last = blocks[-1]
    at_block, at_char = len(blocks), 0
    if rest and isinstance(last, ThinkingBlock) and isinstance(rest[0], ThinkingBlock) and not last.redacted:
        joined = _joined(last.thinking, rest[0].thinking)
        at_block, at_char = len(blocks) - 1, len(joined) - len(rest[0].thinking)
        blocks[-1] = ThinkingBlock(thinking=joined)  # a signature would not cover the joined text
        rest = rest[1:]
    elif rest and isinstance(last, TextBlock) and isinstance(rest[0], TextBlock):
        joined = _joined(last.text, rest[0].text)
        at_block, at_char = len(blocks) - 1, len(joined) - len(rest[0].text)
        blocks[-1] = TextBlock(text=joined)
        rest = rest[1:]
    metadata = {
        **continuation.metadata,
        "prefill": {"blocks": len(prefill.content), "continues_block": at_block, "at_char": at_char},
    }
    return Message(role="assistant", content=[*blocks, *rest], metadata=metadata)


def _usage(messages: list[Message]) -> dict[str, Any]:
    total: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for m in messages:
        usage = m.metadata.get("usage") or {}
        for key in total:
            total[key] += usage.get(key, 0)
    return total


async def run_experiment(
    ledger: Ledger,
    incident: Incident,
    spec: ExperimentSpec,
    *,
    subject: ModelClient,
    world: WorldFactory | None = None,
    grader: ModelClient | None = None,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ExperimentResult:
    """Run (or resume) an experiment and return its counts from the ledger."""
    arm = _Arm(ledger, incident, spec, subject, world, grader)
    gate = asyncio.Semaphore(concurrency)
    try:
        await arm.prepare_world()
        rule = spec.sequential
        if rule is None:
            await arm.run_indices(list(range(spec.n)), gate, progress)
            result = arm.result("fixed n")
        elif rule.kind == "threshold":
            result = await _run_threshold(arm, rule, gate, progress)
        else:
            result = await _run_against_reference(arm, rule, gate, progress, subject, world, grader)
    finally:
        await arm.close()
    ledger.finish_experiment(arm.id, stop_reason=result.stop_reason)
    ledger.event("experiment", experiment_id=arm.id, label=spec.label, k=result.k, n=result.n, stop=result.stop_reason)
    return result


async def _run_threshold(
    arm: _Arm, rule: SequentialRule, gate: asyncio.Semaphore, progress: Callable[[int], None] | None
) -> ExperimentResult:
    if rule.threshold is None:
        raise ExperimentError("a threshold rule needs `threshold`")
    test = RateThresholdTest(rule.threshold, rule.alpha, max_n=arm.spec.n)
    done = 0
    while done < arm.spec.n:
        upto = min(arm.spec.n, done + rule.batch)
        await arm.run_indices(list(range(done, upto)), gate, progress)
        done = upto
        counts = arm.ledger.counts(arm.id)
        decision = test.update(counts.k, counts.n)
        if decision.stopped:
            return arm.result(f"sequential: {decision}", samples_saved=arm.spec.n - done)
    return arm.result("sequential: budget spent")


async def _run_against_reference(
    arm: _Arm,
    rule: SequentialRule,
    gate: asyncio.Semaphore,
    progress: Callable[[int], None] | None,
    subject: ModelClient,
    world: WorldFactory | None,
    grader: ModelClient | None,
) -> ExperimentResult:
    if rule.reference is None:
        raise ExperimentError("a reference rule needs the `reference` experiment spec")
    ref = _Arm(arm.ledger, arm.incident, rule.reference.model_copy(update={"n": arm.spec.n}), subject, world, grader)
    test = TwoArmTest(rule.alpha, max_n=arm.spec.n, futility_odds_ratio=rule.futility_odds_ratio)
    try:
        await ref.prepare_world()
        done = 0
        while done < arm.spec.n:
            upto = min(arm.spec.n, done + rule.batch)
            batch = list(range(done, upto))
            await asyncio.gather(ref.run_indices(batch, gate, None), arm.run_indices(batch, gate, progress))
            done = upto
            mine = arm.ledger.samples(arm.id)[:done]
            theirs = arm.ledger.samples(ref.id)[:done]
            k1 = sum(bool(s.detected) for s in mine)
            k2 = sum(bool(s.detected) for s in theirs)
            decision = test.update(k1, done, k2, done)
            if decision.stopped and decision.outcome is not Outcome.INCONCLUSIVE:
                arm.ledger.finish_experiment(ref.id, stop_reason=f"reference of {arm.id}")
                _record_decision(arm, ref, rule, decision)
                return arm.result(f"sequential vs {rule.reference.label}: {decision}", samples_saved=arm.spec.n - done)
        arm.ledger.finish_experiment(ref.id, stop_reason=f"reference of {arm.id}")
        if test.decision is not None:
            _record_decision(arm, ref, rule, test.decision)
        return arm.result("sequential: budget spent, not decided")
    finally:
        await ref.close()


def judged_where_it_can_be(spec: ExperimentSpec, incident: Incident, world: WorldFactory | None) -> ExperimentSpec:
    """A next_turn spec whose detector reads the world's final state (a `command` part
    that no sandbox-free part can stand in for) becomes a one-turn rollout: the resampled
    turn is executed in the rebuilt world and judged there. Other specs are unchanged;
    a reference arm of a sequential rule is converted the same way."""
    if spec.mode != "next_turn" or world is None or spec.prefill is not None:
        return spec
    detector = spec.detector or incident.behavior
    if sandbox_free(detector) is not None:
        return spec
    update: dict[str, Any] = {"mode": "rollout", "max_turns": 1}
    rule = spec.sequential
    if rule is not None and rule.reference is not None:
        update["sequential"] = rule.model_copy(
            update={"reference": judged_where_it_can_be(rule.reference, incident, world)}
        )
    return spec.model_copy(update=update)


SEQUENTIAL_EVENT = "sequential"
"""Ledger event recording a sequential comparison's last decision (read by the report)."""


def _record_decision(arm: _Arm, ref: _Arm, rule: SequentialRule, decision: Decision) -> None:
    arm.ledger.event(
        SEQUENTIAL_EVENT,
        experiment_id=arm.id,
        reference_id=ref.id,
        outcome=decision.outcome.value,
        direction=decision.direction,
        e_value=decision.e_value,
        n_per_arm=decision.n // 2,
        max_n_per_arm=arm.spec.n,
        alpha=rule.alpha,
        futility_odds_ratio=rule.futility_odds_ratio,
    )


def prefix_for(incident: Incident, variant: Variant, start_turn: int | None = None) -> Transcript:
    """The context an experiment samples from (for display and tests)."""
    transcript = variant.apply(incident).transcript
    turn = incident.flagged_turn_index if start_turn is None else start_turn
    return transcript.prefix(turn)
