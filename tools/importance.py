"""Which turns and which CoT sentences make the flagged behaviour likely.

Two resampling analyses, each a set of ordinary experiments in the ledger
(`tools.resample.run_experiment`), so every number can be traced to its samples:

* **Turn importance** (`turn_importance`): for a start turn *t*, rebuild the world as
  it was before turn *t* and let the subject carry on from there; the behaviour rate
  from that prefix says how far the episode had already committed to the action when
  turn *t* began. The curve over *t* = 0 … flagged turn shows where the behaviour
  becomes likely; the turn reported is the earliest one whose rate reaches half the
  flagged turn's rate. ``method="scan"`` measures every turn; ``method="binary"``
  bisects with about ``1 + log2(T + 1)`` experiments, which is only right when the
  rate never falls as *t* grows — an assumption, checked by nothing, and false when a
  turn makes the behaviour *less* likely (use ``scan`` then, or to check it). Start
  turn *t* uses seeds ``seed + t·SEED_STRIDE`` onwards, so the turns are independent
  draws (a seeded subject would otherwise replay the same randomness from every start).

* **Sentence importance** (`sentence_importance`, after Thought Anchors, Bogdan et al.
  2025, as used in the Model Forensics paper): split the flagged turn's CoT into
  sentences S_0 … S_{m-1}; arm *j* resamples the turn with the assistant message
  *prefilled* with S_0 … S_{j-1} (arm 0: no prefill). For sentence *i*, "before" is arm
  *i* (the subject regenerates S_i itself) and "after" is arm *i + 1* (S_i kept):

  - **resampling importance** = rate(after) − rate(before), with a Newcombe interval;
  - **counterfactual importance** = rate(after) − rate(before, restricted to the
    resamples whose regenerated sentence *i* is semantically different from S_i):
    cosine similarity < 0.8 under all-MiniLM-L6-v2 (the paper's rule); when the
    embedding model is unavailable, "different" means "not the same words" (an
    exact-match fallback, recorded in the result).

  m + 1 arms of k samples cover all m sentences, because one arm is the "after" of one
  sentence and the "before" of the next. Arm *j* uses seeds ``seed + j·SEED_STRIDE``
  onwards, so arms are independent draws (the interval formulas assume that) and a
  larger k later extends the same experiments.

Samples are judged by the incident's detector at the flagged turn (next_turn mode:
its sandbox-free parts), the prefilled sentences included in the judged message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from tools.edit import split_sentences
from tools.experiments import BaselineRole, ExperimentRole, ImportanceRole
from tools.incident import Incident
from tools.ledger import Ledger
from tools.models.base import ModelClient
from tools.organisms.features import Embedder
from tools.resample import ExperimentError, ExperimentSpec, Mode, WorldFactory, run_experiment
from tools.stats import Comparison, Rate, compare
from tools.transcript import ContentBlock, Message, TextBlock, ThinkingBlock

__all__ = [
    "SEED_STRIDE",
    "SIMILARITY_THRESHOLD",
    "SentenceArm",
    "SentenceImportance",
    "SentenceScore",
    "TextEncoder",
    "TurnImportance",
    "TurnPoint",
    "cot_of",
    "regenerated_sentence",
    "sentence_importance",
    "turn_importance",
]

SEED_STRIDE = 100_000
"""Seed offset between the arms of a sentence-importance run (k must stay below it)."""

SIMILARITY_THRESHOLD = 0.8
"""Thought Anchors: a regenerated sentence with cosine similarity below this to the
original (all-MiniLM-L6-v2) counts as a different sentence."""

Progress = Callable[[int], None]


# --------------------------------------------------------------------------- turns


class TurnPoint(BaseModel):
    """The behaviour rate when the episode is resampled from the start of `turn`."""

    turn: int
    experiment_id: str
    mode: Mode
    k: int
    n: int

    @property
    def rate(self) -> Rate:
        return Rate(self.k, self.n)


class TurnImportance(BaseModel):
    """The behaviour rate by start turn, and where the behaviour becomes likely."""

    incident_id: str
    subject: str
    flagged_turn: int
    method: Literal["scan", "binary"]
    n_per_turn: int
    points: list[TurnPoint] = Field(description="measured turns, in order")
    target: float | None = Field(description="half the flagged turn's rate: the bar a turn must reach")
    likely_turn: int | None = Field(
        description="earliest turn whose rate reaches `target` (None: the behaviour never occurred at the flagged turn)"
    )
    notes: list[str] = Field(default_factory=list)

    def rates(self) -> dict[int, Rate]:
        """The measured rate of each turn."""
        return {p.turn: p.rate for p in self.points}

    @property
    def experiment_ids(self) -> list[str]:
        return [p.experiment_id for p in self.points]

    def steps(self) -> list[tuple[int, int, Comparison]]:
        """Consecutive measured turns ``(t0, t1, rate(t1) − rate(t0))``: how much the
        turns from t0 up to t1 raised the rate (Newcombe interval, z-test)."""
        out: list[tuple[int, int, Comparison]] = []
        for a, b in zip(self.points, self.points[1:], strict=False):
            if a.n and b.n:
                out.append((a.turn, b.turn, compare(b.rate, a.rate)))
        return out

    def summary(self) -> str:
        lines = [f"turn importance ({self.method}, n = {self.n_per_turn} per turn, flagged turn {self.flagged_turn}):"]
        for p in self.points:
            mark = "  <- becomes likely" if p.turn == self.likely_turn else ""
            lines.append(f"  from turn {p.turn:>2} ({p.mode}): {p.rate}{mark}")
        if self.likely_turn is None:
            lines.append("  the behaviour never occurred when resampling the flagged turn")
        else:
            lines.append(f"  earliest turn reaching half the flagged-turn rate ({self.target:.1%}): {self.likely_turn}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


async def turn_importance(
    ledger: Ledger,
    incident: Incident,
    *,
    subject: ModelClient,
    world: WorldFactory | None,
    n_per_turn: int,
    turns: Sequence[int] | None = None,
    method: Literal["scan", "binary"] = "scan",
    seed: int = 0,
    grader: ModelClient | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> TurnImportance:
    """Measure the behaviour rate resampled from the start of each turn (see module doc).

    With a `world`, every start turn runs in rollout mode (the world replayed to that
    turn, the episode continued in a fork, the whole detector judging it). Without one
    only the flagged turn can be measured (next_turn mode): an earlier start needs the
    tool calls of the turns in between to run. `turns` restricts a scan (the flagged
    turn is always measured: it sets the target); `binary` ignores it.
    """
    flagged = incident.flagged_turn_index
    if not 1 <= n_per_turn < SEED_STRIDE:
        raise ExperimentError(f"n_per_turn must be between 1 and {SEED_STRIDE - 1} (got {n_per_turn})")
    if method not in ("scan", "binary"):
        raise ExperimentError(f"unknown method {method!r}: use scan or binary")
    wanted = sorted({*(range(flagged + 1) if turns is None else turns), flagged})
    bad = [t for t in wanted if not 0 <= t <= flagged]
    if bad:
        raise ExperimentError(f"start turns {bad} are outside 0..{flagged} (the flagged turn)")
    if world is None and (method == "binary" or wanted != [flagged]):
        raise ExperimentError(
            "resampling from a turn before the flagged one needs a world to run the tool calls in between "
            "(a scenario environment); without one only the flagged turn can be measured"
        )
    notes: list[str] = []
    measured: dict[int, TurnPoint] = {}

    async def measure(t: int) -> TurnPoint:
        if t not in measured:
            mode: Mode = "rollout" if world is not None else "next_turn"
            spec = ExperimentSpec(
                label=f"turn importance: from turn {t}",
                start_turn=t,
                mode=mode,
                n=n_per_turn,
                seed=seed + t * SEED_STRIDE,
            )
            spec = spec.model_copy(
                update={
                    "role": _role(spec, flagged, ImportanceRole(scan="turn", unit=f"turn {t}", index=t), base_seed=seed)
                }
            )
            result = await run_experiment(
                ledger,
                incident,
                spec,
                subject=subject,
                world=world,
                grader=grader,
                concurrency=concurrency,
                progress=progress,
            )
            notes.extend(n for n in result.notes if n not in notes)
            measured[t] = TurnPoint(turn=t, experiment_id=result.id, mode=mode, k=result.k, n=result.n)
        return measured[t]

    top = await measure(flagged)
    target = None if top.k == 0 else top.rate.rate / 2
    likely: int | None = None
    if method == "scan":
        for t in wanted:
            await measure(t)
        if target is not None:
            likely = min(t for t in wanted if measured[t].rate.rate >= target)
    elif target is not None:
        notes.append(
            "binary search assumes the rate never falls as the start turn grows, and compares point estimates "
            "with the bar (noisy at small n); a scan (method='scan') checks the assumption"
        )
        lo, hi = 0, flagged  # invariant: rate(hi) >= target; the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            if (await measure(mid)).rate.rate >= target:
                hi = mid
            else:
                lo = mid + 1
        likely = hi
    result = TurnImportance(
        incident_id=incident.id,
        subject=subject.model_string,
        flagged_turn=flagged,
        method=method,
        n_per_turn=n_per_turn,
        points=[measured[t] for t in sorted(measured)],
        target=target,
        likely_turn=likely,
        notes=notes,
    )
    ledger.event(
        "turn_importance",
        incident_id=incident.id,
        method=method,
        likely_turn=likely,
        experiments=result.experiment_ids,
        rates={str(p.turn): [p.k, p.n] for p in result.points},
    )
    return result


# --------------------------------------------------------------------------- sentences


class TextEncoder(Protocol):
    """What sentence importance needs from an embedding model (`Embedder` is one):
    whether it can run here, and unit-normalised embeddings, one row per text."""

    def available(self) -> bool: ...

    def encode(self, texts: Sequence[str]) -> Any: ...


class SentenceArm(BaseModel):
    """Resamples of the flagged turn with its first `kept` CoT sentences prefilled."""

    kept: int
    experiment_id: str
    k: int
    n: int

    @property
    def rate(self) -> Rate:
        return Rate(self.k, self.n)


class SentenceScore(BaseModel):
    """One CoT sentence's importance (see the module doc for the definitions)."""

    index: int
    text: str
    start: int = Field(description="character offset of the sentence in the CoT")
    end: int
    before: Rate = Field(description="rate resampled from just before the sentence (it is regenerated)")
    after: Rate = Field(description="rate resampled from just after it (it is kept)")
    resampling: Comparison = Field(description="after − before")
    n_different: int = Field(description="'before' resamples whose regenerated sentence differs from this one")
    different: Rate | None = Field(description="rate among those resamples (None: none differed)")
    counterfactual: Comparison | None = Field(description="after − different")
    regenerated: list[str] = Field(default_factory=list, description="a few regenerated sentences that differed")

    def __str__(self) -> str:
        cf = f"; counterfactual {self.counterfactual}" if self.counterfactual else "; no resample differed"
        return f"[{self.index}] {self.text!r}: resampling {self.resampling}{cf}"


