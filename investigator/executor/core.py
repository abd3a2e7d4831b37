"""The executor: jobs in, investigations out, every state change in the batch database.

    executor = Executor("runs/audit", backend="local", workers=2, budget_dollars=50,
                        on_finish=send_webhook)
    executor.submit(JobSpec(id="inc-1", incident_path="inc-1.yaml", run_dir="runs/audit/runs/inc-1"))
    records = await executor.run()          # batch: until nothing is left to run

or, for a long-lived service, ``await executor.start()`` once, `submit` whenever work
arrives (it is dispatched at once), and ``await executor.stop()`` at shutdown.

Scheduling is an ``asyncio.Semaphore`` (the concurrency limit) in front of the
backend; there is no scheduler of our own. Before a job starts, the batch's dollar
budget is checked: when it is spent, the job stays `pending` with a note saying so
(a later run with a larger budget starts it), and a job that does start has its own
dollar limit capped at what is left. A poller copies each running job's progress
(tool calls, samples, tokens, dollars, attempt) from its run directory into the
database, so any reader sees spend while it happens, and picks up cancellations
requested through the database by other processes.

Starting an executor on a database recovers it: jobs left `running` by an executor
that died are resumed from their checkpoints (a new attempt), `pending` ones are
started, and (with ``retry_failed``) failed ones that ran are tried again (a job
recorded as failed before it ever ran — an input that never became an incident — is
not). One executor at a
time may own a batch database (a lock file next to it).

`on_finish(record)` is called (awaited when it is a coroutine function) after a job
reaches a final state and that state is committed; its errors are recorded as
``hook_error`` events, never raised into the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO

from investigator.executor.backends import Backend, make_backend
from investigator.executor.db import BatchDB
from investigator.executor.errors import ExecutorError
from investigator.executor.spec import JobOutcome, JobRecord, JobSpec, JobState, Progress
from investigator.executor.worker import read_attempts, read_progress

FinishHook = Callable[[JobRecord], Awaitable[None] | None]


class Executor:
    """Runs `JobSpec`s on a backend and records them in a `BatchDB` (see module doc)."""

    def __init__(
        self,
        db: str | Path | BatchDB,
        *,
        backend: str | Backend = "local",
        address: str | None = None,
        workers: int | None = None,
        budget_dollars: float | None = None,
        max_attempts: int = 3,
        retry_failed: bool = False,
        on_finish: FinishHook | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        if max_attempts < 1:
            raise ExecutorError("max_attempts must be at least 1")
        if workers is not None and workers < 1:
            raise ExecutorError("workers must be at least 1")
        if budget_dollars is not None and budget_dollars < 0:
            raise ExecutorError("the dollar budget cannot be negative")
        self.db = db if isinstance(db, BatchDB) else BatchDB(db)
        self.backend = backend if isinstance(backend, Backend) else make_backend(backend, address=address)
        self.workers = workers or self.backend.default_workers()
        self.budget_dollars = budget_dollars
        self.max_attempts = max_attempts
        self.retry_failed = retry_failed
        self.on_finish = on_finish
        self.poll_interval = poll_interval
        self._sem: asyncio.Semaphore | None = None
        self._tasks: dict[str, asyncio.Task[JobRecord | None]] = {}
        # running here: job id -> (attempts recorded before this dispatch, attempts seen since)
        self._running: dict[str, tuple[int, int]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._lock_handle: IO[str] | None = None
        self._idle: asyncio.Event | None = None
        self._stopping = False

    # ------------------------------------------------------------------ queries
    def status(self, job_id: str) -> JobRecord:
        """The job's row (state, attempts, spend, verdict...)."""
        return self.db.get(job_id)

    def jobs(
        self, *, states: Sequence[JobState] | None = None, since: float | None = None, verdict: str | None = None
    ) -> list[JobRecord]:
        return self.db.jobs(states=states, since=since, verdict=verdict)

    def progress(self, job_id: str) -> Progress:
        """What the job has done so far: live from its run directory while it runs."""
        record = self.db.get(job_id)
        if record.state is JobState.running:
            live = read_progress(record.run_dir)
            return live.model_copy(
                update={
                    "tool_calls": max(live.tool_calls, record.tool_calls),
                    "samples": max(live.samples, record.samples),
                    "dollars": max(live.dollars, record.dollars),
                    "tokens": max(live.tokens, record.tokens),
                    "attempt": max(live.attempt, record.attempts),
                }
            )
        progress = read_progress(record.run_dir) if Path(record.run_dir).exists() else Progress()
        return progress.model_copy(
            update={
                "attempt": record.attempts,
                "tool_calls": record.tool_calls or progress.tool_calls,
                "samples": record.samples,
                "tokens": record.tokens,
                "dollars": record.dollars,
            }
        )

    def spent(self) -> float:
        """Dollars spent by the whole batch so far."""
        return self.db.spent()

    @property
    def started(self) -> bool:
        return self._poller is not None

    def in_flight(self) -> list[str]:
        """Jobs this executor has dispatched and not finished."""
        return [job_id for job_id, task in self._tasks.items() if not task.done()]

    # ------------------------------------------------------------------ submitting
    def submit(self, spec: JobSpec) -> JobRecord:
        """Record `spec` as pending (idempotent for the same spec) and, when the executor
        is started, dispatch it."""
        self.backend.check(spec)
        record, _created = self.db.add(spec)
        if self.started and record.state is JobState.pending:
            self._schedule(record.id)
        return record

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a pending one at once, a running one by stopping its attempt."""
        record = self.db.request_cancel(job_id)
        if record.state is JobState.running:
            await self.backend.cancel(job_id)
        return self.db.get(job_id)

    # ------------------------------------------------------------------ lifecycle
    def _take_lock(self) -> None:
        path = self.db.path.with_name(self.db.path.name + ".lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ExecutorError(
                f"{self.db.path} is being run by {holder}; wait for it to finish or stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"executor pid {os.getpid()}\n")
        handle.flush()
        self._lock_handle = handle

    async def start(self) -> None:
        """Own the database, recover interrupted jobs and dispatch every pending one."""
        if self.started:
            return
        self._take_lock()
        self._stopping = False
        self._sem = asyncio.Semaphore(self.workers)
        self._idle = asyncio.Event()
        for record in self.db.jobs(states=[JobState.running]):
            self.db.event(record.id, "recovered", reason="it was running when its executor stopped")
            self._schedule(record.id, resume=True)
        if self.retry_failed:
            for record in self.db.jobs(states=[JobState.failed]):
                if record.attempts == 0:
                    continue  # failed by its submitter before it ever ran (an input error row)
                self.db.reopen(record.id, reason="retrying a failed job")
        for record in self.db.jobs(states=[JobState.pending]):
            self._schedule(record.id)
        await self.backend.warm()
        self._poller = asyncio.create_task(self._poll_loop(), name="executor-poller")
        self._check_idle()

    async def stop(self) -> None:
        """Stop dispatching; attempts still running are stopped and stay `running` in
        the database, to be resumed by the next executor that starts on it."""
        self._stopping = True
        if self._poller is not None:
            while not self._poller.done():
                self._poller.cancel()
                await asyncio.wait({self._poller}, timeout=1.0)
            self._poller = None
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.backend.close()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    async def wait(self) -> None:
        """Until no job is in flight."""
        assert self._idle is not None, "start() first"
        while self.in_flight():
            self._idle.clear()
            await self._idle.wait()

    async def run(self, specs: Sequence[JobSpec] = ()) -> list[JobRecord]:
        """Batch mode: submit `specs`, run everything runnable in the database, return
        every job's final row."""
        for spec in specs:
            self.backend.check(spec)
            self.db.add(spec)
        await self.start()
        try:
            await self.wait()
        finally:
            await self.stop()
        return self.db.jobs()

    async def __aenter__(self) -> Executor:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ internals
    def _schedule(self, job_id: str, *, resume: bool = False) -> None:
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            return
        self._tasks[job_id] = asyncio.create_task(self._run_one(job_id, resume=resume), name=f"job:{job_id}")
        self._tasks[job_id].add_done_callback(lambda _t: self._check_idle())

    def _check_idle(self) -> None:
        if self._idle is not None and not self.in_flight():
            self._idle.set()

    def _budget_hold(self) -> str | None:
        if self.budget_dollars is None:
            return None
        spent = self.db.spent()
        if spent >= self.budget_dollars:
            return f"not started: the batch's budget of ${self.budget_dollars:.2f} is spent (${spent:.2f})"
        return None

    def _capped(self, spec: JobSpec) -> JobSpec:
        """The spec with its dollar limit capped at what is left of the batch's budget."""
        if self.budget_dollars is None:
            return spec
        left = max(0.0, self.budget_dollars - self.db.spent())
        own = spec.limits.dollars
        if own is not None and own <= left:
            return spec
        return spec.model_copy(update={"limits": spec.limits.model_copy(update={"dollars": round(left, 6)})})

    async def _run_one(self, job_id: str, *, resume: bool) -> JobRecord | None:
        assert self._sem is not None
        async with self._sem:
            record = self.db.get(job_id)
            if record.state.final:
                return record
            if record.state is JobState.pending or resume:
                hold = self._budget_hold()
                if hold is not None:
                    self.db.hold(job_id, hold)
                    return self.db.get(job_id)
            spec = self.db.spec(job_id)
            try:
                self.backend.check(spec)
            except ExecutorError as exc:
                return await self._finish(
                    job_id, JobState.failed, JobOutcome(ok=False, attempt=0, error=str(exc), error_kind="error")
                )
            self.db.mark_running(job_id)
            base = len(read_attempts(Path(spec.run_dir)))
            self._running[job_id] = (base, base)
            try:
                outcome = await self.backend.run(self._capped(spec), max_attempts=self.max_attempts)
            except asyncio.CancelledError:
                raise  # the executor is stopping: the row stays `running`, to be resumed
            except Exception as exc:
                outcome = JobOutcome(
                    ok=False,
                    attempt=0,
                    error=f"the executor failed to run it: {type(exc).__name__}: {exc}",
                    error_kind="bug",
                )
            finally:
                self._running.pop(job_id, None)
            if outcome.ok:
                state = JobState.done
            elif outcome.error_kind == "cancelled":
                state = JobState.cancelled
            else:
                state = JobState.failed
            return await self._finish(job_id, state, outcome)

    async def _finish(self, job_id: str, state: JobState, outcome: JobOutcome) -> JobRecord:
        attempts = read_attempts(Path(self.db.get(job_id).run_dir))
        if attempts:
            outcome = outcome.model_copy(update={"attempt": max(outcome.attempt, len(attempts))})
        record = self.db.finish(job_id, state, outcome)
        if self.on_finish is not None:
            try:
                result = self.on_finish(record)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self.db.event(job_id, "hook_error", error=f"{type(exc).__name__}: {exc}")
        return record

    async def _poll_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            try:
                self._poll_once()
                for job_id in self.db.cancel_requested():
                    if job_id in self._running:
                        await self.backend.cancel(job_id)
            except Exception as exc:  # a poll must never take the batch down
                with contextlib.suppress(Exception):
                    self.db.event(None, "poll_error", error=f"{type(exc).__name__}: {exc}")

    def _poll_once(self) -> None:
        for job_id, (base, seen) in list(self._running.items()):
            record = self.db.get(job_id)
            progress = read_progress(record.run_dir)
            attempts = read_attempts(Path(record.run_dir))
            worker = str(attempts[-1].get("worker")) if attempts else None
            if len(attempts) > max(seen, base + 1):
                self.db.retrying(job_id, attempt=len(attempts), reason="the previous attempt's worker died")
            if job_id in self._running:
                self._running[job_id] = (base, max(seen, len(attempts)))
            self.db.update_progress(job_id, progress, worker=worker)


__all__ = ["Executor", "FinishHook"]
