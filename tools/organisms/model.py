"""``organism/<id>``: a synthetic subject behind the common model protocol.

Each sample is seeded: sample *i* of a call with seed *s* draws from
``Random(f"{organism}:{s + i}:{turn}")``, so equal seeds give equal outputs and a
rollout's turns are independent draws. Token usage is counted as words (there is no
API bill), which keeps budgets meaningful in offline runs.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from tools.models.base import ModelClient, Usage
from tools.organisms.features import Embedder
from tools.organisms.policy import policy_for
from tools.organisms.registry import find_organism
from tools.organisms.spec import OrganismSpec
from tools.transcript import Message, ToolSpec, Transcript


class OrganismModel(ModelClient):
    """A model organism: a seeded stochastic policy with known truth."""

    provider: ClassVar[str] = "organism"

    def __init__(
        self,
        name: str,
        *,
        spec: OrganismSpec | None = None,
        organism_dirs: list[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.spec = spec or find_organism(name, organism_dirs or [])
        self.policy = policy_for(self.spec)

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
        context = transcript if list(tools) == transcript.tools else transcript.model_copy(update={"tools": tools})
        base = 0 if seed is None else seed
        turn = sum(1 for m in transcript.messages if m.role == "assistant")
        out: list[Message] = []
        for i in range(n):
            rng = random.Random(f"{self.spec.id}:{base + i}:{turn}")
            out.append(self.policy.respond(context, rng))
        prompt_words = len(transcript.render().split())
        output_words = sum(len(m.model_dump_json().split()) for m in out)
        return out, Usage(input_tokens=prompt_words * n, output_tokens=output_words)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_string,
            "organism": self.spec.id,
            "feature_method": "embedding" if Embedder.available() else "keywords",
            "feature_fallback_reason": Embedder.unavailable_reason(),
        }
