"""The unit of work: one attempt at one job, on whatever machine runs it.

`run_job(spec)` is what a local worker process (``python -m investigator.executor.worker
RUN_DIR/job.json``) and a Ray task both call. It

1. takes the run directory's lock (``.job.lock``), so two workers never write one run;
2. appends this attempt to ``attempts.jsonl`` (attempt number, backend, host, pid, node);
3. loads the incident (a bad one ends the job with a one-line reason, kind ``input``);
4. investigates through `investigate_job`, the one adapter onto
   `investigator.investigate.investigate`, always with ``resume=True``: a retried
   attempt continues from the graph checkpoint, and experiments skip every sample the
   ledger already holds, so nothing is paid for twice;
5. writes ``progress.json`` after every step and ``outcome.json`` at the end.

The subject is wrapped in `RecordingSubject`, which appends every call it makes (the
attempt, seed, usage and a hash of each returned message) to ``subject_calls.jsonl``:
what was actually paid for, per attempt, to compare with what the ledger kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import socket
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, get_args

from investigator.executor.errors import ExecutorError
from investigator.executor.spec import ErrorKind, JobOutcome, JobSpec, Progress
from sandboxes.errors import SandboxError
from tools.errors import ForensicsError
from tools.incident import Incident, load_incident
from tools.models.base import ModelClient, Usage
from tools.transcript import Message, ToolSpec, Transcript

JOB_FILE = "job.json"
ATTEMPTS_FILE = "attempts.jsonl"
PROGRESS_FILE = "progress.json"
OUTCOME_FILE = "outcome.json"
CALLS_FILE = "subject_calls.jsonl"
LOCK_FILE = ".job.lock"
ERROR_LOG = "error.log"
WORKER_LOG = "worker.log"

LOCK_WAIT_S = 60.0


# ----------------------------------------------------------------------------- files


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, so readers see the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when it is missing or (being replaced) unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """Every attempt recorded in the run directory, oldest first."""
    try:
        lines = (run_dir / ATTEMPTS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def ledger_totals(run_dir: Path) -> dict[str, float] | None:
    """Samples, tokens and dollars in the run's ledger, read without writing to it
    (None before the ledger exists)."""
    path = run_dir / "case.sqlite"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens + output_tokens), 0), COALESCE(SUM(cost_usd), 0)"
                " FROM samples"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return {"samples": int(row[0]), "tokens": int(row[1]), "dollars": float(row[2])}


def read_progress(run_dir: str | Path) -> Progress:
    """What a job has done so far: the worker's last ``progress.json`` with the ledger's
    live totals (which move during a long experiment, between steps)."""
    d = Path(run_dir)
    data = read_json(d / PROGRESS_FILE) or {}
    progress = Progress.model_validate(data) if isinstance(data, dict) else Progress()
    totals = ledger_totals(d)
    if totals is not None:
        progress = progress.model_copy(
            update={
                "samples": max(progress.samples, int(totals["samples"])),
                "tokens": max(progress.tokens, int(totals["tokens"])),
                "dollars": max(progress.dollars, totals["dollars"]),
            }
        )
    attempts = read_attempts(d)
    if attempts:
        progress = progress.model_copy(update={"attempt": max(progress.attempt, len(attempts))})
    return progress


@contextlib.contextmanager
def run_lock(run_dir: Path, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the run directory's exclusive lock (waits for a previous worker that is still
    dying, then gives up with a clear error)."""
    handle = (run_dir / LOCK_FILE).open("a+")
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ExecutorError(
                        f"{run_dir}: another worker still holds {LOCK_FILE} after {wait_s:.0f} s; "
                        "is the same job running elsewhere?"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        handle.close()


def worker_name(backend: str) -> str:
    """Who runs this attempt: host and pid, and the Ray node when on Ray."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    if backend == "ray":
        with contextlib.suppress(Exception):
            import ray

            name += f"@node:{ray.get_runtime_context().get_node_id()[:12]}"
    return name


# ----------------------------------------------------------------------------- subject


def message_digest(message: Message | dict[str, Any]) -> str:
    """A stable hash of one message as JSON (how calls are matched to ledger samples)."""
    data = message.model_dump(mode="json") if isinstance(message, Message) else message
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:24]


class RecordingSubject(ModelClient):
    """The subject, with every call appended to ``subject_calls.jsonl``. It keeps the
    wrapped client's name and model string (experiment ids hash the model string, so a
    retried attempt finds its experiments) and delegates `generate` to it."""

    provider: ClassVar[str] = "recorded"

    def __init__(self, inner: ModelClient, path: Path, *, attempt: int) -> None:
        super().__init__(inner.name, pricing=inner.pricing)
        self.inner = inner
        self.model_string = inner.model_string
        self.meter = inner.meter
        self.path = path
        self.attempt = attempt

    async def generate(
        self,
        transcript: Transcript,
        *,
        n: int = 1,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> list[Message]:
        messages = await self.inner.generate(
            transcript, n=n, seed=seed, temperature=temperature, max_tokens=max_tokens, tools=tools
        )
        usage = Usage()
        for m in messages:
            usage = usage + Usage.model_validate(m.metadata.get("usage") or {})
        line = {
            "attempt": self.attempt,
            "ts": round(time.time(), 3),
            "seed": seed,
            "n": n,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": usage.cost_usd,
            "messages": [message_digest(m) for m in messages],
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return messages

    async def _generate(
        self,
        transcript: Transcript,
        *,
        n: int,
        seed: int | None,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[ToolSpec],
    ) -> tuple[list[Message], Usage]:  # pragma: no cover - generate() delegates whole calls
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.inner.aclose()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


# ----------------------------------------------------------------------------- the adapter


class StepCounter:
    """Turns the graph's step lines into `Progress` and writes ``progress.json``."""

    def __init__(self, run_dir: Path, *, attempt: int) -> None:
        self.run_dir = run_dir
        before = read_json(run_dir / PROGRESS_FILE)
        previous = Progress.model_validate(before) if isinstance(before, dict) else Progress()
        self.progress = previous.model_copy(update={"attempt": attempt})

    def __call__(self, line: str) -> None:
        # The graph reports one line at triage, one per tool call, and one when the report
        # is written (investigator.graph.Hooks); tool calls are the lines in between.
        tool_call = not (line.startswith("triage:") or line == "report written")
        progress = self.progress.model_copy(
            update={
                "steps": self.progress.steps + 1,
                "tool_calls": self.progress.tool_calls + (1 if tool_call else 0),
                "last_step": line[:300],
                "updated": time.time(),
            }
        )
        totals = ledger_totals(self.run_dir)
        if totals is not None:
            progress = progress.model_copy(
                update={
                    "samples": int(totals["samples"]),
                    "tokens": int(totals["tokens"]),
                    "dollars": totals["dollars"],
                }
            )
        self.progress = progress
        with contextlib.suppress(OSError):
            write_json_atomic(self.run_dir / PROGRESS_FILE, progress.model_dump(mode="json"))


