"""The one protocol for every model the system talks to, and its accounting.

Subjects, the investigator, the judge, graders and the tool simulator all implement
`ModelClient.generate(transcript, *, n, seed, temperature, max_tokens, tools)`,
returning `n` sampled assistant `Message`s. Each message's metadata carries its
`usage` (tokens and estimated dollars), the `model` string and the `seed`; the client
also adds every call to its `UsageMeter`, so budgets can be enforced by reading one
object. `generate` holds a per-client semaphore: at most `max_concurrency` calls run
at once against one model.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from tools.errors import ForensicsError
from tools.transcript import Message, ToolSpec, Transcript


class ModelError(ForensicsError):
    """A model call failed for a reason the caller should see (bad request, auth,
    exhausted retries)."""


class ModelConfigError(ModelError):
    """A model string or its options are wrong (unknown provider, missing key)."""


class Usage(BaseModel):
    """Tokens and estimated dollars of one call (or a sum of calls)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class CallRecord(BaseModel):
    """One API (or local) call: which model, how many samples, what it cost, how long."""

    model: str
    n: int
    usage: Usage
    seconds: float
    seed: int | None = None


class UsageMeter(BaseModel):
    """Running totals of every call a client made."""

    calls: list[CallRecord] = Field(default_factory=list)

    @property
    def total(self) -> Usage:
        out = Usage()
        for call in self.calls:
            out = out + call.usage
        return out

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)


class Pricing(BaseModel):
    """Dollars per million tokens; used to estimate `Usage.cost_usd`."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        ) / 1_000_000


class ModelClient(abc.ABC):
    """A model behind the common protocol. Subclasses implement `_generate`."""

    provider: ClassVar[str]

    def __init__(self, name: str, *, max_concurrency: int = 8, pricing: Pricing | None = None) -> None:
        self.name = name
        self.model_string = f"{self.provider}/{name}"
        self.pricing = pricing or Pricing()
        self.meter = UsageMeter()
        self._gate = asyncio.Semaphore(max_concurrency)

    async def generate(
        self,
        transcript: Transcript,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[Message]:
        """Sample `n` assistant messages continuing `transcript`. `tools` defaults to the
        transcript's own tools; `seed` makes samples reproducible where the backend can."""
        if n < 1:
            raise ModelError(f"n must be at least 1 (got {n})")
        offered = list(transcript.tools if tools is None else tools)
        async with self._gate:
            started = time.monotonic()
            messages, usage = await self._generate(
                transcript, n=n, seed=seed, temperature=temperature, max_tokens=max_tokens, tools=offered
            )
            elapsed = time.monotonic() - started
        if usage.cost_usd == 0.0:
            usage = usage.model_copy(update={"cost_usd": self.pricing.cost(usage)})
        self.meter.record(CallRecord(model=self.model_string, n=n, usage=usage, seconds=elapsed, seed=seed))
        share = _split_usage(usage, len(messages))
        for i, message in enumerate(messages):
            message.metadata.setdefault("model", self.model_string)
            message.metadata.setdefault("usage", share.model_dump())
            if seed is not None:
                message.metadata.setdefault("seed", seed + i)
        return messages

    @abc.abstractmethod
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
        """Backend call: `n` messages and the usage of the whole call."""

    async def aclose(self) -> None:
        """Release connections or loaded weights. Default: nothing to release."""
        return None

    def describe(self) -> dict[str, Any]:
        """What to record about this client in a run's ledger."""
        return {"model": self.model_string}


def _split_usage(usage: Usage, parts: int) -> Usage:
    if parts <= 1:
        return usage
    return Usage(
        input_tokens=usage.input_tokens // parts,
        output_tokens=usage.output_tokens // parts,
        cache_read_tokens=usage.cache_read_tokens // parts,
        cache_write_tokens=usage.cache_write_tokens // parts,
        cost_usd=usage.cost_usd / parts,
    )
