"""Replay to step k: rebuild the world the subject saw before turn k.

Starting from the scenario's fresh sandbox, re-execute the transcript's own tool calls
of turns 0..k-1 in order and compare each output with the recorded one. The world is
usually not perfectly deterministic (commit hashes, timestamps), so each comparison
carries a similarity in [0, 1]; those below the threshold are divergences, returned as
data for the report rather than hidden or fatal. `replay_and_snapshot` then freezes
the replayed state so counterfactual rollouts can fork from it.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, Field

from sandboxes.base import Sandbox, SnapshotRef
from tools.errors import TranscriptError
from tools.toolmap import ToolMapping, ToolMappingError
from tools.transcript import Transcript

DEFAULT_THRESHOLD = 0.9
_HEX_RUN = re.compile(r"\b[0-9a-f]{7,40}\b")


class ReplayStep(BaseModel):
    """One recorded tool call re-executed (or skipped, with the reason)."""

    turn: int
    tool_use_id: str
    tool: str
    command: str | None
    expected: str
    got: str | None
    similarity: float | None
    divergent: bool
    skipped: str | None = None
    timed_out: bool = False


class ReplayReport(BaseModel):
    """Everything a replay did, in order."""

    upto_turn: int
    backend: str
    threshold: float
    steps: list[ReplayStep] = Field(default_factory=list)

    @property
    def divergences(self) -> list[ReplayStep]:
        return [s for s in self.steps if s.divergent]

    @property
    def executed(self) -> int:
        return sum(1 for s in self.steps if s.skipped is None)

    def summary(self) -> str:
        """One line for logs and reports."""
        skipped = len(self.steps) - self.executed
        return (
            f"replayed {self.executed} tool calls before turn {self.upto_turn} on {self.backend}"
            f" ({skipped} passive skipped): {len(self.divergences)} diverged from the recording"
            f" (similarity < {self.threshold:g})"
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
    report = ReplayReport(upto_turn=upto_turn, backend=sandbox.backend, threshold=threshold)
    for turn in turns[:upto_turn]:
        results = {r.tool_use_id: r for r in turn.results}
        for call in turn.tool_uses:
            recorded = results.get(call.id)
            expected = recorded.text if recorded is not None else ""
            skipped = ReplayStep(
                turn=turn.index,
                tool_use_id=call.id,
                tool=call.name,
                command=None,
                expected=expected,
                got=None,
                similarity=None,
                divergent=False,
            )
            try:
                tool = tools.for_call(call)
                command = None if tool.passive else tool.render_command(call.input)
            except ToolMappingError as exc:
                # A call that cannot be replayed leaves the world unknown: count it as divergent.
                report.steps.append(skipped.model_copy(update={"divergent": True, "skipped": str(exc)}))
                continue
            if command is None:
                report.steps.append(skipped.model_copy(update={"skipped": "passive tool: nothing to execute"}))
                continue
            result = await sandbox.exec(command, timeout=tool.timeout_s)
            got = tool.render_output(result)
            score = similarity(expected, got)
            report.steps.append(
                ReplayStep(
                    turn=turn.index,
                    tool_use_id=call.id,
                    tool=call.name,
                    command=command,
                    expected=expected,
                    got=got,
                    similarity=round(score, 4),
                    divergent=score < threshold,
                    timed_out=result.timed_out,
                )
            )
    return report


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
