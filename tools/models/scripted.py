"""A model that replays a script: a list of messages, or a function of the conversation.

For tests, for the protocol planner's canned moves, and for anything that needs a
deterministic subject. ``scripted/<name>`` resolves through the registry with
``messages=[...]`` or ``respond=fn``; the default (no script) echoes the last user
text, which is enough for smoke tests of the plumbing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from tools.models.base import ModelClient, ModelError, Usage
from tools.transcript import Message, TextBlock, ToolSpec, Transcript

Responder = Callable[[Transcript, int], Message | str | Awaitable[Message | str]]
"""``respond(transcript, sample_index)`` -> the next assistant message (or its text)."""


def _as_message(value: Message | str) -> Message:
    if isinstance(value, str):
        return Message(role="assistant", content=[TextBlock(text=value)])
    if value.role != "assistant":
        raise ModelError(f"a scripted model must produce assistant messages, got role {value.role!r}")
    return value.model_copy(deep=True)


class ScriptedModel(ModelClient):
    """Replays `messages` in order (one per sample, wrapping around when `cycle`), or
    calls `respond`. Token usage is counted as words, so budgets can be tested."""

    provider: ClassVar[str] = "scripted"

    def __init__(
        self,
        name: str = "script",
        *,
        messages: Sequence[Message | str] | None = None,
        respond: Responder | None = None,
        cycle: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        if messages is not None and respond is not None:
            raise ModelError("give a scripted model either messages or respond, not both")
        self._script = [_as_message(m) for m in messages] if messages is not None else None
        self._respond = respond
        self._cycle = cycle
        self._position = 0
        self.seen: list[Transcript] = []
        """Every transcript the model was asked to continue (tests inspect prompts)."""

    async def _next(self, transcript: Transcript, index: int) -> Message:
        if self._respond is not None:
            value = self._respond(transcript, index)
            if inspect.isawaitable(value):
                value = await value
            return _as_message(value)
        if self._script is None:
            last = next((m.text for m in reversed(transcript.messages) if m.role == "user" and m.text), "")
            return _as_message(f"echo: {last}")
        if self._position >= len(self._script):
            if not self._cycle:
                raise ModelError(f"scripted model {self.name!r} ran out of its {len(self._script)} messages")
            self._position = 0
        message = self._script[self._position]
        self._position += 1
        return message.model_copy(deep=True)

    async def _generate(
        self,
        transcript: Transcript,
        *,
        n: int,
        seed: int | None,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[ToolSpec],
    ) -> tuple[list[Message], Usage]:
        self.seen.append(transcript.model_copy(deep=True))
        out = [await self._next(transcript, i) for i in range(n)]
        prompt_words = len(transcript.render().split())
        output_words = sum(len(m.model_dump_json().split()) for m in out)
        return out, Usage(input_tokens=prompt_words * n, output_tokens=output_words)
