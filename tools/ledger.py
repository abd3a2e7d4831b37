"""The case ledger: one SQLite file per run directory, the source of truth for what was
changed, what was sampled and what was concluded.

Tables: incidents, variants, experiments, samples, hypotheses, events. The file runs
in WAL mode, and every sample is written in its own transaction as soon as it exists,
keyed by (experiment, index) with its seed, so an interrupted experiment resumes
where it stopped: nothing is lost, nothing is sampled (or paid for) twice. A sample is
written as soon as the model has answered (`detected` NULL) and completed when its
detector has run, so a crash between the two repeats only the cheap detection.

Schema changes are migrations keyed by SQLite's ``user_version``; opening an older file
upgrades it in place, and a file from a newer program is refused. Migration 2 gave every
experiment a typed role (`tools.experiments`): rows written before it get the role
their label convention meant (`tools.experiments.legacy_role`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.errors import ForensicsError
from tools.experiments import ROLE_ADAPTER, ExperimentRole, ExploratoryRole, legacy_role

LEDGER_FILE = "case.sqlite"


def _add_roles(db: sqlite3.Connection) -> None:
    """Migration 2: a `role` column (the experiment's typed role as JSON), filled for
    existing rows from their label convention."""
    db.execute("ALTER TABLE experiments ADD COLUMN role TEXT")
    for experiment_id, label, mode in db.execute("SELECT id, label, mode FROM experiments").fetchall():
        role = legacy_role(str(label), str(mode))
        db.execute(
            "UPDATE experiments SET role = ? WHERE id = ?", (ROLE_ADAPTER.dump_json(role).decode(), experiment_id)
        )


_MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: the initial schema
    """
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE variants (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES incidents(id),
        parent TEXT,
        description TEXT NOT NULL,
        edits TEXT NOT NULL,
        diff TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE experiments (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES incidents(id),
        variant_id TEXT NOT NULL REFERENCES variants(id),
        label TEXT NOT NULL,
        mode TEXT NOT NULL,
        start_turn INTEGER NOT NULL,
        n_target INTEGER NOT NULL,
        spec TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        stop_reason TEXT,
        created REAL NOT NULL,
        finished REAL
    );
    CREATE TABLE samples (
        experiment_id TEXT NOT NULL REFERENCES experiments(id),
        idx INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        output TEXT NOT NULL,
        detected INTEGER,
        evidence TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        PRIMARY KEY (experiment_id, idx),
        UNIQUE (experiment_id, seed)
    );
    CREATE TABLE hypotheses (
        id TEXT PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES incidents(id),
        catalogue_id TEXT,
        statement TEXT NOT NULL,
        status TEXT NOT NULL,
        probability REAL,
        evidence TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX samples_by_experiment ON samples(experiment_id, detected);
    """,
    # 2: typed experiment roles
    _add_roles,
]
SCHEMA_VERSION = len(_MIGRATIONS)


class LedgerError(ForensicsError):
    """The ledger file is unusable (newer schema, corrupt, or a conflicting write)."""


class ExperimentRow(BaseModel):
    """An experiment as stored."""

    id: str
    incident_id: str
    variant_id: str
    label: str
    mode: str
    start_turn: int
    n_target: int
    spec: dict[str, Any]
    status: str
    stop_reason: str | None = None
    role: ExperimentRole = Field(default_factory=ExploratoryRole)


class SampleRow(BaseModel):
    """A sample as stored: the sampled output (JSON), the detector outcome and cost."""

    experiment_id: str
    idx: int
    seed: int
    output: Any
    detected: bool | None
    evidence: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class Counts(BaseModel):
    """k of n detected (samples whose detection has not finished are not counted)."""

    k: int
    n: int


class HypothesisRow(BaseModel):
    id: str
    incident_id: str
    catalogue_id: str | None
    statement: str
    status: str
    probability: float | None
    evidence: list[str] = Field(default_factory=list)
    notes: str = ""


class Ledger:
    """A run's SQLite ledger. Thread-safe (one connection, serialized)."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if p.is_dir() or p.suffix == "":
            p.mkdir(parents=True, exist_ok=True)
            p = p / LEDGER_FILE
        self.path = p
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(p), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{p}: not a usable ledger ({exc})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path}: ledger schema {version} is newer than this program's ({SCHEMA_VERSION}); upgrade"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            migration = _MIGRATIONS[target - 1]
            if isinstance(migration, str):
                # executescript commits on its own, so the migration carries its transaction.
                self._db.executescript(f"BEGIN IMMEDIATE;\n{migration}\nPRAGMA user_version = {target};\nCOMMIT;")
                continue
            self._db.execute("BEGIN IMMEDIATE")
            try:
                migration(self._db)
                self._db.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ----------------------------------------------------------- incidents
    def put_incident(self, incident_id: str, data: dict[str, Any]) -> None:
        """Store an incident once (later calls with the same id keep the first)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO incidents(id, data, created) VALUES (?, ?, ?)",
                (incident_id, json.dumps(data), time.time()),
            )

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT data FROM incidents WHERE id = ?", (incident_id,))
        return None if row is None else dict(json.loads(row[0]))

    def incident_ids(self) -> list[str]:
        return [r[0] for r in self._all("SELECT id FROM incidents ORDER BY created")]

    # ------------------------------------------------------------ variants
    def put_variant(
        self, variant_id: str, incident_id: str, *, parent: str | None, description: str, edits: Any, diff: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO variants(id, incident_id, parent, description, edits, diff, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (variant_id, incident_id, parent, description, json.dumps(edits), diff, time.time()),
            )

    def variant(self, variant_id: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT id, incident_id, parent, description, edits, diff FROM variants WHERE id = ?", (variant_id,)
        )
        if row is None:
            return None
        return {
            "id": row[0],
            "incident_id": row[1],
            "parent": row[2],
            "description": row[3],
            "edits": json.loads(row[4]),
            "diff": row[5],
        }

    # --------------------------------------------------------- experiments
    def open_experiment(
        self,
        experiment_id: str,
        *,
        incident_id: str,
        variant_id: str,
        label: str,
        mode: str,
        start_turn: int,
        n_target: int,
        spec: dict[str, Any],
        role: ExperimentRole | None = None,
    ) -> ExperimentRow:
        """Create the experiment, or return the existing one with the same id (resume).
        Resuming with a different mode or start turn is a conflict, not a silent mix; so
        is giving the same samples a role of another kind (an exploratory role gives way
        to a typed one; a role of the same kind is updated)."""
        role = role or ExploratoryRole()
        role_json = ROLE_ADAPTER.dump_json(role).decode()
        existing = self.experiment(experiment_id)
        if existing is not None:
            if (existing.mode, existing.start_turn, existing.variant_id) != (mode, start_turn, variant_id):
                raise LedgerError(f"experiment {experiment_id} exists with a different mode, start turn or variant")
            old = existing.role
            if old != role and not isinstance(role, ExploratoryRole):
                if old.kind != role.kind and not isinstance(old, ExploratoryRole):
                    raise LedgerError(
                        f"experiment {experiment_id} ({existing.label}) is a {old.kind} arm; the same samples cannot "
                        f"also be a {role.kind} arm (give the new experiment another seed)"
                    )
                with self._tx() as db:
                    db.execute("UPDATE experiments SET role = ? WHERE id = ?", (role_json, experiment_id))
            if n_target > existing.n_target or existing.status != "running":
                with self._tx() as db:
                    db.execute(
                        "UPDATE experiments SET n_target = MAX(n_target, ?), status = 'running', finished = NULL"
                        " WHERE id = ?",
                        (n_target, experiment_id),
                    )
            updated = self.experiment(experiment_id)
            assert updated is not None
            return updated
        with self._tx() as db:
            db.execute(
                "INSERT INTO experiments(id, incident_id, variant_id, label, mode, start_turn, n_target, spec, created,"
                " role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment_id,
                    incident_id,
                    variant_id,
                    label,
                    mode,
                    start_turn,
                    n_target,
                    json.dumps(spec),
                    time.time(),
                    role_json,
                ),
            )
        row = self.experiment(experiment_id)
        assert row is not None
        return row

    def finish_experiment(self, experiment_id: str, *, stop_reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE experiments SET status = 'done', stop_reason = ?, finished = ? WHERE id = ?",
                (stop_reason, time.time(), experiment_id),
            )

    def experiment(self, experiment_id: str) -> ExperimentRow | None:
        row = self._one(
            "SELECT id, incident_id, variant_id, label, mode, start_turn, n_target, spec, status, stop_reason, role"
            " FROM experiments WHERE id = ?",
            (experiment_id,),
        )
        return None if row is None else _experiment(row)

    def experiments(self, incident_id: str | None = None) -> list[ExperimentRow]:
        sql = (
            "SELECT id, incident_id, variant_id, label, mode, start_turn, n_target, spec, status, stop_reason, role"
            " FROM experiments"
        )
        args: tuple[Any, ...] = ()
        if incident_id is not None:
            sql += " WHERE incident_id = ?"
            args = (incident_id,)
        return [_experiment(r) for r in self._all(sql + " ORDER BY created", args)]

    def find_experiment(self, key: str) -> ExperimentRow:
        """An experiment by id, id prefix or label."""
        rows = [e for e in self.experiments() if e.id == key or e.id.startswith(key) or e.label == key]
        if len(rows) != 1:
            known = ", ".join(f"{e.id[:12]} ({e.label})" for e in self.experiments()) or "none"
            what = "no experiment" if not rows else "several experiments"
            raise LedgerError(f"{what} match {key!r} in {self.path}; experiments: {known}")
        return rows[0]

    # -------------------------------------------------------------- samples
    def record_output(self, experiment_id: str, idx: int, seed: int, output: Any, usage: dict[str, Any]) -> bool:
        """Store a sampled output before detection. False when the index already exists
        (a resumed run racing itself): the stored one stands."""
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO samples(experiment_id, idx, seed, output, input_tokens, output_tokens, cost_usd,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        experiment_id,
                        idx,
                        seed,
                        json.dumps(output),
                        int(usage.get("input_tokens", 0)),
                        int(usage.get("output_tokens", 0)),
                        float(usage.get("cost_usd", 0.0)),
                        time.time(),
                    ),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def record_detection(self, experiment_id: str, idx: int, detected: bool, evidence: Any) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE samples SET detected = ?, evidence = ? WHERE experiment_id = ? AND idx = ?",
                (int(detected), json.dumps(evidence), experiment_id, idx),
            )

    def samples(self, experiment_id: str) -> list[SampleRow]:
        rows = self._all(
            "SELECT experiment_id, idx, seed, output, detected, evidence, input_tokens, output_tokens, cost_usd"
            " FROM samples WHERE experiment_id = ? ORDER BY idx",
            (experiment_id,),
        )
        return [
            SampleRow(
                experiment_id=r[0],
                idx=r[1],
                seed=r[2],
                output=json.loads(r[3]),
                detected=None if r[4] is None else bool(r[4]),
                evidence=None if r[5] is None else json.loads(r[5]),
                input_tokens=r[6],
                output_tokens=r[7],
                cost_usd=r[8],
            )
            for r in rows
        ]

    def sample_indices(self, experiment_id: str) -> set[int]:
        return {r[0] for r in self._all("SELECT idx FROM samples WHERE experiment_id = ?", (experiment_id,))}

    def counts(self, experiment_id: str) -> Counts:
        row = self._one(
            "SELECT COALESCE(SUM(detected), 0), COUNT(detected) FROM samples WHERE experiment_id = ?",
            (experiment_id,),
        )
        return Counts(k=int(row[0]), n=int(row[1]))

    def totals(self) -> dict[str, float]:
        """Samples, tokens and dollars spent across the whole run."""
        row = self._one("SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd) FROM samples")
        return {
            "samples": int(row[0] or 0),
            "input_tokens": int(row[1] or 0),
            "output_tokens": int(row[2] or 0),
            "cost_usd": float(row[3] or 0.0),
        }

    # ----------------------------------------------------------- hypotheses
    def put_hypothesis(self, row: HypothesisRow) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO hypotheses(id, incident_id, catalogue_id, statement, status, probability, evidence, notes,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " catalogue_id = excluded.catalogue_id, statement = excluded.statement, status = excluded.status,"
                " probability = excluded.probability, evidence = excluded.evidence, notes = excluded.notes,"
                " updated = excluded.updated",
                (
                    row.id,
                    row.incident_id,
                    row.catalogue_id,
                    row.statement,
                    row.status,
                    row.probability,
                    json.dumps(row.evidence),
                    row.notes,
                    time.time(),
                ),
            )

    def hypotheses(self, incident_id: str) -> list[HypothesisRow]:
        rows = self._all(
            "SELECT id, incident_id, catalogue_id, statement, status, probability, evidence, notes FROM hypotheses"
            " WHERE incident_id = ? ORDER BY updated",
            (incident_id,),
        )
        return [
            HypothesisRow(
                id=r[0],
                incident_id=r[1],
                catalogue_id=r[2],
                statement=r[3],
                status=r[4],
                probability=r[5],
                evidence=json.loads(r[6]),
                notes=r[7],
            )
            for r in rows
        ]

    # --------------------------------------------------------------- events
    def event(self, kind: str, **data: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events(ts, kind, data) VALUES (?, ?, ?)", (time.time(), kind, json.dumps(data)))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, ts, kind, data FROM events"
        args: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        return [
            {"id": r[0], "ts": r[1], "kind": r[2], **json.loads(r[3])} for r in self._all(sql + " ORDER BY id", args)
        ]


def _experiment(row: Any) -> ExperimentRow:
    return ExperimentRow(
        id=row[0],
        incident_id=row[1],
        variant_id=row[2],
        label=row[3],
        mode=row[4],
        start_turn=row[5],
        n_target=row[6],
        spec=json.loads(row[7]),
        status=row[8],
        stop_reason=row[9],
        role=ROLE_ADAPTER.validate_json(row[10]) if row[10] else legacy_role(row[3], row[4]),
    )