class SentenceImportance(BaseModel):
    """Per-sentence importance of the flagged turn's CoT."""

    incident_id: str
    subject: str
    turn: int
    source: Literal["thinking", "text"] = Field(description="which blocks the CoT was read from")
    cot: str
    k: int
    similarity: Literal["embedding", "exact"]
    similarity_threshold: float = SIMILARITY_THRESHOLD
    fallback_reason: str | None = None
    arms: list[SentenceArm]
    sentences: list[SentenceScore]
    notes: list[str] = Field(default_factory=list)

    @property
    def experiment_ids(self) -> list[str]:
        return [a.experiment_id for a in self.arms]

    def top(self, count: int = 3) -> list[SentenceScore]:
        """The sentences whose keeping raises the rate most."""
        return sorted(self.sentences, key=lambda s: s.resampling.difference, reverse=True)[:count]

    def find(self, pattern: str) -> SentenceScore:
        """The first sentence matching a regex (case-insensitive)."""
        regex = re.compile(pattern, re.I)
        for score in self.sentences:
            if regex.search(score.text):
                return score
        raise KeyError(f"no CoT sentence matches {pattern!r}")

    def summary(self) -> str:
        lines = [
            f"sentence importance of turn {self.turn} ({len(self.sentences)} sentences of {self.source}, "
            f"k = {self.k} per arm, 'different' by {self.similarity}):"
        ]
        lines += [f"  {s}" for s in self.sentences]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def cot_of(message: Message) -> tuple[Literal["thinking", "text"], str]:
    """The CoT to split: the message's thinking, or its visible text when it has none."""
    if any(isinstance(b, ThinkingBlock) and b.redacted for b in message.content):
        raise ExperimentError("the flagged turn's thinking is redacted: there are no sentences to resample")
    if message.thinking.strip():
        return "thinking", message.thinking
    if message.text.strip():
        return "text", message.text
    raise ExperimentError("the flagged turn has neither thinking nor text: there is no CoT to split into sentences")


