"""How the local backend starts its workers: forked from a fork server that has the
investigator imported (the default), or as ``python -m investigator.executor.worker``
processes (``preload=False``, or another interpreter); both run the same attempt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from investigator.executor import Executor, ExecutorError, JobSpec, JobState
from investigator.executor.backends import LocalBackend
from investigator.executor.worker import ATTEMPTS_FILE, WORKER_LOG


async def test_a_worker_started_as_a_subprocess_runs_the_job(
    tmp_path: Path, organism_incidents: dict[str, Path], keyword_organisms: None
) -> None:
    """The forked path runs in every other executor test; this is the other one."""
    job = JobSpec(
        id="one",
        incident_path=str(organism_incidents["shutdown-ambiguity"]),
        run_dir=str(tmp_path / "runs" / "one"),
        planner="cot-only",
        backend="local",
    )
    backend = LocalBackend(preload=False)
    records = await Executor(tmp_path, backend=backend, workers=1, poll_interval=0.2).run([job])
    record = records[0]
    assert record.state is JobState.done, record.error
    assert record.verdict in {"misalignment", "mistake", "inconclusive"}
    attempts = (Path(job.run_dir) / ATTEMPTS_FILE).read_text().splitlines()
    assert len(attempts) == 1
    worker_pid = int(str(record.worker).rsplit(":", 1)[1])
    assert worker_pid != os.getpid()  # ran in a worker process, not in the executor
    assert (Path(job.run_dir) / WORKER_LOG).exists()


def test_forked_workers_run_this_interpreter() -> None:
    with pytest.raises(ExecutorError, match="not both"):
        LocalBackend(python="/usr/bin/python3", preload=True)
    assert not LocalBackend(python="/usr/bin/python3").preload
    assert LocalBackend().preload
