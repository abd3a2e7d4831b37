"""The durable queue: SIGKILL the server in the middle of an investigation, start it
again on the same directory, and everything completes — the running investigation
resumes from its checkpoint paying for no kept sample twice, the queued one starts,
and the killed server's worker did not outlive it."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx

from investigator.executor import BatchDB
from investigator.executor.accounting import accounting, kept_messages, paid_messages
from investigator.executor.worker import read_attempts
from tests.investigator.service.conftest import Server, auth, incident_body, wait_until_final, write_config


def _samples(ledger: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_and_restart_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, organism_incidents: dict[str, Path]
) -> None:
    config = write_config(tmp_path, workers=1)
    state = tmp_path / "state"
    first = Server(state_dir=state, config_file=config).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            long_job = client.post(
                "/v1/incidents",
                json=incident_body(
                    organism_incidents["oversight-subversion"],
                    planner="protocol",
                    n=5,
                    budget={"tool_calls": 8, "samples": 400},
                ),
                headers=auth(),
            ).json()
            queued = client.post(
                "/v1/incidents", json=incident_body(organism_incidents["shutdown-ambiguity"]), headers=auth()
            ).json()
        run_dir = state / "runs" / long_job["id"]
        deadline = time.monotonic() + 240
        while _samples(run_dir / "case.sqlite") < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _samples(run_dir / "case.sqlite") >= 5, first.log_text()
        worker_pid = int(str(read_attempts(run_dir)[-1]["worker"]).rsplit(":", 1)[1])
        first.kill()
    finally:
        first.stop()
    # the worker follows its server (no second writer racing the next one)
    deadline = time.monotonic() + 20
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker_pid), "the killed server's worker is still running"
    kept_before, samples_before = kept_messages(run_dir)
    db = BatchDB(state)
    assert db.get(long_job["id"]).state.value == "running"  # as the dead server left it
    assert db.get(queued["id"]).state.value == "pending"
    db.close()

    second = Server(state_dir=state, config_file=config).start()
    try:
        with httpx.Client(base_url=second.url, timeout=60) as client:
            views = wait_until_final(client, [long_job["id"], queued["id"]], timeout=400)
            assert views[long_job["id"]]["state"] == "done", (
                views[long_job["id"]].get("error"),
                read_attempts(run_dir),
                second.log_text()[-3000:],
            )
            assert views[queued["id"]]["state"] == "done", views[queued["id"]]
            assert views[long_job["id"]]["progress"]["attempt"] == 2
            report = client.get(f"/v1/incidents/{long_job['id']}/report", headers=auth()).json()
    finally:
        second.stop()

    db = BatchDB(state)
    assert "recovered" in [e["kind"] for e in db.events(long_job["id"])]
    db.close()
    kept_after, samples_after = kept_messages(run_dir)
    assert samples_before > 0 and samples_after >= samples_before
    assert not (kept_before - kept_after), "a sample kept before the crash was lost or changed"
    paid_again = paid_messages(run_dir, attempts={2})
    assert paid_again, "the restarted attempt had nothing left to do: the kill came too late"
    assert not (paid_again - (kept_after - kept_before)), "a sample kept before the crash was paid for again"
    books = accounting(run_dir)
    assert set(books.paid_by_attempt) == {1, 2} and books.unaccounted == 0
    assert books.kept == books.paid - books.not_kept and books.not_kept <= 8
    assert report["cost"]["samples"] == samples_after