def _prefill(message: Message, source: Literal["thinking", "text"], text: str) -> Message:
    """The assistant message that keeps `text` of the CoT: a thinking prefill, or (for
    a text CoT) the turn's thinking blocks followed by the partial text."""
    if source == "thinking":
        return Message(role="assistant", content=[ThinkingBlock(thinking=text)])
    blocks: list[ContentBlock] = [b.model_copy(deep=True) for b in message.content if isinstance(b, ThinkingBlock)]
    return Message(role="assistant", content=[*blocks, TextBlock(text=text)])


def regenerated_sentence(output: Message, source: Literal["thinking", "text"]) -> str:
    """The first sentence a resample wrote itself: after the prefill when there was one
    (the ``prefill`` metadata `tools.resample.merge_prefill` leaves), else its first.
    Empty when it wrote no further sentence of that kind."""
    info = output.metadata.get("prefill")
    block_at, char_at = (int(info["continues_block"]), int(info["at_char"])) if info else (0, 0)
    parts: list[str] = []
    for i, block in enumerate(output.content[block_at:], start=block_at):
        if source == "thinking" and isinstance(block, ThinkingBlock):
            text = block.thinking
        elif source == "text" and isinstance(block, TextBlock):
            text = block.text
        else:
            continue
        parts.append(text[char_at:] if i == block_at else text)
    rest = "\n".join(parts)
    spans = split_sentences(rest)
    return rest[spans[0][0] : spans[0][1]] if spans else ""


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _different(
    original: str, regenerated: list[str], encoder: TextEncoder | None
) -> tuple[list[bool], Literal["embedding", "exact"]]:
    """Which regenerated sentences differ from the original (see the module doc)."""
    if encoder is not None:
        unique = sorted({r for r in regenerated if r})
        vectors = encoder.encode([original, *unique])
        sims = {text: float(vectors[0] @ vectors[i + 1]) for i, text in enumerate(unique)}
        return [not r or sims[r] < SIMILARITY_THRESHOLD for r in regenerated], "embedding"
    key = _words(original)
    return [_words(r) != key for r in regenerated], "exact"


