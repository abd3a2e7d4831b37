"""One executor for every batch of investigations (audit, bench, serve).

- `JobSpec` — one investigation to run; `JobRecord` — its row in the batch database;
  `Progress` — what a running job has spent; `JobState` — pending / running / done /
  failed / cancelled.
- `BatchDB` — the SQLite (WAL) batch database: jobs and events.
- `Executor` — submit, cancel, status, progress, a batch dollar budget and a finish
  hook, over a backend: `LocalBackend` (a worker process per job on this machine) or
  `RayBackend` (a Ray task per job, retried on worker death).
- `run_job` — the unit of work a worker runs (in `worker.py`, the one adapter onto
  `investigator.investigate.investigate`).
"""

from investigator.executor.backends import Backend, LocalBackend, RayBackend, make_backend
from investigator.executor.core import Executor, FinishHook
from investigator.executor.db import BATCH_FILE, BatchDB
from investigator.executor.errors import ExecutorError
from investigator.executor.spec import JobOutcome, JobRecord, JobSpec, JobState, Progress, Resources
from investigator.executor.worker import read_progress, run_job

__all__ = [
    "BATCH_FILE",
    "Backend",
    "BatchDB",
    "Executor",
    "ExecutorError",
    "FinishHook",
    "JobOutcome",
    "JobRecord",
    "JobSpec",
    "JobState",
    "LocalBackend",
    "Progress",
    "RayBackend",
    "Resources",
    "make_backend",
    "read_progress",
    "run_job",
]
