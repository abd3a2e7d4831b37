"""The ledger: schema migrations, resumable samples, crash safety under SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.ledger import SCHEMA_VERSION, HypothesisRow, Ledger, LedgerError


def test_schema_and_resume_semantics(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:
        assert ledger.path == tmp_path / "case.sqlite"
        mode = ledger._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        ledger.put_incident("inc", {"id": "inc"})
        ledger.put_variant("var-1", "inc", parent=None, description="original", edits=[], diff="")
        row = ledger.open_experiment(
            "exp-1",
            incident_id="inc",
            variant_id="var-1",
            label="base",
            mode="next_turn",
            start_turn=5,
            n_target=3,
            spec={},
        )
        assert row.status == "running"
        assert ledger.record_output("exp-1", 0, 100, [{"m": 1}], {"input_tokens": 10, "output_tokens": 2})
        assert not ledger.record_output("exp-1", 0, 100, [{"m": 2}], {})  # never twice
        ledger.record_detection("exp-1", 0, True, {"why": "x"})
        ledger.record_output("exp-1", 1, 101, [{"m": 3}], {})
        assert ledger.counts("exp-1").model_dump() == {"k": 1, "n": 1}  # undetected rows do not count
        assert ledger.sample_indices("exp-1") == {0, 1}
        with pytest.raises(LedgerError, match="different mode"):
            ledger.open_experiment(
                "exp-1",
                incident_id="inc",
                variant_id="var-1",
                label="x",
                mode="rollout",
                start_turn=5,
                n_target=3,
                spec={},
            )
        ledger.finish_experiment("exp-1", stop_reason="fixed n")
        again = ledger.open_experiment(
            "exp-1",
            incident_id="inc",
            variant_id="var-1",
            label="base",
            mode="next_turn",
            start_turn=5,
            n_target=9,
            spec={},
        )
        assert (again.status, again.n_target) == ("running", 9)
        assert ledger.find_experiment("base").id == "exp-1"
        assert ledger.find_experiment("exp-").id == "exp-1"
        ledger.put_hypothesis(
            HypothesisRow(
                id="h1",
                incident_id="inc",
                catalogue_id="laziness",
                statement="lazy",
                status="supported",
                probability=0.7,
                evidence=["exp-1"],
            )
        )
        ledger.put_hypothesis(
            HypothesisRow(
                id="h1",
                incident_id="inc",
                catalogue_id="laziness",
                statement="lazy",
                status="refuted",
                probability=0.1,
                evidence=["exp-1"],
            )
        )
        assert [h.status for h in ledger.hypotheses("inc")] == ["refuted"]
        ledger.event("note", text="hello")
        assert ledger.events("note")[0]["text"] == "hello"
        assert ledger.totals()["input_tokens"] == 10


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Ledger(tmp_path).close()
    db = sqlite3.connect(tmp_path / "case.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerError, match="newer than this program"):
        Ledger(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "case.sqlite").write_text("definitely not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable ledger"):
        Ledger(tmp_path)


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from tests.factories import precommit_incident
    from tools.ledger import Ledger
    from tools.models.registry import get_model
    from tools.resample import ExperimentSpec, run_experiment

    class Slow:
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
        async def generate(self, *args, **kwargs):
            await asyncio.sleep(0.05)
            return await self.inner.generate(*args, **kwargs)

    incident = precommit_incident()
    subject = Slow(get_model("organism/precommit-lazy-knowing"))
    print("ready", flush=True)
    asyncio.run(run_experiment(Ledger(sys.argv[1]), incident, ExperimentSpec(label="baseline", n=int(sys.argv[2])),
                               subject=subject, concurrency=1))
    print("finished", flush=True)
    """
)


def test_sigkill_mid_experiment_then_resume_gives_exactly_n(tmp_path: Path) -> None:
    import asyncio

    from tests.factories import precommit_incident
    from tools.models.registry import get_model
    from tools.resample import ExperimentSpec, run_experiment

    n = 80
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    ledger_path = tmp_path / "case.sqlite"
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline:
        if ledger_path.exists():
            db = sqlite3.connect(ledger_path)
            try:
                stored = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
            db.close()
            if stored >= 20:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 20 <= stored < n, "the child must be killed mid-experiment"

    subject = get_model("organism/precommit-lazy-knowing")
    with Ledger(tmp_path) as ledger:
        before = ledger.sample_indices(ledger.experiments()[0].id)
        result = asyncio.run(
            run_experiment(ledger, precommit_incident(), ExperimentSpec(label="baseline", n=n), subject=subject)
        )
        samples = ledger.samples(result.id)
    assert result.n == n
    assert [s.idx for s in samples] == list(range(n))
    assert len({s.seed for s in samples}) == n
    assert all(s.detected is not None for s in samples)
    generated_again = sum(call.n for call in subject.meter.calls)
    assert generated_again == n - len(before)  # nothing already stored was sampled again
