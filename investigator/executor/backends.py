"""Where attempts run: a local process per job, or a Ray task per job.

Both backends take a `JobSpec` and return the `JobOutcome` of its last attempt; the
`Executor` decides what runs when (a semaphore for the concurrency limit, the batch's
budget) and records everything in the batch database.

- `LocalBackend`: each job is its own worker process in its own session, so a crash,
  a leak or a hung sandbox in one investigation cannot touch another, and cancelling
  one kills its whole process tree. By default workers are forked from a fork server
  (the standard library's ``multiprocessing`` forkserver) that has already imported
  the investigator, so a job starts in milliseconds instead of paying seconds of
  imports each time (``preload=False``, or another ``python``, runs ``python -m
  investigator.executor.worker`` instead). A worker that dies (signal, OOM, exit
  without an outcome) is started again, up to `max_attempts`, and resumes from its
  checkpoint. Workers die with the executor (the parent-death signal, or a pidfd
  watch for forked workers), so a killed executor never leaves a worker racing its
  successor. A forked worker does not re-run the executor's main module (see
  `_start_forked`), so any program may run an executor, guarded or not.
- `RayBackend`: each job is a Ray task declaring its resources (CPUs, memory, and the
  custom ``docker`` resource when its sandboxes need an engine), retried by Ray
  itself when its worker or node dies (``max_retries``); the retry resumes from the
  checkpoint in the run directory, which must be on storage every node shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import types
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from investigator.executor.errors import ExecutorError
from investigator.executor.spec import JobOutcome, JobSpec
from investigator.executor.worker import (
    EXIT_OK,
    JOB_FILE,
    OUTCOME_FILE,
    WORKER_LOG,
    read_json,
    read_progress,
    write_json_atomic,
)


def _outcome_file(spec: JobSpec) -> JobOutcome | None:
    data = read_json(Path(spec.run_dir) / OUTCOME_FILE)
    return JobOutcome.model_validate(data) if isinstance(data, dict) else None


def _failure(spec: JobSpec, kind: Any, message: str) -> JobOutcome:
    progress = read_progress(spec.run_dir)
    return JobOutcome(
        ok=False,
        attempt=progress.attempt,
        error=message,
        error_kind=kind,
        samples=progress.samples,
        tokens=progress.tokens,
        dollars=progress.dollars,
        tool_calls=progress.tool_calls,
    )


class _Worker(Protocol):
    """A running worker process: an ``asyncio.subprocess.Process`` or a `_ForkedWorker`."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


PRELOAD = (
    "investigator.executor.worker",
    "investigator.cli",
    "investigator.investigate",
    "investigator.render",
    "investigator.judge",
    "tools.plots",
    "tools.organisms.registry",
    "sandboxes.local",
    "sandboxes.docker",
)
"""What the fork server imports once, so that forked workers start with it loaded.
Importing only: nothing here reads settings or the environment at import time."""


def _forked_main(job_file: str, log_path: str, env: dict[str, str], cwd: str, executor_pid: int) -> None:
    """A forked worker: its own session, output to the worker log, the executor's
    environment and directory of now (not of when the fork server started), following
    the executor, then one attempt (`investigator.executor.worker.run_file`)."""
    from investigator.executor.worker import follow_executor, run_file

    os.setsid()
    os.chdir(cwd)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    follow_executor(executor_pid)
    try:
        code = run_file(job_file)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class _ForkedWorker:
    """A `multiprocessing` process with the interface of ``asyncio.subprocess.Process``
    that `LocalBackend` uses: `pid`, `returncode`, ``await wait()`` (any number of
    waiters; the process sentinel is watched once)."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self._exit: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    async def wait(self) -> int:
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            sentinel = self._process.sentinel
            exit_future = self._exit

            def exited() -> None:
                loop.remove_reader(sentinel)
                self._process.join()
                if not exit_future.done():
                    exit_future.set_result(self._process.exitcode if self._process.exitcode is not None else -1)

            loop.add_reader(sentinel, exited)
        return await asyncio.shield(self._exit)


def _signal_tree(pid: int, sig: int) -> None:
    """Signal the worker's process group, or the worker alone when it has not made its
    own session yet (a forked worker in its first instant)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


_NO_MAIN = types.ModuleType("__main__")
_STARTING = threading.Lock()


def _start_forked(process: multiprocessing.process.BaseProcess) -> None:
    """Start a forked worker without its parent's main module. ``multiprocessing``
    re-runs the parent's ``__main__`` (as ``__mp_main__``) in every child it starts this
    way, so that objects defined there can be unpickled; our target lives in this
    module, so the worker needs none of it — and re-running a CLI's main module per job
    (``python -m investigator.cli serve`` re-executes the whole CLI) costs seconds. The
    main module is hidden only while the start request is prepared, under a lock."""
    with _STARTING:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = _NO_MAIN
        try:
            process.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _fork_context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, multiprocessing.context.ForkServerContext)
    context.set_forkserver_preload(list(PRELOAD))
    return context


