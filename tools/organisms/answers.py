"""The answer format a question asks for, and an answer rendered in it.

A probe answer is a *stance* (does the organism assert the probe's claim or deny it)
plus an explanation. How it is written depends on what the question asks for, read
from the question itself, not from the wording of any shipped probe:

- ``letter``: options written ``(A) ... (B) ...``, ``A) ... B) ...`` or ``A. ... B. ...``;
  the answer is ``(X) explanation``, X the option that fits the stance best;
- ``number``: "on a scale of 1 to 10", "from 0 to 100", "what percentage", "how
  many", "give a number"; the answer starts with the number;
- ``one_word``: "in one word", "one-word answer", "a single word";
- ``yes_no``: "answer yes or no", "yes/no", or a question that starts with an
  auxiliary verb ("Did you...", "Should it...", "Is..."); the answer starts "Yes."
  or "No.", followed by the explanation unless the question asks for nothing else
  ("yes or no only", "just yes or no");
- ``free``: anything else ("What should...", "Why did you...", "Should it be kept,
  or is the score enough?").
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

FormatKind = Literal["letter", "number", "one_word", "yes_no", "free"]

_OPTION = re.compile(r"(?:^|[\s:;,])\(?([A-Ea-e])\)\s*(.+?)(?=(?:[\s,;]+(?:or\s+)?\(?[A-Ea-e]\)\s)|[?.;]?\s*$)")
_OPTION_DOT = re.compile(r"(?:^|\s)([A-E])[.:]\s+(.+?)(?=\s+[A-E][.:]\s|[?;]?\s*$)")
_SCALE = re.compile(
    r"(?:scale|range)\s+(?:of|from)\s+(-?\d+)\s*(?:to|-|–)\s*(-?\d+)|\bfrom\s+(-?\d+)\s+to\s+(-?\d+)\b|"
    r"\((-?\d+)\s*[-–]\s*(-?\d+)\)",
    re.I,
)
_PERCENT = re.compile(r"\b(?:what|which)\s+percent(?:age)?\b|\bas a percent(?:age)?\b|\bin percent\b", re.I)
_HOW_MANY = re.compile(r"\bhow\s+(?:many|much)\b", re.I)
_NUMBER = re.compile(r"\b(?:give|answer with|reply with|respond with)\s+(?:a|one|only a|just a)\s+number\b", re.I)
_ONE_WORD = re.compile(r"\b(?:in|with|using)\s+(?:one|a single|a)\s+word\b|\bone[- ]word\b|\bsingle[- ]word\b", re.I)
_YES_NO = re.compile(r"\byes\s*(?:or|/)\s*no\b|\bno\s*(?:or|/)\s*yes\b", re.I)
_ALTERNATIVE = re.compile(
    r",\s*or\s+(?:is|are|was|were|should|shall|do|does|did|would|will|can|could|has|have)\b[^?]*\?", re.I
)
_ONLY = re.compile(r"\b(?:only|just|nothing else|no explanation|without explanation)\b", re.I)
_THEN_EXPLAIN = re.compile(r"\b(?:then|and)\s+(?:explain|say why|give (?:your|a) reason)", re.I)
_AUXILIARY = re.compile(
    r"^\W*(?:and\s+|so\s+|but\s+|now\s+|finally,?\s+)?(?:did|do|does|is|are|was|were|will|would|should|shall|can|could|"
    r"has|have|had|may|might|must|am)\b",
    re.I,
)


class Option(BaseModel):
    letter: str
    text: str


class AnswerFormat(BaseModel):
    """What a question asks for (see the module doc)."""

    kind: FormatKind
    options: list[Option] = Field(default_factory=list)
    scale: tuple[float, float] | None = None
    """number: the range asked for (a percentage is 0..100); None for a count."""
    explain: bool = True
    """yes_no: whether an explanation may follow the yes or no."""


def _options(text: str) -> list[Option]:
    for pattern in (_OPTION, _OPTION_DOT):
        found = [(m.group(1).upper(), m.group(2).strip(" ,;.")) for m in pattern.finditer(text)]
        letters = [f[0] for f in found]
        if len(found) >= 2 and letters == [chr(ord("A") + i) for i in range(len(found))]:
            return [Option(letter=letter, text=body) for letter, body in found]
    return []


def requested_format(question: str) -> AnswerFormat:
    """The format `question` asks for (see the module doc)."""
    options = _options(question)
    if options:
        return AnswerFormat(kind="letter", options=options)
    scale = _SCALE.search(question)
    if scale is not None:
        low, high = (float(g) for g in scale.groups() if g is not None)
        return AnswerFormat(kind="number", scale=(min(low, high), max(low, high)))
    if _PERCENT.search(question):
        return AnswerFormat(kind="number", scale=(0.0, 100.0))
    if _HOW_MANY.search(question) or _NUMBER.search(question):
        return AnswerFormat(kind="number")
    if _ONE_WORD.search(question):
        return AnswerFormat(kind="one_word")
    if _ALTERNATIVE.search(question):
        return AnswerFormat(kind="free")  # "Should it be attached, or is the score enough?"
    explicit = _YES_NO.search(question)
    if explicit is not None:
        rest = question[explicit.end() :]
        only = bool(_ONLY.search(question)) and not _THEN_EXPLAIN.search(rest)
        return AnswerFormat(kind="yes_no", explain=not only)
    if any(_AUXILIARY.search(s) and s.rstrip().endswith("?") for s in re.split(r"(?<=[.!?])\s+", question.strip())):
        return AnswerFormat(kind="yes_no")
    return AnswerFormat(kind="free")


def yes_no_word(yes: bool) -> str:
    return "Yes" if yes else "No"


def strip_yes_no(text: str) -> str:
    """An explanation without a leading "Yes"/"No" (as legacy answer books write them)."""
    return re.sub(r"^\s*(?:yes|no)\b[\s,.;:!-]*", "", text, flags=re.I).strip()


def scale_value(scale: tuple[float, float], strength: float) -> str:
    """A point on `scale` for a strength in [0, 1] (how strongly the claim is asserted)."""
    low, high = scale
    value = low + (high - low) * min(1.0, max(0.0, strength))
    return f"{round(value):d}"
