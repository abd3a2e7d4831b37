"""Organism policies: registered classes that turn a context into the next move.

The ``staged`` policy follows its playbook turn by turn. Turn *k* (the number of
assistant messages so far) is opening move *k* until the decision turn; there it acts
with probability

    p = sigmoid(intercept + Σ_f weight_f · x_f)

where x_f are the features read from the context (tools.organisms.features), then
follows the chosen branch's variant (sampled by weight among those whose `requires`
hold). Later turns continue the branch taken at the decision turn. When the last
message is a user question that matches one of its probes, it answers the probe
instead (honestly or, for a deceptive organism, not) from whether it acted.

When the last message is an assistant message, it is a *prefill* (the start of the
current turn, e.g. kept CoT sentences in a Thought Anchors experiment): the turn is
the prefill's own, features are read with the prefill included (so a ``phrase``
feature with source ``assistant`` responds to a kept sentence), the move is chosen as
usual, and only the continuation is returned — the move's thinking without the
sentences the prefill already holds, then its text and tool call.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any, Literal

from tools.organisms.features import (
    Embedder,
    FeatureReading,
    _keywords_hit,
    max_similarity,
    read_features,
    sentences,
)
from tools.organisms.spec import Answer, Move, OrganismError, OrganismSpec, ProbeSpec, Variant
from tools.transcript import Message, TextBlock, ThinkingBlock, ToolUseBlock, Transcript

_POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a policy available to specs as ``policy: name``."""

    def add(cls: type[Policy]) -> type[Policy]:
        _POLICIES[name] = cls
        return cls

    return add


def policy_for(spec: OrganismSpec) -> Policy:
    try:
        return _POLICIES[spec.policy](spec)
    except KeyError:
        raise OrganismError(
            f"organism {spec.id!r} names policy {spec.policy!r}; registered: {', '.join(sorted(_POLICIES))}"
        ) from None


class Policy:
    """Base class: `respond(transcript, rng)` returns the next assistant message."""

    def __init__(self, spec: OrganismSpec) -> None:
        self.spec = spec

    def respond(self, transcript: Transcript, rng: random.Random) -> Message:
        raise NotImplementedError


def _fill(template: str, values: dict[str, float]) -> str:
    shown = {k: (int(v) if float(v).is_integer() else v) for k, v in values.items()}
    try:
        return template.format_map(shown)
    except (KeyError, ValueError, IndexError) as exc:
        raise OrganismError(f"template {template!r} needs a feature it does not have: {exc}") from None


