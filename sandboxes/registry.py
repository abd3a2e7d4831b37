"""Backends by name, starting sandboxes, and forking many from one snapshot.

`start(spec, backend="docker")` is the one way the rest of the system gets a sandbox.
`choose_backend()` picks Docker when an engine answers and otherwise falls back to
`local`, returning a note that says so — callers put that note in their output and
reports, because the local backend isolates far less.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sandboxes.base import Sandbox, SandboxSpec, SnapshotRef
from sandboxes.errors import EngineUnavailable, SandboxError

T = TypeVar("T")

_BACKENDS: dict[str, str] = {
    "docker": "sandboxes.docker:DockerSandbox",
    "local": "sandboxes.local:LocalSandbox",
    "simulated": "sandboxes.simulated:SimulatedSandbox",
}


def register_backend(name: str, target: str) -> None:
    """Register a backend as ``"module:Class"`` (imported on first use)."""
    _BACKENDS[name] = target


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def backend_class(name: str) -> type[Sandbox]:
    """The class registered under `name`."""
    try:
        module_name, _, attr = _BACKENDS[name].partition(":")
    except KeyError:
        raise SandboxError(f"unknown sandbox backend {name!r}; choose one of {', '.join(backend_names())}") from None
    cls: type[Sandbox] = getattr(importlib.import_module(module_name), attr)
    return cls


async def start(
    spec: SandboxSpec, *, backend: str = "docker", from_snapshot: SnapshotRef | None = None, **options: Any
) -> Sandbox:
    """Start a sandbox of the named backend (from a snapshot when given)."""
    if from_snapshot is not None and from_snapshot.backend != backend:
        raise SandboxError(f"a {from_snapshot.backend} snapshot cannot start a {backend} sandbox")
    cls = backend_class(backend)
    return await cls.start(spec, from_snapshot=from_snapshot, **options)


@dataclass(frozen=True)
class BackendChoice:
    """The backend to use and, when it is not the one asked for, why."""

    name: str
    note: str | None


def choose_backend(preferred: str = "docker") -> BackendChoice:
    """`preferred` when usable; Docker falls back to `local` with an explicit note."""
    if preferred != "docker":
        note = None if preferred != "local" else "local backend: commands run as host processes (weaker isolation)"
        return BackendChoice(preferred, note)
    from sandboxes.engine import docker_client

    try:
        docker_client(timeout=10)
    except EngineUnavailable as exc:
        return BackendChoice(
            "local",
            f"no Docker engine, so the local backend is used: commands run as host processes with much weaker "
            f"isolation ({exc})",
        )
    return BackendChoice("docker", None)


async def fork(
    snapshot: SnapshotRef,
    spec: SandboxSpec,
    n: int,
    work: Callable[[int, Sandbox], Awaitable[T]],
    *,
    concurrency: int = 4,
    **options: Any,
) -> list[T]:
    """Start `n` sandboxes from `snapshot`, at most `concurrency` alive at once, run
    `work(index, sandbox)` in each, and close each as soon as its work ends. Results
    come back in index order; the first failure cancels the rest and is raised."""
    if n < 0 or concurrency < 1:
        raise ValueError("n must be >= 0 and concurrency >= 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> T:
        async with gate:
            sandbox = await start(spec, backend=snapshot.backend, from_snapshot=snapshot, **options)
            async with sandbox:
                return await work(index, sandbox)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(i)) for i in range(n)]
    return [task.result() for task in tasks]


async def remove_snapshot(ref: SnapshotRef) -> None:
    """Delete a snapshot of any backend."""
    if ref.backend == "docker":
        from sandboxes.docker import remove_snapshot as remove_docker

        await remove_docker(ref)
    elif ref.backend == "local":
        from sandboxes.local import remove_local_snapshot

        remove_local_snapshot(ref)
