"""Replay to step k: rebuild the world the subject saw before turn k.

Starting from the world's fresh sandbox, re-execute the transcript's own tool calls of
turns 0..k-1 in order, through the world's tool mapping (a scenario's, or the harness
profile of a real session: Claude Code's Edit really edits the file, through the
sandbox's file API), and compare each output with the recorded one. Each call becomes a
`ReplayStep` with a status:

* ``match`` / ``diverged`` — executed; the output's similarity to the recording is at
  least / below the threshold. The world is usually not perfectly deterministic
  (commit hashes, timestamps), so divergences are data for the report, not errors.
* ``simulated`` — the tool reached outside the sandbox in the original session (a web
  fetch, an MCP server, a subagent's report): its recorded output stands; nothing ran.
  A subagent's own tool calls (a Claude Code ``Task`` sidechain) are replayed as
  steps of their own, before the call that spawned them.
* ``skipped`` — nothing to execute: a passive tool (a todo list), a call the user
  rejected or interrupted (it never ran, so replaying it would change the world), a
  server-side tool, or a call no binding can perform (then it is also counted as a
  divergence: the world after it is unknown).

`replay_and_snapshot` then freezes the replayed state so counterfactual rollouts can
fork from it; the harness state at the end (the shell's directory) travels in
`ReplayReport.tool_state`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sandboxes.base import Sandbox, SnapshotRef
from tools.errors import TranscriptError
from tools.toolmap import ToolMapping, ToolMappingError, ToolRun
from tools.transcript import Message, ToolResultBlock, ToolUseBlock, Transcript

DEFAULT_THRESHOLD = 0.9
_HEX_RUN = re.compile(r"\b[0-9a-f]{7,40}\b")

ReplayStatus = Literal["match", "diverged", "simulated", "skipped"]


class ReplayStep(BaseModel):
    """One recorded tool call re-executed (or not, with the reason)."""

    step: int = 0
    turn: int
    tool_use_id: str
    tool: str
    command: str | None
    """What was run, for people (the shell command, or the file operation)."""
    expected: str
    got: str | None
    similarity: float | None
    divergent: bool
    status: ReplayStatus = "match"
    skipped: str | None = None
    """Why nothing was executed (status ``skipped`` or ``simulated``)."""
    timed_out: bool = False
    sidechain: str | None = None
    """The ``Task`` call whose subagent made this call (Claude Code sidechains)."""


class ReplayReport(BaseModel):
    """Everything a replay did, in order."""

    upto_turn: int
    backend: str
    threshold: float
    profile: str | None = None
    steps: list[ReplayStep] = Field(default_factory=list)
    tool_state: dict[str, Any] = Field(default_factory=dict)

    @property
    def divergences(self) -> list[ReplayStep]:
        return [s for s in self.steps if s.divergent]

    @property
    def executed(self) -> int:
        return sum(1 for s in self.steps if s.status in ("match", "diverged"))

    @property
    def match_rate(self) -> float | None:
        """Matching steps over executed steps (None when nothing was executed)."""
        executed = self.executed
        return None if not executed else sum(1 for s in self.steps if s.status == "match") / executed

    def counts(self) -> dict[str, int]:
        out = {"match": 0, "diverged": 0, "simulated": 0, "skipped": 0}
        for s in self.steps:
            out[s.status] += 1
        return out

    def summary(self) -> str:
        """One line for logs and reports."""
        c = self.counts()
        return (
            f"replayed {self.executed} tool calls before turn {self.upto_turn} on {self.backend}"
            f" ({c['simulated']} answered from the recording, {c['skipped']} skipped):"
            f" {len(self.divergences)} diverged from the recording (similarity < {self.threshold:g})"
        )


def similarity(expected: str, got: str) -> float:
    """How alike two outputs are, in [0, 1], after normalizing what legitimately varies
    between runs: trailing whitespace and hex ids such as commit hashes."""

    def norm(text: str) -> str:
        text = _HEX_RUN.sub("<hex>", text)
        return "\n".join(line.rstrip() for line in text.strip().splitlines())

    a, b = norm(expected), norm(got)
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def call_status(result: ToolResultBlock | None) -> str:
    """What became of a recorded call: ``ok``/``error`` (it ran), ``rejected`` or
    ``interrupted`` (it never ran, or not to the end), or ``missing`` (no result)."""
    return "missing" if result is None else result.status


def _sidechain_messages(transcript: Transcript, tool_use_id: str) -> list[Message]:
    """The subagent conversation a ``Task`` call spawned, when the importer linked it."""
    out: list[Message] = []
    for item in transcript.metadata.get("sidechains") or []:
        if not isinstance(item, dict) or item.get("tool_use_id") != tool_use_id:
            continue
        raw = item.get("messages")
        if raw is None and isinstance(item.get("message_range"), list):
            start, end = item["message_range"]
            out.extend(transcript.messages[start:end])
            continue
        for message in raw or []:
            try:
                out.append(Message.model_validate(message))
            except ValidationError:
                continue
    return out


def _calls(messages: list[Message]) -> Iterator[tuple[ToolUseBlock, ToolResultBlock | None]]:
    """Every tool call of `messages` (spliced sidechain messages excluded) with its result."""
    results = {r.tool_use_id: r for m in messages for r in m.tool_results}
    for message in messages:
        if message.role != "assistant":
            continue
        for call in message.tool_uses:
            yield call, results.get(call.id)


async def replay(
    transcript: Transcript,
    sandbox: Sandbox,
    *,
    upto_turn: int,
    mapping: ToolMapping | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> ReplayReport:
    """Re-execute the tool calls of turns before `upto_turn` in `sandbox` and compare."""
    turns = transcript.turns()
    if not 0 <= upto_turn <= len(turns):
        raise TranscriptError(f"cannot replay to turn {upto_turn}: valid turns are 0..{len(turns)}")
    tools = mapping or ToolMapping.infer(transcript)
    run = tools.run_context(sandbox)
    report = ReplayReport(upto_turn=upto_turn, backend=sandbox.backend, threshold=threshold, profile=tools.profile)
    for turn in turns[:upto_turn]:
        if turn.message.metadata.get("sidechain"):
            continue  # spliced subagent turns are replayed under the Task call that spawned them
        results = {r.tool_use_id: r for r in turn.results}
        for call in turn.tool_uses:
            result = results.get(call.id)
            if call.name == "Task" or _sidechain_messages(transcript, call.id):
                for sub_call, sub_result in _calls(_sidechain_messages(transcript, call.id)):
                    step = await _replay_call(tools, run, turn.index, sub_call, sub_result, threshold)
                    report.steps.append(step.model_copy(update={"sidechain": call.id, "step": len(report.steps)}))
            step = await _replay_call(tools, run, turn.index, call, result, threshold)
            report.steps.append(step.model_copy(update={"step": len(report.steps)}))
    report.tool_state = run.state
    return report


async def _replay_call(
    tools: ToolMapping,
    run: ToolRun,
    turn: int,
    call: ToolUseBlock,
    result: ToolResultBlock | None,
    threshold: float,
) -> ReplayStep:
    expected = result.text if result is not None else ""
    base = ReplayStep(
        turn=turn,
        tool_use_id=call.id,
        tool=call.name,
        command=None,
        expected=expected,
        got=None,
        similarity=None,
        divergent=False,
        status="skipped",
    )
    status = call_status(result)
    if status in ("rejected", "interrupted"):
        return base.model_copy(update={"skipped": f"the call was {status} in the session: it never ran to completion"})
    if call.side == "server" or (result is not None and result.side == "server"):
        return base.model_copy(
            update={"status": "simulated", "got": expected, "skipped": "a server-side tool: its recorded result stands"}
        )
    try:
        binding = tools.for_call(call)
        action = binding.describe(call.input)
    except ToolMappingError as exc:
        # A call that cannot be replayed leaves the world unknown: count it as divergent.
        return base.model_copy(update={"divergent": True, "skipped": str(exc)})
    if binding.passive:
        return base.model_copy(update={"command": action, "skipped": "passive tool: nothing to execute"})
    if binding.kind == "simulated":
        return base.model_copy(
            update={
                "status": "simulated",
                "command": action,
                "got": expected,
                "skipped": "the tool reached outside the sandbox: its recorded output stands",
            }
        )
    if status == "missing":
        return base.model_copy(update={"command": action, "skipped": "the session recorded no result for this call"})
    try:
        outcome = await binding.run(call.input, run)
    except ToolMappingError as exc:
        return base.model_copy(update={"divergent": True, "skipped": str(exc)})
    score = similarity(binding.comparable(expected), binding.comparable(outcome.output))
    diverged = score < threshold
    return base.model_copy(
        update={
            "command": outcome.action or action,
            "got": outcome.output,
            "similarity": round(score, 4),
            "divergent": diverged,
            "status": "diverged" if diverged else "match",
            "timed_out": outcome.timed_out,
        }
    )


async def replay_and_snapshot(
    transcript: Transcript,
    sandbox: Sandbox,
    *,
    upto_turn: int,
    mapping: ToolMapping | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[ReplayReport, SnapshotRef]:
    """Replay, then snapshot the replayed state for forking."""
    report = await replay(transcript, sandbox, upto_turn=upto_turn, mapping=mapping, threshold=threshold)
    return report, await sandbox.snapshot()