async def sentence_importance(
    ledger: Ledger,
    incident: Incident,
    *,
    subject: ModelClient,
    k: int,
    seed: int = 0,
    embedder: TextEncoder | None = Embedder,
    sentences: Sequence[int] | None = None,
    temperature: float | None = None,
    grader: ModelClient | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> SentenceImportance:
    """Thought Anchors on the flagged turn's CoT (see the module doc).

    `sentences` restricts the analysis to some sentence indices (each needs its arms
    i and i + 1), which bounds the cost on a long CoT. `embedder` judges "different";
    None (or an unavailable model) selects the exact-match fallback. An arm counts every
    sample its experiment holds: arm 0 with seed 0 *is* the plain next_turn baseline
    experiment, so a baseline already run with a larger n contributes all its samples.
    """
    if not 1 <= k < SEED_STRIDE:
        raise ExperimentError(f"k must be between 1 and {SEED_STRIDE - 1} (got {k})")
    message = incident.flagged_turn.message
    source, cot = cot_of(message)
    spans = split_sentences(cot)
    wanted = sorted(set(range(len(spans)) if sentences is None else sentences))
    bad = [i for i in wanted if not 0 <= i < len(spans)]
    if bad:
        raise ExperimentError(f"sentence indices {bad} are outside 0..{len(spans) - 1}")
    encoder: TextEncoder | None = embedder
    fallback: str | None = None
    if embedder is None:
        fallback = "no embedding model given"
    elif not embedder.available():
        fallback = (
            Embedder.unavailable_reason() if embedder is Embedder else None
        ) or "the embedding model is unavailable"
        encoder = None
    notes: list[str] = []
    arms: dict[int, SentenceArm] = {}
    for j in sorted({j for i in wanted for j in (i, i + 1)}):
        prefill = _prefill(message, source, cot[: spans[j - 1][1]]) if j else None
        spec = ExperimentSpec(
            label=f"sentence prefill: {j} of {len(spans)} sentences kept",
            start_turn=incident.flagged_turn_index,
            mode="next_turn",
            n=k,
            seed=seed + j * SEED_STRIDE,
            temperature=temperature,
            prefill=prefill,
        )
        spec = spec.model_copy(
            update={
                "role": _role(
                    spec,
                    incident.flagged_turn_index,
                    ImportanceRole(scan="sentence", unit=f"{j} of {len(spans)} sentences kept", index=j),
                    base_seed=seed,
                )
            }
        )
        outcome = await run_experiment(
            ledger, incident, spec, subject=subject, grader=grader, concurrency=concurrency, progress=progress
        )
        notes.extend(n for n in outcome.notes if n not in notes)
        arms[j] = SentenceArm(kept=j, experiment_id=outcome.id, k=outcome.k, n=outcome.n)
    scores: list[SentenceScore] = []
    method: Literal["embedding", "exact"] = "embedding" if encoder is not None else "exact"
    for i in wanted:
        start, end = spans[i]
        before, after = arms[i], arms[i + 1]
        judged = [s for s in ledger.samples(before.experiment_id) if s.detected is not None]
        regenerated = [regenerated_sentence(Message.model_validate(s.output[0]), source) for s in judged]
        differs, method = _different(cot[start:end], regenerated, encoder)
        k_diff = sum(bool(s.detected) for s, d in zip(judged, differs, strict=True) if d)
        n_diff = sum(differs)
        different = Rate(k_diff, n_diff) if n_diff else None
        shown = sorted({r for r, d in zip(regenerated, differs, strict=True) if d and r})[:5]
        scores.append(
            SentenceScore(
                index=i,
                text=cot[start:end],
                start=start,
                end=end,
                before=before.rate,
                after=after.rate,
                resampling=compare(after.rate, before.rate),
                n_different=n_diff,
                different=different,
                counterfactual=None if different is None or not after.n else compare(after.rate, different),
                regenerated=shown,
            )
        )
    if fallback is not None:
        notes.append(f"'different' judged by exact words, not embeddings: {fallback}")
    result = SentenceImportance(
        incident_id=incident.id,
        subject=subject.model_string,
        turn=incident.flagged_turn_index,
        source=source,
        cot=cot,
        k=k,
        similarity=method,
        fallback_reason=fallback,
        arms=[arms[j] for j in sorted(arms)],
        sentences=scores,
        notes=notes,
    )
    ledger.event(
        "sentence_importance",
        incident_id=incident.id,
        experiments=result.experiment_ids,
        kept=[a.kept for a in result.arms],
        similarity=method,
        scores=[
            {"index": s.index, "text": s.text, "resampling": s.resampling.difference, "counterfactual": _num(s)}
            for s in scores
        ],
    )
    return result


def _role(spec: ExperimentSpec, flagged: int, role: ImportanceRole, *, base_seed: int) -> ExperimentRole:
    """An arm's role: `role`, unless the arm is exactly the baseline (the unedited
    flagged turn resampled from the scan's first seed — 0, or the investigation's seed
    offset —, no prefill), whose samples it then shares."""
    plain = spec.variant.is_original and spec.prefill is None and spec.temperature is None
    if plain and spec.mode == "next_turn" and spec.start_turn == flagged and spec.seed == base_seed:
        return BaselineRole()
    return role


def _num(score: SentenceScore) -> float | None:
    value = None if score.counterfactual is None else score.counterfactual.difference
    return None if value is None or math.isnan(value) else value
