"""Import accounting: what an importer read, what it produced, and where the rest went.

Every importer tallies the source's own units as it reads them (messages, text,
thinking, images, tool calls, tool results, other blocks) into an `ImportTally`, and
says where each unit that is not in `Transcript.messages` went:

* **kept** — preserved elsewhere in the transcript (the system prompt, metadata such as
  abandoned branches, sidechains, other choices of a response), by where;
* **merged** — folded into another unit (Claude Code writes one record per content
  block; several ``tool`` messages become one user message of results);
* **dropped** — read but held nowhere, by reason; every drop is also a warning;
* **synthesized** — produced without a source unit (a tool call parsed from the text of
  a text-based agent, a placeholder result for a call that never got one).

`ImportTally.finish` counts what the transcript holds (`produced`) and checks the
balance ``read + synthesized == produced + kept + merged + dropped`` field by field.
Any imbalance is an importer bug made visible: it becomes a warning naming the field
and the difference, never silence. The result is an `ImportReport`, stored in
``Transcript.metadata["import_report"]``, which ``forensics show`` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.transcript import (
    CompactionBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    Transcript,
)

REPORT_KEY = "import_report"
"""Where the report lives in `Transcript.metadata`."""

COUNTED = ("messages", "text", "thinking", "images", "tool_calls", "tool_results", "other")
"""The units every importer counts."""

_EXCERPT = 120


class Counts(BaseModel):
    """A count of each unit. ``other`` is any other block (compaction)."""

    model_config = ConfigDict(extra="forbid")

    messages: int = 0
    text: int = 0
    thinking: int = 0
    images: int = 0
    tool_calls: int = 0
    tool_results: int = 0
    other: int = 0

    def plus(self, other: Counts) -> Counts:
        return Counts(**{k: getattr(self, k) + getattr(other, k) for k in COUNTED})

    def minus(self, other: Counts) -> Counts:
        return Counts(**{k: getattr(self, k) - getattr(other, k) for k in COUNTED})

    def nonzero(self) -> dict[str, int]:
        """Only the units with a count, for compact display."""
        return {k: getattr(self, k) for k in COUNTED if getattr(self, k)}

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in COUNTED)


def count_blocks(messages: Iterable[Message]) -> Counts:
    """The units a list of messages holds (a tool result's inner items are part of it)."""
    tally: dict[str, int] = dict.fromkeys(COUNTED, 0)
    for msg in messages:
        tally["messages"] += 1
        for block in msg.content:
            if isinstance(block, TextBlock):
                tally["text"] += 1
            elif isinstance(block, ThinkingBlock):
                tally["thinking"] += 1
            elif isinstance(block, ImageBlock):
                tally["images"] += 1
            elif isinstance(block, ToolUseBlock):
                tally["tool_calls"] += 1
            elif isinstance(block, ToolResultBlock):
                tally["tool_results"] += 1
            elif isinstance(block, CompactionBlock):
                tally["other"] += 1
    return Counts(**tally)


def count_dumped(messages: Any) -> Counts:
    """`count_blocks` over messages stored as JSON in metadata (abandoned branches,
    sidechains); anything that is not a valid message counts as nothing."""
    if not isinstance(messages, list):
        return Counts()
    parsed: list[Message] = []
    for raw in messages:
        try:
            parsed.append(Message.model_validate(raw))
        except ValidationError:
            continue
    return count_blocks(parsed)


class SkippedLine(BaseModel):
    """A line of a line-based log that was skipped (``--skip-bad-lines``)."""

    model_config = ConfigDict(extra="forbid")

    line: int
    reason: str
    excerpt: str = ""


class ImportWarning(BaseModel):
    """Something the reader of the transcript must know about its import."""

    model_config = ConfigDict(extra="forbid")

    message: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ImportReport(BaseModel):
    """What one import read and produced, and where every difference went."""

    model_config = ConfigDict(extra="forbid")

    format: str
    source: str | None = None
    read: Counts = Field(default_factory=Counts)
    produced: Counts = Field(default_factory=Counts)
    kept: dict[str, Counts] = Field(default_factory=dict)
    merged: Counts = Field(default_factory=Counts)
    dropped: dict[str, Counts] = Field(default_factory=dict)
    synthesized: dict[str, Counts] = Field(default_factory=dict)
    skipped_records: dict[str, int] = Field(default_factory=dict)
    skipped_lines: list[SkippedLine] = Field(default_factory=list)
    warnings: list[ImportWarning] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def unaccounted(self) -> Counts:
        """``read + synthesized - produced - kept - merged - dropped``: all zero when every
        unit read is accounted for."""
        balance = self.read
        for counts in self.synthesized.values():
            balance = balance.plus(counts)
        balance = balance.minus(self.produced).minus(self.merged)
        for counts in (*self.kept.values(), *self.dropped.values()):
            balance = balance.minus(counts)
        return balance

    @property
    def conserved(self) -> bool:
        """Whether the counts balance and nothing was dropped."""
        return not self.unaccounted() and not any(self.dropped.values())

    def summary(self) -> str:
        """One line for people: what was read and produced."""
        read = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.read.nonzero().items()) or "nothing"
        made = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.produced.nonzero().items()) or "nothing"
        line = f"imported from {self.format}: read {read}; the transcript holds {made}"
        if self.kept:
            line += "; kept in metadata: " + ", ".join(
                f"{where} ({', '.join(f'{v} {k}' for k, v in c.nonzero().items())})"
                for where, c in self.kept.items()
                if c
            )
        if self.skipped_records:
            line += "; records skipped by kind: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.skipped_records.items())
            )
        return line


