"""The executor on its local backend: real worker processes running real (cheap)
investigations of organism incidents, a batch database on disk, crashes, cancellation,
the batch budget and the finish hook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from investigator.executor import BatchDB, Executor, ExecutorError, JobRecord, JobSpec, JobState
from investigator.executor.accounting import accounting, kept_messages, paid_messages
from investigator.executor.backends import LocalBackend
from investigator.executor.worker import ATTEMPTS_FILE
from tools.budget import BudgetLimits
from tools.models.base import Pricing

# Stops the protocol before its sandbox rollouts: a few seconds per investigation.
QUICK = BudgetLimits(tool_calls=6, samples=200)


def spec(job_id: str, incident: Path, root: Path, **kw: object) -> JobSpec:
    options: dict[str, object] = {"n": 5, "backend": "local", "limits": QUICK, **kw}
    return JobSpec(id=job_id, incident_path=str(incident), run_dir=str(root / "runs" / job_id), **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- database


def test_batch_db_records_states_and_refuses_conflicting_resubmission(tmp_path: Path) -> None:
    db = BatchDB(tmp_path)
    first = JobSpec(id="a", incident_path="a.yaml", run_dir=str(tmp_path / "a"))
    record, created = db.add(first)
    assert created and record.state is JobState.pending and record.incident == "a.yaml"
    again, created = db.add(first)
    assert not created and again.id == "a"
    with pytest.raises(ExecutorError, match="different spec"):
        db.add(first.model_copy(update={"n": 7}))
    db.add(JobSpec(id="b", incident_path="b.yaml", run_dir=str(tmp_path / "b")))
    assert db.request_cancel("b").state is JobState.cancelled
    db.mark_running("a", worker="here:1")
    assert db.request_cancel("a").cancel_requested  # running: flagged for its executor
    assert db.cancel_requested() == ["a"]
    assert db.counts()[JobState.running] == 1
    assert [e["kind"] for e in db.events("a")] == ["submitted", "dispatched", "cancel_requested"]
    # a second process sees the same rows
    other = BatchDB(tmp_path / "batch.sqlite")
    assert other.get("a").state is JobState.running
    with pytest.raises(ExecutorError, match="no job 'zzz'"):
        other.get("zzz")


def test_job_spec_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JobSpec(id="x", run_dir="r")
    with pytest.raises(ValueError, match="job id"):
        JobSpec(id="../etc", incident_path="i.yaml", run_dir="r")
    local = JobSpec(id="x", incident_path="i.yaml", run_dir="r", backend="local")
    assert not local.needs_docker
    assert JobSpec(id="x", incident_path="i.yaml", run_dir="r").needs_docker


def test_a_newer_batch_schema_is_refused(tmp_path: Path) -> None:
    BatchDB(tmp_path).close()
    db = sqlite3.connect(tmp_path / "batch.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ExecutorError, match="newer"):
        BatchDB(tmp_path)


# ----------------------------------------------------------------------------- running


async def test_local_batch_isolates_a_bad_incident_calls_the_hook_and_does_not_redo_done_jobs(
    tmp_path: Path, organism_incidents: dict[str, Path], keyword_organisms: None
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("transcript: missing.json\nflag: {turn: 0}\n", encoding="utf-8")
    specs = [
        spec("subversion", organism_incidents["oversight-subversion"], tmp_path),
        spec("ambiguity", organism_incidents["shutdown-ambiguity"], tmp_path),
        spec("bad", bad, tmp_path),
    ]
    finished: list[JobRecord] = []

    async def hook(record: JobRecord) -> None:
        finished.append(record)

    executor = Executor(tmp_path, workers=2, on_finish=hook, poll_interval=0.2)
    records = {r.id: r for r in await executor.run(specs)}
    assert records["subversion"].state is records["ambiguity"].state is JobState.done
    for job in ("subversion", "ambiguity"):
        done = records[job]
        assert done.verdict in {"misalignment", "mistake", "inconclusive"}
        assert done.report_path and Path(done.report_path).is_file()
        assert done.samples > 0 and done.tool_calls > 0 and done.attempts == 1
        assert done.worker and ":" in done.worker
    failed = records["bad"]
    assert failed.state is JobState.failed and failed.error_kind == "input"
    assert "bad.yaml" in (failed.error or "") and "\n" not in (failed.error or "")
    assert sorted(r.id for r in finished) == ["ambiguity", "bad", "subversion"]
    assert all(r.state.final for r in finished)  # the hook sees the committed final state

    # Rerun on the same database: nothing done is redone (no new attempt anywhere).
    again = {r.id: r for r in await Executor(tmp_path, workers=2).run(specs)}
    for job in ("subversion", "ambiguity"):
        assert again[job].attempts == 1
        assert len((Path(again[job].run_dir) / ATTEMPTS_FILE).read_text().splitlines()) == 1
    # ...and a failed job is tried again only when asked
    assert again["bad"].attempts == 1
    retried = {r.id: r for r in await Executor(tmp_path, retry_failed=True).run()}
    assert retried["bad"].state is JobState.failed and retried["bad"].attempts == 2


async def test_a_killed_worker_is_retried_and_resumes_paying_for_nothing_twice(
    tmp_path: Path, organism_incidents: dict[str, Path], keyword_organisms: None
) -> None:
    """SIGKILL the worker's whole process group in the middle of the sandbox rollouts;
    the executor starts it again, it resumes from its checkpoint, and every subject
    call after the crash produced a sample the ledger did not already hold."""
    job = spec("crash", organism_incidents["oversight-subversion"], tmp_path, limits=BudgetLimits())
    backend = LocalBackend()
    executor = Executor(tmp_path, backend=backend, workers=1, poll_interval=0.2)
    await executor.start()
    executor.submit(job)
    ledger = Path(job.run_dir) / "case.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ledger.exists() and _rollout_samples(ledger) >= 2:
            break
        await asyncio.sleep(0.1)
    pid = backend.pid("crash")
    assert pid is not None, "the job finished before it could be killed"
    os.killpg(pid, signal.SIGKILL)
    while backend.pid("crash") in (pid, None) and executor.status("crash").state is JobState.running:
        await asyncio.sleep(0.05)  # the executor has noticed and started the next attempt
    kept_before, samples_before = kept_messages(job.run_dir)
    assert samples_before > 0
    await executor.wait()
    await executor.stop()

    record = executor.status("crash")
    assert record.state is JobState.done, record.error
    assert record.attempts == 2
    assert [e["kind"] for e in executor.db.events("crash")].count("retry") == 1
    kept_after, samples_after = kept_messages(job.run_dir)
    assert not (kept_before - kept_after), "a sample kept before the crash was lost or changed"
    paid_after = paid_messages(job.run_dir, attempts={2})
    assert paid_after, "the second attempt should have had work left to do"
    assert not (paid_after - (kept_after - kept_before)), "a kept sample was paid for again"
    books = accounting(job.run_dir)
    assert set(books.paid_by_attempt) == {1, 2}
    assert books.unaccounted == 0
    assert books.kept == books.paid - books.not_kept
    assert books.not_kept <= 8  # at most the calls in flight at the kill
    report = json.loads((Path(job.run_dir) / "report.json").read_text())
    assert report["cost"]["samples"] == samples_after


def _rollout_samples(ledger: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute(
                "SELECT COUNT(*) FROM samples JOIN experiments ON experiments.id = samples.experiment_id"
                " WHERE experiments.mode = 'rollout'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0])


async def test_budget_holds_new_jobs_and_cancel_stops_running_and_pending_ones(
    tmp_path: Path, organism_incidents: dict[str, Path], keyword_organisms: None
) -> None:
    # Price the organism's (word-counted) tokens so the batch has a bill to stop on.
    pricing = Pricing(input=10.0, output=10.0)
    first = spec("first", organism_incidents["oversight-subversion"], tmp_path, subject_pricing=pricing)
    second = spec("second", organism_incidents["shutdown-ambiguity"], tmp_path, subject_pricing=pricing)
    executor = Executor(tmp_path, workers=1, budget_dollars=0.05, poll_interval=0.2)
    records = {r.id: r for r in await executor.run([first, second])}
    assert records["first"].state is JobState.done and records["first"].dollars > 0.05
    held = records["second"]
    assert held.state is JobState.pending and held.attempts == 0
    assert held.note and "budget" in held.note and "$0.05" in held.note
    assert executor.spent() == pytest.approx(records["first"].dollars)
    # a pending job cancels at once
    cancelled = await Executor(tmp_path).cancel("second")
    assert cancelled.state is JobState.cancelled

    long_job = spec("long", organism_incidents["shutdown-ambiguity"], tmp_path / "b", limits=BudgetLimits())
    runner = Executor(tmp_path / "b", workers=1, poll_interval=0.2)
    await runner.start()
    runner.submit(long_job)
    while runner.progress("long").samples == 0:
        await asyncio.sleep(0.1)
    progress = runner.progress("long")
    assert progress.attempt == 1 and progress.samples > 0  # readable while it runs
    started = time.monotonic()
    # cancelled through the database, as another process (the service, a CLI) would
    BatchDB(tmp_path / "b").request_cancel("long")
    await runner.wait()
    await runner.stop()
    assert time.monotonic() - started < 20
    record = runner.status("long")
    assert record.state is JobState.cancelled and record.error_kind == "cancelled"
    assert not (Path(long_job.run_dir) / "report.json").exists()


async def test_one_executor_per_batch_database(tmp_path: Path) -> None:
    first = Executor(tmp_path)
    await first.start()
    try:
        with pytest.raises(ExecutorError, match="being run by executor pid"):
            await Executor(tmp_path).start()
    finally:
        await first.stop()
    await Executor(tmp_path).run()  # free again