async def _exited(proc: _Worker, timeout: float | None) -> bool:
    """Wait for `proc` to exit, at most `timeout` seconds (None: no limit). Unlike
    ``asyncio.wait_for`` on Python 3.11, a cancellation is never swallowed when the
    process exits at the same moment."""
    waiter = asyncio.ensure_future(proc.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        if not waiter.done():
            waiter.cancel()
    return bool(done)


class Backend(ABC):
    """Runs one job's attempts to an outcome."""

    name: str

    @abstractmethod
    async def run(self, spec: JobSpec, *, max_attempts: int) -> JobOutcome:
        """Run `spec` until it finishes, fails, or has died `max_attempts` times."""

    @abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Stop the running attempt of `job_id` (True when one was running here)."""

    def check(self, spec: JobSpec) -> None:
        """Raise `ExecutorError` when this backend cannot run `spec` at all."""
        return None

    def default_workers(self) -> int:
        return 2

    async def warm(self) -> None:
        """Prepare to start jobs quickly (called when an executor starts)."""
        return None

    async def close(self) -> None:
        return None


# ----------------------------------------------------------------------------- local


class LocalBackend(Backend):
    """One worker process per job on this machine (see module doc)."""

    name = "local"

    def __init__(self, *, python: str | None = None, kill_grace_s: float = 5.0, preload: bool | None = None) -> None:
        if preload and python is not None:
            raise ExecutorError("preloaded (forked) workers run this interpreter; give `python` or `preload`, not both")
        self.python = python or sys.executable
        self.kill_grace_s = kill_grace_s
        self.preload = python is None if preload is None else preload
        self._procs: dict[str, _Worker] = {}
        self._cancelled: set[str] = set()

    def default_workers(self) -> int:
        return max(1, min(4, (os.cpu_count() or 2) // 2 or 1))

    async def warm(self) -> None:
        """Start the fork server now, so its imports overlap whatever comes before the
        first job (a service's first request) instead of delaying that job."""
        if self.preload:
            import multiprocessing.forkserver

            _fork_context()
            await asyncio.to_thread(multiprocessing.forkserver.ensure_running)

    async def _spawn(self, spec: JobSpec) -> _Worker:
        run_dir = Path(spec.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / JOB_FILE, spec.model_dump(mode="json"))
        env = {**os.environ, "FORENSICS_EXECUTOR_PID": str(os.getpid())}
        if self.preload:
            process = _fork_context().Process(
                target=_forked_main,
                args=(str(run_dir / JOB_FILE), str(run_dir / WORKER_LOG), env, str(Path.cwd()), os.getpid()),
                name=f"forensics-job:{spec.id}",
            )
            # starting the fork server (the first time) imports the investigator: not on the event loop
            starting = asyncio.ensure_future(asyncio.to_thread(_start_forked, process))
            try:
                await asyncio.shield(starting)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await starting
                    await self._kill(_ForkedWorker(process))
                raise
            return _ForkedWorker(process)
        log = (run_dir / WORKER_LOG).open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "investigator.executor.worker",
                str(run_dir / JOB_FILE),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()

    async def _kill(self, proc: _Worker) -> None:
        """SIGTERM the worker's whole process group, SIGKILL it after the grace period."""
        if proc.returncode is not None:
            return
        _signal_tree(proc.pid, signal.SIGTERM)
        if not await _exited(proc, self.kill_grace_s):
            _signal_tree(proc.pid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left of its tree

    async def run(self, spec: JobSpec, *, max_attempts: int) -> JobOutcome:
        deaths: list[str] = []
        while True:
            proc = await self._spawn(spec)
            self._procs[spec.id] = proc
            try:
                if not await _exited(proc, spec.timeout_s):
                    await self._kill(proc)
                    return _failure(spec, "timeout", f"timed out after {spec.timeout_s:g} s")
            except asyncio.CancelledError:
                await self._kill(proc)
                raise
            finally:
                self._procs.pop(spec.id, None)
            if spec.id in self._cancelled:
                self._cancelled.discard(spec.id)
                return _failure(spec, "cancelled", "cancelled while running")
            outcome = _outcome_file(spec)
            if outcome is not None:
                return outcome
            code = proc.returncode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
            deaths.append(how)
            if code == EXIT_OK or len(deaths) >= max_attempts:
                return _failure(
                    spec,
                    "crash",
                    f"the worker died {len(deaths)} time(s) without finishing ({'; '.join(deaths)});"
                    f" see {Path(spec.run_dir) / WORKER_LOG}",
                )
            # died without an outcome: start it again; it resumes from its checkpoint

    async def cancel(self, job_id: str) -> bool:
        proc = self._procs.get(job_id)
        if proc is None:
            return False
        self._cancelled.add(job_id)
        await self._kill(proc)
        return True

    def pid(self, job_id: str) -> int | None:
        """The worker process of a running job (its process group id too)."""
        proc = self._procs.get(job_id)
        return proc.pid if proc is not None else None

    async def close(self) -> None:
        for proc in list(self._procs.values()):
            await self._kill(proc)


# ----------------------------------------------------------------------------- ray


def _ray_task(spec_json: str) -> dict[str, Any]:
    """The Ray task: one attempt at the job, in the worker process Ray gives it."""
    from investigator.executor.worker import run_job

    spec = JobSpec.model_validate_json(spec_json)
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / JOB_FILE, spec.model_dump(mode="json"))
    return run_job(spec, backend="ray").model_dump(mode="json")


class RayBackend(Backend):
    """Each job a Ray task (see module doc). `address` is what ``ray.init`` takes:
    ``auto``, ``HOST:PORT`` of a head node, or ``ray://HOST:PORT`` for Ray Client."""

    name = "ray"

    def __init__(self, address: str = "auto", *, namespace: str = "model-forensics") -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs Ray: pip install 'model-forensics[ray]'") from None
        self._ray = ray
        self.address = address
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("FORENSICS_")}
            try:
                ray.init(
                    address=address,
                    namespace=namespace,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
        self._remote = ray.remote(_ray_task)
        self._refs: dict[str, Any] = {}

    def resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())  # type: ignore[no-untyped-call]

    def default_workers(self) -> int:
        return max(1, int(self.resources().get("CPU", 1)))

    def check(self, spec: JobSpec) -> None:
        offered = self.resources()
        if spec.needs_docker and offered.get("docker", 0) < 1:
            raise ExecutorError(
                f"job {spec.id} needs a node with Docker (its sandbox backend is {spec.backend or 'docker'}), and no"
                " node of the Ray cluster offers the `docker` resource: start Docker nodes with"
                " `ray start ... --resources '{\"docker\": 4}'`, or run the job with backend local"
            )
        if spec.resources.cpus > offered.get("CPU", 0):
            raise ExecutorError(
                f"job {spec.id} asks for {spec.resources.cpus:g} CPUs; the Ray cluster has {offered.get('CPU', 0):g}"
            )

    async def run(self, spec: JobSpec, *, max_attempts: int) -> JobOutcome:
        ray = self._ray
        options: dict[str, Any] = {
            "num_cpus": spec.resources.cpus,
            "max_retries": max(0, max_attempts - 1),
            "retry_exceptions": False,
            "name": f"forensics-job:{spec.id}",
        }
        if spec.needs_docker:
            options["resources"] = {"docker": 1}
        if spec.resources.memory_mb is not None:
            options["memory"] = spec.resources.memory_mb * 1024 * 1024
        ref = self._remote.options(**options).remote(spec.model_dump_json())
        self._refs[spec.id] = ref
        try:
            future = asyncio.wrap_future(ref.future())
            try:
                done, _ = await asyncio.wait({future}, timeout=spec.timeout_s)
            except asyncio.CancelledError:
                ray.cancel(ref, force=True)
                raise
            if not done:
                ray.cancel(ref, force=True)
                return _failure(spec, "timeout", f"timed out after {spec.timeout_s:g} s")
            try:
                result = future.result()
            except ray.exceptions.TaskCancelledError:
                return _failure(spec, "cancelled", "cancelled while running")
            except ray.exceptions.RayError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return _failure(
                    spec, "crash", f"the Ray task failed after {max_attempts} attempt(s): {type(exc).__name__}: {first}"
                )
        finally:
            self._refs.pop(spec.id, None)
        return JobOutcome.model_validate(result)

    async def cancel(self, job_id: str) -> bool:
        ref = self._refs.get(job_id)
        if ref is None:
            return False
        self._ray.cancel(ref, force=True)
        return True

    async def close(self) -> None:
        for ref in list(self._refs.values()):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)


def make_backend(name: str, *, address: str | None = None) -> Backend:
    """The backend called `name` (``local`` or ``ray``)."""
    if name == "local":
        if address:
            raise ExecutorError("--address is for the ray executor; the local executor runs on this machine")
        return LocalBackend()
    if name == "ray":
        return RayBackend(address or "auto")
    raise ExecutorError(f"unknown executor {name!r}; executors: local, ray")