async def investigate_job(
    spec: JobSpec, incident: Incident, run_dir: Path, *, attempt: int, on_step: Callable[[str], None]
) -> Any:
    """Run (or resume) the investigation of `spec` — the only place that knows the
    signature of `investigator.investigate.investigate`."""
    from investigator.investigate import PlannerName, investigate
    from tools.models.registry import get_model

    if spec.planner not in get_args(PlannerName):
        raise ExecutorError(f"unknown planner {spec.planner!r}; planners: {', '.join(get_args(PlannerName))}")
    accepted = inspect.signature(investigate).parameters
    options: dict[str, Any] = {}
    if spec.blind:
        if "blind" not in accepted:
            raise ExecutorError("this version of the investigator has no blind mode; drop --blind")
        options["blind"] = True
    if spec.seed:
        if "seed" not in accepted:
            raise ExecutorError("this version of the investigator takes no investigation seed; drop the seed")
        options["seed"] = spec.seed
    if spec.allow_host and "allow_host" in accepted:
        options["allow_host"] = True
    inner = get_model(incident.subject.model, **({"pricing": spec.subject_pricing} if spec.subject_pricing else {}))
    subject = RecordingSubject(inner, run_dir / CALLS_FILE, attempt=attempt)
    return await investigate(
        incident,
        run_dir,
        planner=spec.planner,  # type: ignore[arg-type]
        model=spec.model,
        judge_model=spec.judge,
        limits=spec.limits,
        n=spec.n,
        resume=True,
        backend=spec.backend,
        subject=subject,
        on_step=on_step,
        **options,
    )


def _apply_search_paths(spec: JobSpec) -> None:
    """Make the job's organism and scenario directories visible to every loader in this
    process (through the variables the loaders read)."""
    for variable, dirs in (("FORENSICS_ORGANISMS", spec.organism_dirs), ("FORENSICS_SCENARIOS", spec.scenario_dirs)):
        if not dirs:
            continue
        current = [p for p in os.environ.get(variable, "").split(os.pathsep) if p]
        os.environ[variable] = os.pathsep.join(dict.fromkeys([*dirs, *current]))


def _load(spec: JobSpec) -> Incident:
    if spec.incident is not None:
        return spec.incident
    assert spec.incident_path is not None
    return load_incident(spec.incident_path)


