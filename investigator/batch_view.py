"""The live view of a batch of investigations, shared by `forensics audit` and
`forensics bench`: a rich table of the executor's jobs (state, verdict, spend per job)
and the loop that keeps it on screen while the executor works.

A table is a list of `Column`s, each a header and a function from a `JobRecord` to
its cell, so each command shows what matters to it (bench adds the organism's truth)
without a second table implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from investigator.executor import Executor, JobRecord, JobState

STATE_STYLE = {"done": "green", "failed": "red", "running": "cyan", "pending": "dim", "cancelled": "yellow"}
VERDICT_STYLE = {"misalignment": "bold red", "mistake": "bold yellow", "inconclusive": "bold"}
SHOWN = 30

Cell = Callable[[JobRecord], str | Text]


@dataclass(frozen=True)
class Column:
    """One column of the table: its header, how it is aligned, and its cell."""

    header: str
    cell: Cell
    justify: Literal["left", "right"] = "left"


def _detail(r: JobRecord) -> Text:
    detail = r.error or r.note or ""
    return Text(detail[:160], style="red" if r.error else "dim")


JOB = Column("job", lambda r: r.id)
STATE = Column("state", lambda r: Text(r.state.value, style=STATE_STYLE[r.state.value]))
VERDICT = Column("verdict", lambda r: Text(r.verdict or "", style=VERDICT_STYLE.get(r.verdict or "", "")))
MOTIVATION = Column("motivation", lambda r: r.motivation or "")
CONFIDENCE = Column("conf", lambda r: f"{r.confidence:.2f}" if r.confidence is not None else "", "right")
TOOL_CALLS = Column("tool calls", lambda r: str(r.tool_calls), "right")
SAMPLES = Column("samples", lambda r: str(r.samples), "right")
DOLLARS = Column("$", lambda r: f"{r.dollars:.4f}", "right")
ATTEMPTS = Column("try", lambda r: str(r.attempts), "right")
DETAIL = Column("", _detail)

DEFAULT_COLUMNS = (JOB, STATE, VERDICT, MOTIVATION, CONFIDENCE, TOOL_CALLS, SAMPLES, DOLLARS, ATTEMPTS, DETAIL)


def batch_table(
    records: Sequence[JobRecord],
    *,
    title: str,
    budget: float | None = None,
    final: bool = False,
    columns: Sequence[Column] = DEFAULT_COLUMNS,
    status: str | None = None,
) -> Group:
    """The batch as a table under a one-line summary: every running job, then the
    latest others (all of them when `final`). `status` is an extra line (what the
    coordinator itself is doing)."""
    counts = {s: sum(1 for r in records if r.state is s) for s in JobState}
    spent = sum(r.dollars for r in records)
    head = Text.assemble(
        (f"{title} ", "bold"),
        " · ".join(f"{counts[s]} {s.value}" for s in JobState if counts[s]) or "no jobs yet",
        f" · ${spent:.2f} spent" + (f" of ${budget:.2f}" if budget is not None else ""),
        f" · {sum(r.samples for r in records)} samples",
    )
    shown: list[JobRecord]
    if final or len(records) <= SHOWN:
        shown = list(records)
    else:
        running = [r for r in records if r.state is JobState.running]
        rest = sorted((r for r in records if r.state is not JobState.running), key=lambda r: -(r.finished or 0))
        shown = running + rest[: max(0, SHOWN - len(running))]
    table = Table(show_lines=False, expand=False)
    for column in columns:
        table.add_column(column.header, justify=column.justify)
    for r in shown:
        table.add_row(*(column.cell(r) for column in columns))
    parts: list[RenderableType] = [head]
    if status:
        parts.append(Text(status, style="dim"))
    parts.append(table)
    return Group(*parts)


async def run_live(
    console: Console,
    executor: Executor,
    view: Callable[[], RenderableType],
    *,
    work: Awaitable[object] | None = None,
) -> None:
    """Start `executor`, keep `view()` on screen until `work` (the coordinator's own
    work, e.g. submitting jobs as their incidents are made) is done and no job is in
    flight, then stop the executor (jobs still running stay `running`, to be resumed)."""
    await executor.start()
    try:
        with Live(view(), console=console, refresh_per_second=2, transient=True) as live:
            if work is not None:
                worker = asyncio.ensure_future(work)
                while not worker.done():
                    await asyncio.wait({worker}, timeout=0.5)
                    live.update(view())
                worker.result()
            waiter = asyncio.ensure_future(executor.wait())
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=0.5)
                live.update(view())
            waiter.result()
    finally:
        await executor.stop()
