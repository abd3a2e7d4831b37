"""What a job paid for against what its ledger kept.

Every subject call a worker makes is in ``subject_calls.jsonl`` (one line per call:
the attempt, the seed, usage and a digest of each returned message); every sample the
ledger kept holds the assistant messages that made it. Matching the two multisets of
message digests says, per run directory:

- `paid`: subject messages paid for, per attempt;
- `kept`: subject messages the ledger holds (in `samples` samples);
- `not_kept`: paid but not kept — calls in flight when a worker died, whose sample was
  taken again by the next attempt. The ledger's guarantee is that nothing it *kept* is
  ever paid for again; this is the bounded price of a crash, reported, not hidden.
- `unaccounted`: kept but never recorded as paid (samples taken outside a recorded
  worker, e.g. a run started before the executor existed).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from investigator.executor.worker import CALLS_FILE, message_digest


def kept_messages(run_dir: str | Path) -> tuple[Counter[str], int]:
    """Digests of the assistant messages in the ledger's samples, and the sample count."""
    path = Path(run_dir) / "case.sqlite"
    kept: Counter[str] = Counter()
    if not path.exists():
        return kept, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT output FROM samples").fetchall()
    finally:
        db.close()
    for (output,) in rows:
        for message in json.loads(output):
            if isinstance(message, dict) and message.get("role") == "assistant":
                kept[message_digest(message)] += 1
    return kept, len(rows)


def paid_messages(run_dir: str | Path, *, attempts: set[int] | None = None) -> Counter[str]:
    """Digests of the subject messages paid for (in the given attempts, or all)."""
    paid: Counter[str] = Counter()
    path = Path(run_dir) / CALLS_FILE
    if not path.exists():
        return paid
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            call = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed worker
        if attempts is None or call.get("attempt") in attempts:
            paid.update(call.get("messages", []))
    return paid


class Accounting(BaseModel):
    """Paid against kept for one run directory (see module doc)."""

    paid_by_attempt: dict[int, int]
    paid: int
    kept: int
    samples: int
    not_kept: int
    unaccounted: int


def accounting(run_dir: str | Path) -> Accounting:
    """Paid against kept for `run_dir`."""
    kept, samples = kept_messages(run_dir)
    by_attempt: Counter[int] = Counter()
    path = Path(run_dir) / CALLS_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                call = json.loads(line)
            except ValueError:
                continue
            by_attempt[int(call.get("attempt", 0))] += len(call.get("messages", []))
    paid = paid_messages(run_dir)
    return Accounting(
        paid_by_attempt=dict(sorted(by_attempt.items())),
        paid=sum(paid.values()),
        kept=sum(kept.values()),
        samples=samples,
        not_kept=sum((paid - kept).values()),
        unaccounted=sum((kept - paid).values()),
    )
