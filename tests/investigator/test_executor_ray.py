"""The executor on a real two-node Ray cluster on this machine (``ray start --head`` and a
second ``ray start --address``, both on a loopback address, in a temp dir of the test's
own), started once per session and always stopped. CI sets FORENSICS_REQUIRE_RAY=1, so
a missing Ray fails there instead of skipping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from investigator.executor import Executor, JobSpec, JobState
from investigator.executor.accounting import accounting, kept_messages, paid_messages
from investigator.executor.worker import read_attempts
from tests.conftest import ROOT
from tests.investigator.test_executor import _rollout_samples

REQUIRE_RAY = os.environ.get("FORENSICS_REQUIRE_RAY") == "1"
HOST = "127.0.0.2"  # loopback; Ray swaps 127.0.0.1 for the machine's outward address


@dataclass
class Cluster:
    address: str
    head: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    temp_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    ray = str(Path(sys.executable).with_name("ray"))
    handle = log.open("wb")
    return subprocess.Popen(
        [ray, "start", *args, "--block", "--disable-usage-stats"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: the node and its workers, killable together
    )


def _wait_started(proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"ray start did not come up in {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    try:
        import ray
    except ImportError as exc:
        if REQUIRE_RAY:
            pytest.fail(f"FORENSICS_REQUIRE_RAY=1 but Ray is not installed ({exc}); pip install '.[ray]'")
        pytest.skip(f"Ray tests skipped: {exc}")
    temp_dir = Path(tempfile.mkdtemp(prefix="fr-ray-", dir="/tmp"))  # short: Ray's socket paths
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "FORENSICS_NO_EMBEDDINGS": "1",
    }
    port = _free_port()
    common = ["--node-ip-address", HOST, "--temp-dir", str(temp_dir)]
    head = _ray_start(
        ["--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--ray-client-server-port", str(_free_port()), *common],
        temp_dir / "head.log",
        env,
    )  # fmt: skip
    worker: subprocess.Popen[bytes] | None = None
    try:
        _wait_started(head, temp_dir / "head.log")
        worker = _ray_start(["--address", f"{HOST}:{port}", "--num-cpus", "1", *common], temp_dir / "worker.log", env)
        _wait_started(worker, temp_dir / "worker.log")
        cluster = Cluster(address=f"{HOST}:{port}", head=head, worker=worker, temp_dir=temp_dir)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if worker is not None:
            _stop(worker)
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _node_of(run_dir: str) -> str | None:
    attempts = read_attempts(Path(run_dir))
    if not attempts:
        return None
    worker = str(attempts[-1].get("worker", ""))
    return worker.partition("@node:")[2] or None


async def test_a_ray_batch_survives_a_killed_worker_node_paying_for_nothing_twice(
    ray_cluster: Cluster, organism_incidents: dict[str, Path], tmp_path: Path, keyword_organisms: None
) -> None:
    import ray

    executor = Executor(tmp_path, backend="ray", address=ray_cluster.address, poll_interval=0.3)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2, nodes
    worker_node = next(n["NodeID"] for n in nodes if not n["Resources"].get("node:__internal_head__"))[:12]
    specs = [
        JobSpec(
            id=name,
            incident_path=str(organism_incidents[name]),
            run_dir=str(tmp_path / "runs" / name),
            n=5,
            backend="local",
        )
        for name in ("oversight-subversion", "shutdown-ambiguity")
    ]
    await executor.start()
    for spec in specs:
        executor.submit(spec)
    victim: JobSpec | None = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        for spec in specs:
            ledger = Path(spec.run_dir) / "case.sqlite"
            if _node_of(spec.run_dir) == worker_node and ledger.exists() and _rollout_samples(ledger) >= 2:
                victim = spec
        await asyncio.sleep(0.1)
    assert victim is not None, "no job ran on the worker node"
    os.killpg(ray_cluster.worker.pid, signal.SIGKILL)  # the whole node: raylet and its workers
    ray_cluster.worker.wait(timeout=30)
    kept_before, _ = kept_messages(victim.run_dir)
    await executor.wait()
    await executor.stop()

    records = {r.id: r for r in executor.jobs()}
    assert all(r.state is JobState.done for r in records.values()), {r.id: r.error for r in records.values()}
    record = records[victim.id]
    assert record.attempts == 2
    attempts = read_attempts(Path(victim.run_dir))
    assert worker_node in str(attempts[0]["worker"]) and worker_node not in str(attempts[1]["worker"])
    kept_after, _ = kept_messages(victim.run_dir)
    assert not (kept_before - kept_after), "a sample kept before the crash was lost or changed"
    paid_after = paid_messages(victim.run_dir, attempts={2})
    assert paid_after and not (paid_after - (kept_after - kept_before)), "a kept sample was paid for again"
    books = accounting(victim.run_dir)
    assert books.unaccounted == 0 and books.kept == books.paid - books.not_kept
    print(f"ray crash test: {books.model_dump()}")