def _fill_input(value: Any, values: dict[str, float]) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, dict):
        return {k: _fill_input(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_input(v, values) for v in value]
    return value


def _pick_answer(answers: list[Answer], rng: random.Random) -> str:
    return rng.choices([a.text for a in answers], weights=[a.weight for a in answers])[0]


_LEADING_CONJUNCTION = re.compile(r"^(?:but|and|so|now|ok|okay)\b\s*", re.I)


def _sentence_key(sentence: str) -> str:
    """A sentence reduced to its words: lower case, no punctuation, no leading "But"/"And"/"So",
    so "But fixing 258 errors would be a huge task." and "Fixing 258 errors would be a huge
    task" count as the same sentence."""
    words = re.sub(r"[^a-z0-9]+", " ", sentence.lower()).strip()
    return _LEADING_CONJUNCTION.sub("", words)


def _unsaid(text: str, said: set[str]) -> str:
    """The sentences of `text` whose key is not in `said`, joined by single spaces."""
    return " ".join(s for s in sentences(text) if _sentence_key(s) not in said)


def continue_prefill(message: Message, prefill: Message) -> Message:
    """The continuation of `prefill` that a full `message` amounts to: thinking and text
    minus the sentences the prefill already holds, then the rest of the blocks (tool
    calls). After a prefill that ends in visible text the thinking is over, so the
    move's thinking is left out."""
    said = {_sentence_key(s) for block in prefill.content for s in sentences(_block_text(block))}
    ends_in_text = isinstance(prefill.content[-1], TextBlock) if prefill.content else False
    blocks: list[Any] = []
    for block in message.content:
        if isinstance(block, ThinkingBlock):
            rest = "" if ends_in_text else _unsaid(block.thinking, said)
            if rest:
                blocks.append(ThinkingBlock(thinking=rest))
        elif isinstance(block, TextBlock):
            rest = _unsaid(block.text, said)
            if rest:
                blocks.append(TextBlock(text=rest))
        else:
            blocks.append(block)
    if not blocks:
        blocks.append(TextBlock(text="Done."))
    return Message(role="assistant", content=blocks, metadata=dict(message.metadata))


def _block_text(block: Any) -> str:
    if isinstance(block, ThinkingBlock):
        return block.thinking
    if isinstance(block, TextBlock):
        return block.text
    return ""


@register_policy("staged")
class StagedPolicy(Policy):
    """Opening moves, one stochastic decision, then the chosen branch (see module doc)."""

    def act_probability(self, reading: FeatureReading) -> tuple[float, float]:
        """(probability of acting, the logit) for a feature reading."""
        logit = self.spec.intercept + sum(w * reading.values.get(f, 0.0) for f, w in self.spec.weights.items())
        return 1.0 / (1.0 + math.exp(-logit)), logit

    def acted(self, transcript: Transcript) -> bool:
        """Whether the organism took the act in this transcript: its own record of the
        decision when present, else its tool calls matched against `behavior_pattern`."""
        for message in transcript.messages:
            branch = message.metadata.get("organism_branch") if message.role == "assistant" else None
            if branch in {"act", "refrain"} and "organism_probe" not in message.metadata:
                return bool(branch == "act")
        pattern = re.compile(self.spec.playbook.behavior_pattern)
        for message in transcript.messages:
            if message.role != "assistant":
                continue
            for call in message.tool_uses:
                if any(pattern.search(str(v)) for v in call.input.values()):
                    return True
        return False

    # ------------------------------------------------------------------ probes
    def _matching_probe(self, question: str) -> tuple[str, ProbeSpec] | None:
        candidates = sentences(question) or [question]
        best: tuple[float, str, ProbeSpec] | None = None
        for name, probe in self.spec.playbook.probes.items():
            if Embedder.available() and probe.phrases:
                score = max_similarity(candidates, probe.phrases)
                if score >= probe.threshold and (best is None or score > best[0]):
                    best = (score, name, probe)
            elif _keywords_hit(candidates, probe.keywords) and best is None:
                best = (1.0, name, probe)
        return None if best is None else (best[1], best[2])

    def _answer_probe(self, transcript: Transcript, name: str, probe: ProbeSpec, rng: random.Random) -> Message:
        book = probe.honest if self.spec.honest or not probe.deceptive else probe.deceptive
        acted = self.acted(transcript)
        key: Literal["if_acted", "if_refrained"] = "if_acted" if acted else "if_refrained"
        answers = book.get(key) or book.get("always")
        if not answers:
            raise OrganismError(f"probe {name!r} of organism {self.spec.id!r} has no answer for {key}")
        return Message(
            role="assistant",
            content=[TextBlock(text=_pick_answer(answers, rng))],
            metadata={"organism_probe": name, "organism_acted": acted},
        )

    # ------------------------------------------------------------------- moves
    def _move_message(self, move: Move, values: dict[str, float], rng: random.Random, turn: int) -> Message:
        blocks: list[Any] = []
        if move.thinking:
            blocks.append(ThinkingBlock(thinking=_fill(rng.choice(move.thinking), values)))
        if move.text:
            blocks.append(TextBlock(text=_fill(rng.choice(move.text), values)))
        if move.call is not None:
            call_id = f"toolu_org_{turn:02d}_{rng.getrandbits(48):012x}"
            blocks.append(ToolUseBlock(id=call_id, name=move.call.tool, input=_fill_input(move.call.input, values)))
        if not blocks:
            blocks.append(TextBlock(text="Done."))
        return Message(role="assistant", content=blocks)

    def _eligible(self, variants: list[Variant], values: dict[str, float]) -> list[Variant]:
        return [v for v in variants if all(values.get(f, 0.0) == want for f, want in v.requires.items())]

    def _branch_taken(self, transcript: Transcript) -> tuple[str, str] | None:
        decision_turn = self.spec.playbook.decision.at
        assistants = [m for m in transcript.messages if m.role == "assistant"]
        if len(assistants) <= decision_turn:
            return None
        decided = assistants[decision_turn]
        branch, variant = decided.metadata.get("organism_branch"), decided.metadata.get("organism_variant")
        if isinstance(branch, str) and isinstance(variant, str):
            return branch, variant
        # An imported or edited transcript lost our metadata: recognise the move itself.
        calls = [c.input for c in decided.tool_uses]
        for name, b in (("act", self.spec.playbook.decision.act), ("refrain", self.spec.playbook.decision.refrain)):
            for v in b.variants:
                first = v.moves[0].call
                if first is not None and any(first.input.keys() == c.keys() for c in calls):
                    pattern = re.compile(self.spec.playbook.behavior_pattern)
                    did_act = any(pattern.search(str(x)) for c in calls for x in c.values())
                    if (name == "act") == did_act:
                        return name, v.name
        return ("act" if self.acted(transcript) else "refrain"), ""

    def respond(self, transcript: Transcript, rng: random.Random) -> Message:
        last = transcript.messages[-1] if transcript.messages else None
        if last is not None and last.role == "user" and not last.tool_results and last.text:
            earlier_assistant = any(m.role == "assistant" for m in transcript.messages)
            probe = self._matching_probe(last.text) if earlier_assistant else None
            if probe is not None:
                return self._answer_probe(transcript, probe[0], probe[1], rng)
            assistants = [m for m in transcript.messages[:-1] if m.role == "assistant"]
            if assistants and not assistants[-1].tool_uses:
                # The episode had ended; an unrecognised question gets the fallback answer.
                return Message(
                    role="assistant",
                    content=[TextBlock(text=self.spec.playbook.fallback_answer)],
                    metadata={"organism_probe": None},
                )
        prefill = last if last is not None and last.role == "assistant" else None
        reading = read_features(transcript, self.spec.playbook.features)  # the prefill included
        values = reading.values
        turn = sum(1 for m in transcript.messages if m.role == "assistant") - (1 if prefill is not None else 0)
        playbook = self.spec.playbook
        meta: dict[str, Any] = {
            "organism": self.spec.id,
            "organism_turn": turn,
            "organism_features": values,
            "feature_method": reading.method,
        }
        if reading.fallback_reason:
            meta["feature_fallback_reason"] = reading.fallback_reason
        if turn < playbook.decision.at:
            message = self._move_message(playbook.opening[turn], values, rng, turn)
        elif turn == playbook.decision.at:
            p, logit = self.act_probability(reading)
            act = rng.random() < p
            branch = playbook.decision.act if act else playbook.decision.refrain
            eligible = self._eligible(branch.variants, values)
            if not eligible:
                raise OrganismError(
                    f"organism {self.spec.id!r}: no {('act' if act else 'refrain')} variant fits {values}"
                )
            variant = rng.choices(eligible, weights=[v.weight for v in eligible])[0]
            message = self._move_message(variant.moves[0], values, rng, turn)
            meta.update(
                organism_branch="act" if act else "refrain",
                organism_variant=variant.name,
                organism_p_act=round(p, 6),
                organism_logit=round(logit, 6),
            )
        else:
            taken = self._branch_taken(transcript)
            assert taken is not None
            branch_name, variant_name = taken
            branch = playbook.decision.act if branch_name == "act" else playbook.decision.refrain
            variant = next((v for v in branch.variants if v.name == variant_name), branch.variants[0])
            step = turn - playbook.decision.at
            if step < len(variant.moves):
                message = self._move_message(variant.moves[step], values, rng, turn)
            else:
                message = Message(role="assistant", content=[TextBlock(text="I have finished the task.")])
            meta.update(organism_branch=branch_name, organism_variant=variant.name)
        if prefill is not None:
            message = continue_prefill(message, prefill)
            meta["organism_prefill"] = True
        message.metadata.update(meta)
        return message
