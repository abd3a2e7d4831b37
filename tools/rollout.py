"""Sampling the subject: one turn, a whole episode in a sandbox, or a probe question.

- `next_turn`: n sampled assistant messages continuing a context (no execution).
- `rollout`: continue an episode: each sampled tool call is executed through the
  world's tool mapping (a scenario's, or a harness profile's) in a sandbox and its
  result appended, until the subject
  answers without a tool call, calls a terminal tool, or the turn cap is reached.
- `probe`: append a user question and sample the answers.

Everything is seeded: the same model, context and seed give the same samples (exactly
for organisms and local models; API models take the seed where they support it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from sandboxes.base import Sandbox
from tools.models.base import ModelClient
from tools.toolmap import ToolMapping, run_call
from tools.transcript import Message, TextBlock, ToolResultBlock, Transcript

EndReason = Literal["final_answer", "terminal_tool", "turn_cap"]


async def next_turn(
    model: ModelClient,
    transcript: Transcript,
    *,
    n: int = 1,
    seed: int = 0,
    temperature: float | None = None,
) -> list[Message]:
    """`n` samples of the subject's next assistant message (sample i uses seed + i)."""
    return await model.generate(transcript, n=n, seed=seed, temperature=temperature)


class Episode(BaseModel):
    """A finished rollout: the whole transcript and how it ended."""

    transcript: Transcript
    start_turn: int
    turns: int
    ended: EndReason
    backend: str
    provenance: dict[str, int] = Field(default_factory=dict)
    """How tool results were produced: counts of executed / recorded / simulated / passive."""


async def rollout(
    model: ModelClient,
    transcript: Transcript,
    sandbox: Sandbox,
    mapping: ToolMapping,
    *,
    max_turns: int = 30,
    seed: int = 0,
    temperature: float | None = None,
    tool_state: Mapping[str, Any] | None = None,
) -> Episode:
    """Continue `transcript` in `sandbox` until the episode ends (see module doc).
    `tool_state` continues the harness state a replay left (e.g. the shell's directory)."""
    current = transcript.model_copy(deep=True)
    start_turn = len(current.turns())
    run = mapping.run_context(sandbox, tool_state)
    provenance: dict[str, int] = {}
    ended: EndReason = "turn_cap"
    for _ in range(max_turns):
        message = (await model.generate(current, n=1, seed=seed, temperature=temperature))[0]
        current.messages.append(message)
        calls = message.tool_uses
        if not calls:
            ended = "final_answer"
            break
        results: list[ToolResultBlock] = []
        terminal = False
        for call in calls:
            outcome = await run_call(mapping, call, run)
            provenance[outcome.provenance] = provenance.get(outcome.provenance, 0) + 1
            results.append(
                ToolResultBlock(
                    tool_use_id=call.id, content=[TextBlock(text=outcome.output)], is_error=outcome.is_error
                )
            )
            if outcome.provenance != "error":
                terminal = terminal or mapping.for_call(call).terminal
        current.messages.append(Message(role="user", content=list(results)))
        if terminal:
            ended = "terminal_tool"
            break
    return Episode(
        transcript=current,
        start_turn=start_turn,
        turns=len(current.turns()) - start_turn,
        ended=ended,
        backend=sandbox.backend,
        provenance=provenance,
    )


async def probe(
    model: ModelClient,
    transcript: Transcript,
    question: str,
    *,
    n: int = 1,
    seed: int = 0,
    temperature: float | None = None,
) -> list[Message]:
    """Ask the subject `question` after `transcript` and sample `n` answers."""
    asked = transcript.model_copy(deep=True)
    asked.messages.append(Message(role="user", content=[TextBlock(text=question)], metadata={"probe": True}))
    return await model.generate(asked, n=n, seed=seed, temperature=temperature)