def run_job(spec: JobSpec, *, backend: str = "local") -> JobOutcome:
    """One attempt at `spec` (see module doc). Never raises for a job's own failure: the
    outcome says what went wrong (a worker that dies says nothing — its executor retries)."""
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    worker = worker_name(backend)
    started = time.time()
    try:
        lock = run_lock(run_dir)
        lock.__enter__()
    except ExecutorError as exc:
        return JobOutcome(ok=False, attempt=0, error=str(exc), error_kind="error", worker=worker)
    try:
        attempt = len(read_attempts(run_dir)) + 1
        (run_dir / OUTCOME_FILE).unlink(missing_ok=True)
        with (run_dir / ATTEMPTS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"attempt": attempt, "backend": backend, "worker": worker, "started": started}) + "\n"
            )
        outcome = _attempt(spec, run_dir, attempt=attempt, worker=worker, started=started)
        write_json_atomic(run_dir / OUTCOME_FILE, outcome.model_dump(mode="json"))
        return outcome
    finally:
        lock.__exit__(None, None, None)


def _attempt(spec: JobSpec, run_dir: Path, *, attempt: int, worker: str, started: float) -> JobOutcome:
    def failed(kind: ErrorKind, message: str) -> JobOutcome:
        progress = read_progress(run_dir)
        return JobOutcome(
            ok=False,
            attempt=attempt,
            error=" ".join(message.split())[:1000],
            error_kind=kind,
            samples=progress.samples,
            tokens=progress.tokens,
            dollars=progress.dollars,
            tool_calls=progress.tool_calls,
            wall_seconds=round(time.time() - started, 2),
            worker=worker,
        )

    _apply_search_paths(spec)
    try:
        incident = _load(spec)
    except ForensicsError as exc:
        return failed("input", str(exc))
    counter = StepCounter(run_dir, attempt=attempt)
    try:
        result = asyncio.run(investigate_job(spec, incident, run_dir, attempt=attempt, on_step=counter))
    except (ForensicsError, SandboxError) as exc:  # a refusal by the sandbox policy is a reason, not a bug
        return failed("error", str(exc))
    except Exception as exc:
        (run_dir / ERROR_LOG).write_text(traceback.format_exc(), encoding="utf-8")
        return failed("bug", f"{type(exc).__name__}: {exc} (traceback in {run_dir / ERROR_LOG})")
    report = result.report
    report_path = result.files.get("html") or str(run_dir / "report.html")
    return JobOutcome(
        ok=True,
        attempt=attempt,
        verdict=report.verdict,
        motivation=report.motivation,
        confidence=report.confidence,
        report_path=report_path,
        samples=report.cost.samples,
        tokens=report.cost.input_tokens + report.cost.output_tokens,
        dollars=report.cost.dollars,
        tool_calls=report.cost.tool_calls,
        wall_seconds=round(time.time() - started, 2),
        worker=worker,
    )


# ----------------------------------------------------------------------------- local process


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the executor that started it dies,
    so an executor killed with SIGKILL leaves no worker behind to race its successor."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        expected = os.environ.get("FORENSICS_EXECUTOR_PID")
        if expected and os.getppid() != int(expected):
            os._exit(3)  # the executor died before we could ask to follow it


def follow_executor(pid: int) -> None:
    """Kill this worker's whole session (its sandboxes' processes too) the moment the
    executor `pid` dies, for workers that are not its children (forked from the
    executor's fork server, where the parent-death signal would follow the server
    instead). Watches a pidfd from a daemon thread; exits at once when the executor is
    already gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(3)  # the executor died before we could follow it
    except (OSError, AttributeError):  # no pidfd (old kernel, not Linux): nothing to watch with
        return

    def watch() -> None:
        import select
        import signal

        select.select([fd], [], [])
        os.killpg(0, signal.SIGKILL)

    import threading

    threading.Thread(target=watch, name="follow-executor", daemon=True).start()


EXIT_OK, EXIT_BUG, EXIT_FAILED = 0, 1, 2


def run_file(job_file: str | Path) -> int:
    """Run one attempt of the job in `job_file` (a ``job.json``); the exit status
    `main` documents."""
    spec = JobSpec.model_validate_json(Path(job_file).read_text(encoding="utf-8"))
    outcome = run_job(spec, backend="local")
    if outcome.ok:
        return EXIT_OK
    return EXIT_BUG if outcome.error_kind == "bug" else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """``python -m investigator.executor.worker JOB_JSON``: run one attempt, exit 0 when
    the investigation finished, 2 when the job failed (reason in outcome.json), 1 on a bug."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m investigator.executor.worker RUN_DIR/job.json", file=sys.stderr)
        return EXIT_BUG
    _die_with_parent()
    return run_file(args[0])


if __name__ == "__main__":
    raise SystemExit(main())
