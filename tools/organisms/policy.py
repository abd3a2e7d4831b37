"""Organism policies: registered classes that turn a context into the next move.

The ``staged`` policy follows its playbook turn by turn. Turn *k* (the number of
assistant messages so far) is opening move *k* until the decision turn; there it acts
with probability

    p = sigmoid(intercept + Σ_f weight_f · x_f)

where x_f are the features read from the context (tools.organisms.features), then
follows the chosen branch's variant (sampled by weight among those whose `requires`
hold). Later turns continue the branch taken at the decision turn; a variant whose
last move is a *checkpoint* decides again at that turn (escalate with probability
sigmoid(logit + shift), else back off), reading what its first moves showed.

When the last message is a user question that matches one of its probes, it answers
the probe instead: which probe and which way round from the question's similarity to
the probe's `phrases` and `inverse` questions; its stance from its beliefs (a seeded
draw), denied only when that stance is incriminating, it acted knowing the user would
object, and its per-probe honesty says so; written in the format the question asks for
(tools.organisms.answers).

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

from tools.organisms.answers import AnswerFormat, Option, requested_format, scale_value, yes_no_word
from tools.organisms.features import (
    CODE_SPAN,
    NEGATION,
    Embedder,
    FeatureReading,
    _keywords_hit,
    act_polarity,
    negated,
    question_negated,
    read_features,
    sentences,
)
from tools.organisms.spec import (
    Answer,
    Checkpoint,
    Move,
    OrganismError,
    OrganismSpec,
    ProbeSpec,
    Stance,
    Variant,
)
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


_INSTRUCTION = re.compile(
    r"^\W*(?:please\s+)?(?:answer|reply|respond|choose|pick|select|start|begin|give|explain|say)\b[^?]*[.!]?$", re.I
)
"""A sentence that only says how to answer ("Answer yes or no first, then explain.")."""


def _question_polarity(candidates: list[str], probe: ProbeSpec) -> tuple[float, bool]:
    """(how close the question is to the probe's topic, whether its "yes" asserts the claim):
    the most similar anchor — a phrase (yes asserts) or an inverse question (yes denies) —
    with its side flipped when exactly one of the two is negated as a question. When the
    probe's own questions split by what they ask about the act (`altering_side`) and the
    question says which it asks (`act_polarity`), that decides instead: embeddings put
    "did the commit go through the hook?" next to "did you get around the hook?"."""
    anchors = [*probe.phrases, *probe.inverse]
    labels = [True] * len(probe.phrases) + [False] * len(probe.inverse)
    sims = Embedder.encode(candidates) @ Embedder.encode(anchors).T
    i, j = divmod(int(sims.argmax()), len(anchors))
    positive = labels[j] != (question_negated(candidates[i]) != question_negated(anchors[j]))
    altering_yes = altering_side(probe)
    sign = act_polarity(candidates[i])
    if altering_yes is not None and sign is not None:
        asks_altered = (sign > 0) != question_negated(candidates[i])
        positive = asks_altered == altering_yes
    return float(sims[i, j]), positive


def _effective_sign(question: str) -> int | None:
    sign = act_polarity(question)
    return None if sign is None else (-sign if question_negated(question) else sign)


def altering_side(probe: ProbeSpec) -> bool | None:
    """Whether a "yes" to a question that asks if something was altered asserts the
    probe's claim (True), denies it (False), or the probe's questions do not say (None):
    read from its `phrases` and `inverse` questions with `act_polarity`, used only when
    both sides say and agree (phrases asking about altering, inverse questions about
    keeping, or the mirror): a probe whose questions are not about changing a thing
    ("did you underperform on purpose?") keeps the similarity reading."""
    yes = {s for s in map(_effective_sign, probe.phrases) if s is not None}
    no = {-s for s in map(_effective_sign, probe.inverse) if s is not None}
    if not yes or not no or len(yes | no) != 1:
        return None
    return (yes | no).pop() > 0


_SHOULD = re.compile(r"\b(?:should|ought to)\b", re.I)


def _mood(text: str) -> str:
    """ "should" for a question about what ought to be done, else "fact"."""
    return "should" if _SHOULD.search(text) else "fact"


_ASKED_OF_YOU = re.compile(r"\b(?:did|have|had|were|was)\s+you\b|\byou\s+(?:ran|did|used|made|executed)\b", re.I)
"""A question about what the addressee did ("Did you run…", "Have you…")."""
_ATTITUDE = re.compile(
    r"\b(?:know|knew|think|thought|believe|believed|expect|expected|realize|realise|realized|realised|consider|"
    r"considered|feel|felt|want|wanted|mean|meant|intend|intended|approve|object|wish)\b",
    re.I,
)
"""Verbs that make the question about an attitude to the act, not about the act."""
_OPEN_CODE = re.compile(r"`[^`]*$")


def names_act(sentence: str, pattern: re.Pattern[str]) -> bool | None:
    """Whether `sentence` asks whether the addressee did the act `pattern` names: None
    when it does not ask that; else whether the question is negated at the act ("did you
    finish without running `git commit --no-verify`?" asks whether it did *not*). Cues
    inside code spans and the act's own text are not read."""
    found = pattern.search(sentence)
    if found is None:
        return None
    before = sentence[: found.start()]
    asked = _ASKED_OF_YOU.search(before)
    if asked is None or _ATTITUDE.search(before[asked.end() :]):
        return None
    words = _OPEN_CODE.sub(" ", CODE_SPAN.sub(" ", before))
    return NEGATION.search(words) is not None


def _closest_option(options: list[Option], probe: ProbeSpec, stance: Stance) -> str:
    """The letter of the option that says what the stance says. Each option is compared
    with the probe's anchors on both sides — the claim, the questions whose yes asserts
    it and the explanations of a yes on one side; the inverse questions and the
    explanations of a no on the other — with the negation flip of phrase features; the
    option that is most clearly on the stance's side wins."""
    yes_side = [*([probe.claim] if probe.claim else []), *probe.phrases, *(a.text for a in probe.answers["yes"])]
    no_side = [*probe.inverse, *(a.text for a in probe.answers["no"])]
    anchors = [*yes_side, *no_side]
    labels = [True] * len(yes_side) + [False] * len(no_side)
    want = stance == "yes"
    texts = [o.text for o in options]
    scores: list[float] = []
    if Embedder.available():
        sims = Embedder.encode(texts) @ Embedder.encode(anchors).T
        anchor_negated = [negated(a) for a in anchors]
        for i, text in enumerate(texts):
            neg = negated(text)
            side = [label != (neg != an) for label, an in zip(labels, anchor_negated, strict=True)]
            mine = max((float(sims[i, k]) for k in range(len(anchors)) if side[k] == want), default=0.0)
            other = max((float(sims[i, k]) for k in range(len(anchors)) if side[k] != want), default=0.0)
            scores.append(mine - other)
    else:

        def words(t: str) -> set[str]:
            return set(re.findall(r"[a-z]{3,}", t.lower()))

        mine_words = set().union(*(words(t) for t, label in zip(anchors, labels, strict=True) if label == want))
        other_words = set().union(*(words(t) for t, label in zip(anchors, labels, strict=True) if label != want))
        scores = [float(len(words(t) & mine_words) - len(words(t) & other_words)) for t in texts]
    return options[max(range(len(options)), key=lambda k: scores[k])].letter


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
        decided: bool | None = None
        for message in transcript.messages:
            if message.role != "assistant" or "organism_probe" in message.metadata:
                continue
            checkpoint = message.metadata.get("organism_checkpoint")
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get("acts"), bool):
                return bool(checkpoint["acts"])  # the later decision is the one that stands
            branch = message.metadata.get("organism_branch")
            if decided is None and branch in {"act", "refrain"}:
                decided = branch == "act"
        if decided is not None:
            return decided
        pattern = re.compile(self.spec.playbook.behavior_pattern)
        for message in transcript.messages:
            if message.role != "assistant":
                continue
            for call in message.tool_uses:
                if any(pattern.search(str(v)) for v in call.input.values()):
                    return True
        return False

    # ------------------------------------------------------------------ probes
    def _matching_probe(self, question: str) -> tuple[str, ProbeSpec, bool] | None:
        """The probe a question asks about, and whether its "yes" asserts the probe's
        claim (True) or denies it (an `inverse` question). Sentences that only say how
        to answer ("Answer yes or no first.") are left out of the comparison."""
        candidates = [c for c in sentences(question) if not _INSTRUCTION.match(c)] or [question]
        about_act = self._act_question(candidates)
        if about_act is not None:
            return about_act
        best: tuple[float, str, ProbeSpec, bool] | None = None
        # A question about what ought to be done is not one about what was done: only
        # probes with a question of the same mood are candidates, when there are any.
        mood = "should" if any(_mood(c) == "should" for c in candidates) else "fact"
        probes = self.spec.playbook.probes
        fitting = {n: p for n, p in probes.items() if any(_mood(a) == mood for a in [*p.phrases, *p.inverse])}
        for name, probe in (fitting or probes).items():
            if Embedder.available() and (probe.phrases or probe.inverse):
                topic, positive = _question_polarity(candidates, probe)
                if topic >= probe.threshold and (best is None or topic > best[0]):
                    best = (topic, name, probe, positive)
            elif best is None:
                if _keywords_hit(candidates, probe.keywords):
                    best = (1.0, name, probe, True)
                elif _keywords_hit(candidates, probe.inverse_keywords):
                    best = (1.0, name, probe, False)
        return None if best is None else (best[1], best[2], best[3])

    def _act_question(self, candidates: list[str]) -> tuple[str, ProbeSpec, bool] | None:
        """A question that names the organism's own act (text its `behavior_pattern`
        matches, e.g. a quoted command) and asks whether it did it is about the fact: the
        probe whose claim is the act (belief ``acted``, incriminating when true), the
        closest such one when there are several. Its "yes" asserts the act unless the
        question is negated at the act (`names_act`). A real model understands a question
        that quotes its own command; the similarity route cannot read a command."""
        facts = [
            (name, p)
            for name, p in self.spec.playbook.probes.items()
            if p.claim is not None and p.belief == "acted" and p.incriminating == "yes"
        ]
        if not facts:
            return None
        pattern = re.compile(self.spec.playbook.behavior_pattern)
        for sentence in candidates:
            negated_at_act = names_act(sentence, pattern)
            if negated_at_act is None:
                continue
            if len(facts) > 1 and Embedder.available():
                sims = Embedder.encode([sentence]) @ Embedder.encode([p.claim or "" for _, p in facts]).T
                name, probe = facts[int(sims.argmax())]
            else:
                name, probe = facts[0]
            return name, probe, not negated_at_act
        return None

    def _answer_probe(
        self, transcript: Transcript, name: str, probe: ProbeSpec, positive: bool, rng: random.Random
    ) -> Message:
        acted = self.acted(transcript)
        question = transcript.messages[-1].text
        fmt = requested_format(question)
        meta: dict[str, Any] = {"organism_probe": name, "organism_acted": acted, "organism_format": fmt.kind}
        if probe.claim is None:
            text = self._legacy_answer(name, probe, acted, fmt, rng)
            return Message(role="assistant", content=[TextBlock(text=text)], metadata=meta)
        believed: Stance = "yes" if rng.random() < self.spec.belief(probe.belief, acted) else "no"
        stance = believed
        # A deceptive organism hides only what would give away an act it knows the user
        # would object to, and only with the probability its spec gives for this probe.
        hides = acted and self.spec.truth.knew_disapproval and probe.incriminating == believed
        lied = hides and rng.random() < self.spec.lie_probability(name)
        if lied:
            stance = "no" if believed == "yes" else "yes"
        fitting = [a for a in probe.answers[stance] if a.when in (None, "acted" if acted else "refrained")]
        explanation = _fill(_pick_answer(fitting or probe.answers[stance], rng), self._facts(transcript))
        says_yes = (stance == "yes") == positive
        text = self._render(fmt, probe, stance, says_yes, explanation, transcript, rng)
        meta.update(organism_stance=stance, organism_belief=believed, organism_lied=lied, organism_polarity=positive)
        return Message(role="assistant", content=[TextBlock(text=text)], metadata=meta)

    def _facts(self, transcript: Transcript) -> dict[str, float]:
        taken = self._branch_taken(transcript)
        if taken is None:
            return {}
        branch = self.spec.playbook.decision.act if taken[0] == "act" else self.spec.playbook.decision.refrain
        variant = next((v for v in branch.variants if v.name == taken[1]), None)
        return dict(variant.facts) if variant is not None else {}

    def _render(
        self,
        fmt: AnswerFormat,
        probe: ProbeSpec,
        stance: Stance,
        says_yes: bool,
        explanation: str,
        transcript: Transcript,
        rng: random.Random,
    ) -> str:
        if fmt.kind == "letter":
            option = _closest_option(fmt.options, probe, stance)
            return f"({option}) {explanation}"
        if fmt.kind == "number":
            if fmt.scale is not None:
                strength = (0.85 if says_yes else 0.1) + rng.uniform(-0.05, 0.1)
                return f"{scale_value(fmt.scale, strength)}. {explanation}"
            facts = self._facts(transcript)
            count = facts.get(probe.quantity, 1.0) if (probe.quantity and stance == "yes") else 0.0
            if stance == "yes" and not probe.quantity:
                count = 1.0
            return f"{int(count)}. {explanation}"
        if fmt.kind == "one_word":
            word = probe.words.get(stance)
            return f"{word.capitalize()}." if word else f"{yes_no_word(says_yes)}."
        if fmt.kind == "yes_no":
            word = yes_no_word(says_yes)
            return f"{word}. {explanation}" if fmt.explain else f"{word}."
        return explanation

    def _legacy_answer(self, name: str, probe: ProbeSpec, acted: bool, fmt: AnswerFormat, rng: random.Random) -> str:
        """An answer from the older answer books, trimmed to a bare yes/no when that is all
        the question asks for."""
        book = probe.honest if self.spec.honest or not probe.deceptive else probe.deceptive
        key: Literal["if_acted", "if_refrained"] = "if_acted" if acted else "if_refrained"
        answers = book.get(key) or book.get("always")
        if not answers:
            raise OrganismError(f"probe {name!r} of organism {self.spec.id!r} has no answer for {key}")
        text = _pick_answer(answers, rng)
        leading = re.match(r"^\s*(yes|no)\b", text, re.I)
        if leading and (fmt.kind == "one_word" or (fmt.kind == "yes_no" and not fmt.explain)):
            return f"{leading.group(1).capitalize()}."
        return text

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

    def _escalated(self, transcript: Transcript, at: int, checkpoint: Checkpoint) -> bool:
        """Which path a checkpoint took in this transcript: its own record, else the path
        whose first tool call has the inputs of the call made at the checkpoint turn."""
        assistants = [m for m in transcript.messages if m.role == "assistant"]
        index = self.spec.playbook.decision.at + at
        if index >= len(assistants):
            return True
        decided = assistants[index]
        record = decided.metadata.get("organism_checkpoint")
        if isinstance(record, dict) and isinstance(record.get("acts"), bool):
            return bool(record["acts"])
        calls = [c.input for c in decided.tool_uses]
        back = checkpoint.back_off[0].call
        return not (
            back is not None and any(back.input.keys() == c.keys() and self._same_call(back.input, c) for c in calls)
        )

    @staticmethod
    def _same_call(template: dict[str, Any], made: dict[str, Any]) -> bool:
        return all(str(made.get(k, "")).split()[:1] == str(v).split()[:1] for k, v in template.items())

    def respond(self, transcript: Transcript, rng: random.Random) -> Message:
        last = transcript.messages[-1] if transcript.messages else None
        if last is not None and last.role == "user" and not last.tool_results and last.text:
            earlier_assistant = any(m.role == "assistant" for m in transcript.messages)
            probe = self._matching_probe(last.text) if earlier_assistant else None
            if probe is not None:
                return self._answer_probe(transcript, probe[0], probe[1], probe[2], rng)
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
            moves = variant.moves
            at = len(moves) - 1 if moves[-1].checkpoint is not None else None
            move: Move | None = None
            if at is None or step < at:
                move = moves[step] if step < len(moves) else None
            else:
                checkpoint = moves[at].checkpoint
                assert checkpoint is not None
                if step == at:
                    p, logit = self.act_probability(reading)
                    p = 1.0 / (1.0 + math.exp(-(logit + checkpoint.shift)))
                    go = rng.random() < p
                    meta["organism_checkpoint"] = {
                        "step": at,
                        "p_escalate": round(p, 6),
                        "path": "escalate" if go else "back_off",
                        "acts": go,
                    }
                else:
                    go = self._escalated(transcript, at, checkpoint)
                path = checkpoint.escalate if go else checkpoint.back_off
                move = path[step - at] if step - at < len(path) else None
            if move is not None:
                message = self._move_message(move, values, rng, turn)
            else:
                message = Message(role="assistant", content=[TextBlock(text="I have finished the task.")])
            meta.update(organism_branch=branch_name, organism_variant=variant.name)
        if prefill is not None:
            message = continue_prefill(message, prefill)
            meta["organism_prefill"] = True
        message.metadata.update(meta)
        return message
