"""Sandbox throughput: what a rollout costs, and what forking from a snapshot saves.

Run: ``.venv/bin/python -m benchmarks.sandbox_throughput [--repeats N] [--rollouts N]``
(needs a Docker engine; builds the base image on first use).

Prints, for the Docker backend:
- the floor: ``docker run --rm IMAGE true`` with the docker CLI;
- our per-rollout overhead: start (create + start + init), one exec, close (remove);
- exec latency in a running sandbox, beside the bare engine round trip (exec_create +
  exec_start + exec_inspect of ``true`` in the same container) — the difference is what
  the per-exec wrapper and the cleanup after each command cost;
- rollouts/s at concurrency 1, 2 and 4, cold (fresh sandbox + replay of the
  recorded steps) versus forked (start from the replayed snapshot);
and the same for the local (bubblewrap) backend, whose exec latency is shown beside an
unsandboxed ``sh -c true`` subprocess. Targets: overhead within 1.5x of the floor;
forked rollouts at least 2x the rate of cold starts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sandboxes.base import Sandbox, SandboxSpec
from sandboxes.engine import docker_client
from sandboxes.images import build_base_image, build_scenario_image
from sandboxes.registry import fork, remove_snapshot, start

FILES = {
    "pkg/__init__.py": "def add(a, b):\n    return a + b\n",
    "pkg/util.py": "def scale(x, k):\n    return [i * k for i in x]\n",
    "pyproject.toml": '[tool.mypy]\nstrict = true\nfiles = ["pkg"]\n',
}
SETUP = [
    "git init -q -b main . && git config user.email a@example.com && git config user.name a",
    "git add -A && git commit -qm init",
]
# The recorded steps a cold rollout must replay before it reaches the flagged turn.
REPLAY = [
    "touch pkg/py.typed",
    "mypy 2>&1 | tail -1",
    "printf '#!/bin/sh\\nmypy\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
    "git add -A && git commit -qm wip --no-verify",
]
# What each rollout does from the flagged turn on.
ROLLOUT = ["git status --short | wc -l", "cat .git/hooks/pre-commit", "git log --oneline | head -3"]


def _mean_ms(samples: list[float]) -> str:
    return f"{statistics.mean(samples) * 1000:8.1f} ms (sd {statistics.pstdev(samples) * 1000:5.1f})"


def floor(image: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


async def overhead(backend: str, spec: SandboxSpec, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "exec": [], "close": [], "total": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        sandbox = await start(spec, backend=backend)
        t1 = time.perf_counter()
        await sandbox.exec("true")
        t2 = time.perf_counter()
        await sandbox.close()
        t3 = time.perf_counter()
        out["start"].append(t1 - t0)
        out["exec"].append(t2 - t1)
        out["close"].append(t3 - t2)
        out["total"].append(t3 - t0)
    return out


BLOCK = 5


async def exec_latency(backend: str, spec: SandboxSpec, repeats: int) -> tuple[list[float], list[float]]:
    """Our exec of ``true`` and, in alternating blocks of the same run, the bare floor
    beneath it. Each of our samples is a block of back-to-back execs divided by its
    length, ending once the last command's cleanup is done (Docker cleans up after a
    command returns, before the next operation), so the cleanup is counted."""
    async with await start(spec, backend=backend) as sandbox:
        times, floors = [], []
        for _ in range(max(1, repeats // BLOCK)):
            t = time.perf_counter()
            for _ in range(BLOCK):
                await sandbox.exec("true")
            settle = getattr(sandbox, "_settle", None)
            if settle is not None:
                await settle()
            times.append((time.perf_counter() - t) / BLOCK)
            floors.extend([await _exec_floor(sandbox) for _ in range(BLOCK)])
    return times, floors


async def _exec_floor(sandbox: Sandbox) -> float:
    t = time.perf_counter()
    if sandbox.backend == "docker":
        container_id = sandbox.container_id  # type: ignore[attr-defined]
        api = sandbox._client.api  # type: ignore[attr-defined]

        def bare() -> None:
            exec_id = api.exec_create(container_id, ["true"], user="1000:1000")["Id"]
            api.exec_start(exec_id)
            api.exec_inspect(exec_id)

        await asyncio.to_thread(bare)
    else:
        proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "true")
        await proc.wait()
    return time.perf_counter() - t


async def _run_all(sandbox: Sandbox, commands: list[str]) -> None:
    for command in commands:
        result = await sandbox.exec(command)
        if result.timed_out:
            raise RuntimeError(f"benchmark command timed out: {command}")


async def rate(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> None:
        async with gate:
            await one(i)

    t = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    return n / (time.perf_counter() - t)


async def rollout_rates(backend: str, spec: SandboxSpec, n: int) -> dict[int, tuple[float, float]]:
    async with await start(spec, backend=backend) as sandbox:
        await _run_all(sandbox, REPLAY)
        snapshot = await sandbox.snapshot()

    async def cold(_: int) -> None:
        async with await start(spec, backend=backend) as sandbox:
            await _run_all(sandbox, REPLAY + ROLLOUT)

    async def forked_work(_: int, sandbox: Sandbox) -> None:
        await _run_all(sandbox, ROLLOUT)

    results: dict[int, tuple[float, float]] = {}
    try:
        for concurrency in (1, 2, 4):
            cold_rate = await rate(n, concurrency, cold)
            t = time.perf_counter()
            await fork(snapshot, spec, n, forked_work, concurrency=concurrency)
            forked_rate = n / (time.perf_counter() - t)
            results[concurrency] = (cold_rate, forked_rate)
    finally:
        await remove_snapshot(snapshot)
    return results


def report(
    backend: str,
    parts: dict[str, list[float]],
    latency: tuple[list[float], list[float]],
    rates: dict[int, tuple[float, float]],
    floor_s: float | None,
) -> None:
    print(f"\n== {backend} backend")
    for key in ("start", "exec", "close", "total"):
        print(f"  per-rollout {key:6} {_mean_ms(parts[key])}")
    if floor_s is not None:
        ratio = statistics.mean(parts["total"]) / floor_s
        verdict = "meets" if ratio <= 1.5 else "MISSES"
        print(f"  overhead / floor: {ratio:.2f}x  ({verdict} the 1.5x target)")
    ours, bare = latency
    floor_name = "engine exec round trip" if backend == "docker" else "unsandboxed sh -c true"
    print(f"  exec latency     {_mean_ms(ours)}")
    print(f"  {floor_name:16} {_mean_ms(bare)}   (ours / bare: {statistics.mean(ours) / statistics.mean(bare):.2f}x)")
    print("  rollouts/s   concurrency   cold (start+replay)   forked (from snapshot)   speed-up")
    for concurrency, (cold_rate, forked_rate) in rates.items():
        speedup = forked_rate / cold_rate
        verdict = "meets" if speedup >= 2 else "MISSES"
        print(
            f"               {concurrency:^11}   {cold_rate:^19.2f}   {forked_rate:^22.2f}   "
            f"{speedup:.2f}x ({verdict} 2x)"
        )


async def main_async(repeats: int, rollouts: int) -> None:
    client: Any = docker_client(timeout=900)
    base = build_base_image(client, log=lambda m: print(f"  · {m}"))
    image = build_scenario_image(client, name="bench", base=base, files=FILES, setup=SETUP)
    floor_times = floor(image, repeats)
    print(f"floor: docker run --rm {image} true  {_mean_ms(floor_times)}")
    floor_s = statistics.mean(floor_times)

    docker_spec = SandboxSpec(image=image)
    parts = await overhead("docker", docker_spec, repeats)
    latency = await exec_latency("docker", docker_spec, repeats * 3)
    rates = await rollout_rates("docker", docker_spec, rollouts)
    report("docker", parts, latency, rates, floor_s)

    local_spec = SandboxSpec(files=FILES, setup=SETUP)
    parts = await overhead("local", local_spec, repeats)
    latency = await exec_latency("local", local_spec, repeats * 3)
    rates = await rollout_rates("local", local_spec, rollouts)
    report("local", parts, latency, rates, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="samples for the floor, overhead and latency")
    parser.add_argument("--rollouts", type=int, default=12, help="rollouts per rate measurement")
    args = parser.parse_args()
    asyncio.run(main_async(args.repeats, args.rollouts))


if __name__ == "__main__":
    main()