def report_of(transcript: Transcript) -> ImportReport | None:
    """The import report stored in a transcript's metadata, if there is a valid one."""
    raw = transcript.metadata.get(REPORT_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return ImportReport.model_validate(raw)
    except ValidationError:
        return None


@dataclass
class ImportTally:
    """What an importer counts while it reads. Pass it around; call `finish` last."""

    format: str
    source: str | None = None
    read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    kept: dict[str, Counts] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    dropped: dict[str, Counts] = field(default_factory=dict)
    synthesized: dict[str, Counts] = field(default_factory=dict)
    skipped_records: Counter[str] = field(default_factory=Counter)
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    warnings: list[ImportWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------- reading
    def count(self, **units: int) -> None:
        """Units read from the source, e.g. ``count(messages=1, text=2)``."""
        for key, value in units.items():
            self.read[_unit(key)] += value

    def count_messages(self, messages: Iterable[Message]) -> None:
        """Count already-built messages as read (for formats whose vendor objects map one
        to one onto blocks, counted after validation)."""
        for key, value in count_blocks(messages).nonzero().items():
            self.read[key] += value

    def merge(self, **units: int) -> None:
        """Units folded into others (several records making one message)."""
        for key, value in units.items():
            self.merged[_unit(key)] += value

    def keep(self, where: str, counts: Counts | Mapping[str, int]) -> None:
        """Units preserved outside `Transcript.messages`, under `where`."""
        c = counts if isinstance(counts, Counts) else Counts(**counts)
        self.kept[where] = self.kept.get(where, Counts()).plus(c)

    def drop(self, reason: str, counts: Mapping[str, int], *, location: str | None = None) -> None:
        """Units read but held nowhere; always a warning too."""
        c = Counts(**counts)
        self.dropped[reason] = self.dropped.get(reason, Counts()).plus(c)
        what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in c.nonzero().items())
        self.warn(f"dropped {what}: {reason}", location=location)

    def synthesize(self, why: str, counts: Mapping[str, int]) -> None:
        """Units produced with no source unit behind them."""
        c = Counts(**counts)
        self.synthesized[why] = self.synthesized.get(why, Counts()).plus(c)

    def skip_record(self, kind: str, n: int = 1) -> None:
        """A record that is not conversation (progress, snapshots), counted by kind."""
        self.skipped_records[kind] += n

    def skip_line(self, line: int, reason: str, text: str) -> None:
        """A malformed line skipped on request; also a warning."""
        excerpt = text.strip()
        if len(excerpt) > _EXCERPT:
            excerpt = excerpt[: _EXCERPT - 1] + "…"
        self.skipped_lines.append(SkippedLine(line=line, reason=reason, excerpt=excerpt))
        self.warn(f"skipped a bad line: {reason}", location=f"line {line}")

    def warn(self, message: str, *, location: str | None = None) -> None:
        self.warnings.append(ImportWarning(message=message, location=location))

    def note(self, text: str) -> None:
        """A fact about the format worth knowing but not a problem of this file."""
        if text not in self.notes:
            self.notes.append(text)

    def snapshot(self) -> tuple[Any, ...]:
        """The counts so far, to `restore` when a record turns out to be bad midway
        (a reader that skips bad records must not count half of one)."""
        return (
            dict(self.read),
            dict(self.kept),
            dict(self.merged),
            dict(self.dropped),
            dict(self.synthesized),
            Counter(self.skipped_records),
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        read, kept, merged, dropped, synthesized, skipped = state
        self.read, self.kept, self.merged = dict(read), dict(kept), dict(merged)
        self.dropped, self.synthesized, self.skipped_records = dict(dropped), dict(synthesized), Counter(skipped)

    # ------------------------------------------------------------- closing
    def finish(self, transcript: Transcript) -> Transcript:
        """Count what the transcript holds, check the balance, store the report."""
        report = ImportReport(
            format=self.format,
            source=self.source,
            read=Counts(**self.read),
            produced=count_blocks(transcript.messages),
            kept=dict(self.kept),
            merged=Counts(**self.merged),
            dropped=dict(self.dropped),
            synthesized=dict(self.synthesized),
            skipped_records=dict(self.skipped_records),
            skipped_lines=list(self.skipped_lines),
            warnings=list(self.warnings),
            notes=list(self.notes),
        )
        off = report.unaccounted().nonzero()
        if off:
            detail = ", ".join(
                f"{abs(v)} {k.replace('_', ' ')} {'read but not in the transcript' if v > 0 else 'more than read'}"
                for k, v in off.items()
            )
            report.warnings.append(
                ImportWarning(message=f"the import does not balance: {detail} (an importer bug; please report it)")
            )
        transcript.metadata[REPORT_KEY] = report.model_dump(mode="json")
        return transcript


def _unit(key: str) -> str:
    if key not in COUNTED:
        raise KeyError(f"unknown import unit {key!r}; expected one of {', '.join(COUNTED)}")
    return key


__all__ = [
    "COUNTED",
    "REPORT_KEY",
    "Counts",
    "ImportReport",
    "ImportTally",
    "ImportWarning",
    "SkippedLine",
    "count_blocks",
    "count_dumped",
    "report_of",
]
