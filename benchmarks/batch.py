"""Batch throughput: investigations per hour through the executor, side by side.

The same organism incidents (caught in their scenarios as a monitor would catch them)
are investigated by the protocol planner three ways in one run: the local executor with
1 worker, with 2 workers, and the Ray executor on a two-node cluster started on this
machine (a head and a second node, on a loopback address, in a temp dir of its own,
stopped at the end). Each batch starts from empty run directories. On a small machine
the absolute numbers mean little; the ratios are the point.

    python -m benchmarks.batch [--jobs 4] [--n 5] [--no-ray]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

from investigator.executor import Executor, JobSpec, JobState

ORGANISMS = {
    "oversight-subversion": "oversight-config",
    "shutdown-ambiguity": "shutdown-resistance",
    "oversight-latency-mistake": "oversight-config",
    "shutdown-self-preservation": "shutdown-resistance",
}
HOST = "127.0.0.2"
ROOT = Path(__file__).resolve().parent.parent


async def make_incidents(out: Path, jobs: int) -> list[Path]:
    from evals.world import make_incident, write_incident
    from tools.models.registry import get_model

    paths = []
    names = list(ORGANISMS)
    for i in range(jobs):
        organism = names[i % len(names)]
        incident, _ = await make_incident(
            get_model(f"organism/{organism}"), ORGANISMS[organism], backend="local", seed=i, incident_id=f"bench-{i}"
        )
        paths.append(write_incident(incident, out))
    return paths


def specs(incidents: list[Path], root: Path, n: int) -> list[JobSpec]:
    return [
        JobSpec(id=p.stem, incident_path=str(p), run_dir=str(root / "runs" / p.stem), n=n, backend="local")
        for p in incidents
    ]


async def batch(root: Path, incidents: list[Path], n: int, **executor: object) -> tuple[float, int]:
    """Wall seconds of one batch and how many jobs finished."""
    started = time.monotonic()
    records = await Executor(root, **executor).run(specs(incidents, root, n))  # type: ignore[arg-type]
    wall = time.monotonic() - started
    failed = [r for r in records if r.state is not JobState.done]
    if failed:
        raise SystemExit(f"jobs failed: {[(r.id, r.error) for r in failed]}")
    return wall, len(records)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_ray_cluster(cpus_per_node: int = 1) -> Iterator[str]:
    """A head and one more node on this machine; yields the head's address."""
    temp = Path(tempfile.mkdtemp(prefix="fr-bench-ray-", dir="/tmp"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    common = ["--node-ip-address", HOST, "--temp-dir", str(temp), "--num-cpus", str(cpus_per_node), "--block"]
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: Path) -> None:
        proc = subprocess.Popen(
            [ray, "start", *args, *common, "--disable-usage-stats"],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ray start failed: {log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.3)

    try:
        start(
            ["--head", "--port", str(port), "--include-dashboard", "false", "--ray-client-server-port",
             str(_free_port())],
            temp / "head.log",
        )  # fmt: skip
        start(["--address", f"{HOST}:{port}"], temp / "worker.log")
        yield f"{HOST}:{port}"
    finally:
        with contextlib.suppress(Exception):
            import ray as ray_module

            ray_module.shutdown()
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4, help="incidents per batch")
    parser.add_argument("--n", type=int, default=5, help="samples per arm")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray cluster")
    args = parser.parse_args(argv)
    os.environ.setdefault("FORENSICS_NO_EMBEDDINGS", "1")  # each worker would load MiniLM otherwise
    work = Path(tempfile.mkdtemp(prefix="fr-bench-batch-"))
    try:
        incidents = asyncio.run(make_incidents(work / "incidents", args.jobs))
        results: dict[str, float] = {}
        for label, options in (("local, 1 worker", {"workers": 1}), ("local, 2 workers", {"workers": 2})):
            wall, done = asyncio.run(
                batch(work / label.replace(", ", "-").replace(" ", ""), incidents, args.n, **options)
            )
            results[label] = done / wall * 3600
            print(f"{label:24} {done} investigations in {wall:6.1f} s  = {results[label]:6.1f} per hour", flush=True)
        if not args.no_ray:
            with local_ray_cluster() as address:
                wall, done = asyncio.run(
                    batch(work / "ray", incidents, args.n, backend="ray", address=address, workers=2)
                )
            results["ray, 2 nodes"] = done / wall * 3600
            rate = results["ray, 2 nodes"]
            print(f"{'ray, 2 nodes x 1 CPU':24} {done} investigations in {wall:6.1f} s  = {rate:6.1f} per hour")
        base = results["local, 1 worker"]
        print("ratios to local with 1 worker: " + ", ".join(f"{k}: {v / base:.2f}x" for k, v in results.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
