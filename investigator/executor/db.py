"""The batch database: one SQLite file (WAL) with a row per job and an event log.

Every state change is one transaction, so a reader in another process (the audit's
live table, the service's API, ``sqlite3`` on the command line) sees a consistent
batch at any moment, and an executor killed at any point leaves rows it can resume
from: `pending` jobs are started, `running` ones are resumed from their checkpoints.

Schema changes are migrations keyed by SQLite's ``user_version``, as in the ledger.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from investigator.executor.errors import ExecutorError
from investigator.executor.spec import JobOutcome, JobRecord, JobSpec, JobState, Progress

BATCH_FILE = "batch.sqlite"

_MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        error_kind TEXT,
        note TEXT,
        worker TEXT,
        submitted REAL NOT NULL,
        started REAL,
        finished REAL,
        wall_seconds REAL,
        tool_calls INTEGER NOT NULL DEFAULT 0,
        samples INTEGER NOT NULL DEFAULT 0,
        tokens INTEGER NOT NULL DEFAULT 0,
        dollars REAL NOT NULL DEFAULT 0,
        verdict TEXT,
        motivation TEXT,
        confidence REAL,
        report_path TEXT,
        run_dir TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        incident TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL
    );
    CREATE INDEX jobs_by_state ON jobs(state, submitted);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events(job_id, id);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = (
    "id, state, attempts, error, error_kind, note, worker, submitted, started, finished, wall_seconds, tool_calls,"
    " samples, tokens, dollars, verdict, motivation, confidence, report_path, run_dir, cancel_requested, labels,"
    " incident"
)


def _record(row: Sequence[Any]) -> JobRecord:
    names = [c.strip() for c in _COLUMNS.split(",")]
    data = dict(zip(names, row, strict=True))
    data["labels"] = json.loads(data["labels"] or "{}")
    data["cancel_requested"] = bool(data["cancel_requested"])
    return JobRecord.model_validate(data)


class BatchDB:
    """The batch database at `path` (a file, or a directory that gets ``batch.sqlite``).
    Thread-safe; safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if p.is_dir() or p.suffix == "":
            p.mkdir(parents=True, exist_ok=True)
            p = p / BATCH_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ExecutorError(f"{p}: not a usable batch database ({exc})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> BatchDB:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ExecutorError(
                f"{self.path}: batch schema {version} is newer than this program's ({SCHEMA_VERSION}); upgrade"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.executescript(
                f"BEGIN IMMEDIATE;\n{_MIGRATIONS[target - 1]}\nPRAGMA user_version = {target};\nCOMMIT;"
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, job_id: str | None, kind: str, data: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO events(job_id, ts, kind, data) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), kind, json.dumps(data, default=str)),
        )

    # ---------------------------------------------------------------- jobs
    def add(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        """Record a pending job. Submitting the same spec again returns the existing
        row (and False); the same id with a different spec is an error."""
        data = spec.model_dump_json()
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT spec FROM jobs WHERE id = ?", (spec.id,)).fetchone()
            if row is not None:
                if JobSpec.model_validate_json(row[0]) != spec:
                    raise ExecutorError(
                        f"job {spec.id!r} already exists in {self.path} with a different spec; use another id"
                    )
                created = False
            else:
                db.execute(
                    "INSERT INTO jobs(id, spec, state, submitted, run_dir, labels, incident, updated)"
                    " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                    (
                        spec.id,
                        data,
                        now,
                        spec.run_dir,
                        json.dumps(spec.labels, default=str),
                        spec.describe_incident(),
                        now,
                    ),
                )
                self._event(db, spec.id, "submitted", {"run_dir": spec.run_dir})
                created = True
        return self.get(spec.id), created

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ExecutorError(f"no job {job_id!r} in {self.path}")
        return _record(row)

    def spec(self, job_id: str) -> JobSpec:
        with self._lock:
            row = self._db.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ExecutorError(f"no job {job_id!r} in {self.path}")
        return JobSpec.model_validate_json(row[0])

    def jobs(
        self,
        *,
        states: Sequence[JobState] | None = None,
        since: float | None = None,
        verdict: str | None = None,
        limit: int | None = None,
    ) -> list[JobRecord]:
        """Jobs in submission order, optionally filtered."""
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE 1 = 1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += [s.value for s in states]
        if since is not None:
            sql += " AND submitted >= ?"
            args.append(since)
        if verdict is not None:
            sql += " AND verdict = ?"
            args.append(verdict)
        sql += " ORDER BY submitted, rowid"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_record(r) for r in rows]

    def counts(self) -> dict[JobState, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(JobState, 0)
        for state, count in rows:
            out[JobState(state)] = int(count)
        return out

    def spent(self) -> float:
        """Dollars spent by every job of the batch (finished ones and running ones so far)."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(dollars), 0) FROM jobs").fetchone()
        return float(row[0])

    # ---------------------------------------------------------- transitions
    def mark_running(self, job_id: str, *, worker: str | None = None) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'running', note = NULL, error = NULL, error_kind = NULL,"
                " started = COALESCE(started, ?), worker = COALESCE(?, worker), updated = ? WHERE id = ?",
                (now, worker, now, job_id),
            )
            self._event(db, job_id, "dispatched", {"worker": worker})

    def hold(self, job_id: str, note: str) -> None:
        """Keep a job pending with a reason (e.g. the batch's budget is spent)."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', note = ?, updated = ?"
                " WHERE id = ? AND state IN ('pending', 'running')",
                (note, time.time(), job_id),
            )
            self._event(db, job_id, "held", {"note": note})

    def update_progress(self, job_id: str, progress: Progress, *, worker: str | None = None) -> None:
        """Spend so far of a running job (never lowers a counter already recorded)."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET attempts = MAX(attempts, ?), tool_calls = MAX(tool_calls, ?),"
                " samples = MAX(samples, ?), tokens = MAX(tokens, ?), dollars = MAX(dollars, ?),"
                " worker = COALESCE(?, worker), updated = ? WHERE id = ? AND state = 'running'",
                (
                    progress.attempt,
                    progress.tool_calls,
                    progress.samples,
                    progress.tokens,
                    progress.dollars,
                    worker,
                    time.time(),
                    job_id,
                ),
            )

    def retrying(self, job_id: str, *, attempt: int, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET attempts = MAX(attempts, ?), updated = ? WHERE id = ?", (attempt, time.time(), job_id)
            )
            self._event(db, job_id, "retry", {"attempt": attempt, "reason": reason})

    def finish(self, job_id: str, state: JobState, outcome: JobOutcome) -> JobRecord:
        """Record the final state of a job and what its last attempt reported."""
        if not state.final:
            raise ExecutorError(f"finish() needs a final state, not {state}")
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT started FROM jobs WHERE id = ?", (job_id,)).fetchone()
            started = row[0] if row and row[0] is not None else None
            # A finished investigation's report is the account of its spend; for any other
            # end, keep the highest count seen (a dead worker reports nothing).
            counter = "?" if outcome.ok else "MAX({0}, ?)"
            counters = ", ".join(
                f"{name} = {counter.format(name)}" for name in ("tool_calls", "samples", "tokens", "dollars")
            )
            db.execute(
                "UPDATE jobs SET state = ?, attempts = MAX(attempts, ?), error = ?, error_kind = ?, note = NULL,"
                f" finished = ?, wall_seconds = ?, {counters}, verdict = ?, motivation = ?, confidence = ?,"
                " report_path = ?, worker = COALESCE(?, worker), updated = ? WHERE id = ?",
                (
                    state.value,
                    outcome.attempt,
                    outcome.error,
                    outcome.error_kind,
                    now,
                    outcome.wall_seconds or (now - started if started else None),
                    outcome.tool_calls,
                    outcome.samples,
                    outcome.tokens,
                    outcome.dollars,
                    outcome.verdict,
                    outcome.motivation,
                    outcome.confidence,
                    outcome.report_path,
                    outcome.worker,
                    now,
                    job_id,
                ),
            )
            self._event(db, job_id, state.value, {"error": outcome.error, "attempt": outcome.attempt})
        return self.get(job_id)

    def reopen(self, job_id: str, *, reason: str) -> None:
        """Put a failed job back to pending (a rerun of the batch tries it again)."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = 'pending', note = ?, cancel_requested = 0, updated = ?"
                " WHERE id = ? AND state = 'failed'",
                (reason, time.time(), job_id),
            )
            self._event(db, job_id, "reopened", {"reason": reason})

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a pending job at once; flag a running one for its executor to stop."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise ExecutorError(f"no job {job_id!r} in {self.path}")
            state = JobState(row[0])
            if state is JobState.pending:
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished = ?, note = NULL,"
                    " error = 'cancelled before it started', error_kind = 'cancelled', updated = ? WHERE id = ?",
                    (now, now, job_id),
                )
                self._event(db, job_id, "cancelled", {"while": "pending"})
            elif state is JobState.running:
                db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?", (now, job_id))
                self._event(db, job_id, "cancel_requested", {})
        return self.get(job_id)

    def cancel_requested(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1").fetchall()
        return [r[0] for r in rows]

    # --------------------------------------------------------------- events
    def event(self, job_id: str | None, kind: str, **data: Any) -> None:
        with self._tx() as db:
            self._event(db, job_id, kind, data)

    def events(self, job_id: str | None = None, *, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, job_id, ts, kind, data FROM events WHERE 1 = 1"
        args: list[Any] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [{"id": r[0], "job_id": r[1], "ts": r[2], "kind": r[3], **json.loads(r[4])} for r in rows]
