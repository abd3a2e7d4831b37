"""Backends by name, starting sandboxes, forking many from one snapshot, and the policy
that says which backend may run what.

`start(spec, backend="docker")` is the one way the rest of the system gets a sandbox.
`choose_backend(preferred, trusted=..., allow_host=...)` is the policy: **nothing from an
untrusted incident runs on this machine by default.** Trusted worlds are the project's
own shipped scenarios played by its own organisms (we wrote every command they run);
everything else — incident files, detectors, transcripts, other subjects, scenarios
from other directories — is untrusted. Untrusted worlds get Docker, or a clear
`HostExecutionRefused` saying how to start an engine; the local (bubblewrap) backend
runs them only with an explicit ``allow_host``, and the choice then carries a warning
that says what that means. Callers print the choice, log it and record it in reports.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sandboxes.base import Limits, Sandbox, SandboxSpec, SnapshotRef
from sandboxes.errors import EngineUnavailable, HostExecutionRefused, LocalSandboxUnavailable, SandboxError

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


log = logging.getLogger("sandboxes.policy")

ALLOW_HOST_MEANING = (
    "--allow-host: this untrusted incident's commands (its detector, its transcript's replayed tool calls and "
    "the subject's rollouts) run on this machine, inside a bubblewrap sandbox instead of a Docker container. "
    "They get no network, no /root, /home or project checkout and none of this process's environment, but "
    "there is no memory cgroup or seccomp filter, and a kernel or bubblewrap exploit would reach this machine"
)
START_AN_ENGINE = (
    "start a Docker engine (`dockerd &`, or `bash .ci/run`, which installs and starts one; or point DOCKER_HOST "
    "at one), or accept the local bubblewrap sandbox explicitly with `--backend local --allow-host`"
)


@dataclass(frozen=True)
class BackendChoice:
    """The backend to use, what isolates its commands (one sentence for reports and
    output), whether the world was trusted, whether the user allowed it on this machine
    (`allow_host`), and a note to show prominently when there is something to warn about
    (a fallback, or what ``--allow-host`` means)."""

    name: str
    note: str | None
    isolation: str = ""
    trusted: bool = False
    allow_host: bool = False

    @property
    def on_host(self) -> bool:
        """Whether commands run on this machine's kernel (the local backend)."""
        return self.name == "local"

    def summary(self) -> str:
        """One line: the backend and its isolation."""
        return f"{self.name} sandbox: {self.isolation}" if self.isolation else f"{self.name} sandbox"


def describe_backend(name: str, limits: Limits | None = None) -> str:
    """The isolation sentence of a backend (see `Sandbox.describe_isolation`)."""
    return backend_class(name).describe_isolation(limits)


LOCAL_NOTE = "the local bubblewrap backend runs these commands on this machine, with weaker isolation than Docker"


def _local(trusted: bool, allow_host: bool, note: str | None) -> BackendChoice:
    from sandboxes.local import require

    require()  # refuses, with the reason, where bubblewrap cannot isolate
    note = note or LOCAL_NOTE
    if not trusted:
        log.warning(ALLOW_HOST_MEANING)
        note = f"{note}. {ALLOW_HOST_MEANING}"
    return BackendChoice("local", note, describe_backend("local"), trusted=trusted, allow_host=allow_host)


def choose_backend(preferred: str | None = None, *, trusted: bool, allow_host: bool = False) -> BackendChoice:
    """The backend for a world (see module doc). `preferred`: None (or ``auto``) means
    Docker, falling back to local only for trusted worlds or with `allow_host`;
    ``docker`` means Docker or `EngineUnavailable`; ``local`` means the bubblewrap
    backend, which untrusted worlds only get with `allow_host`; ``simulated`` runs nothing.

    Raises `HostExecutionRefused` (untrusted, no engine or local without `allow_host`),
    `EngineUnavailable` or `LocalSandboxUnavailable`, each saying what to do."""
    preferred = None if preferred == "auto" else preferred
    if preferred not in (None, *_BACKENDS):
        raise SandboxError(f"unknown sandbox backend {preferred!r}; choose one of {', '.join(backend_names())}")
    if preferred == "local":
        if not trusted and not allow_host:
            raise HostExecutionRefused(
                "--backend local would run this untrusted incident's commands on this machine (in a bubblewrap "
                "sandbox, which isolates less than Docker); add --allow-host to accept that, or use Docker"
            )
        return _local(trusted, allow_host, None)
    if preferred not in (None, "docker"):
        return BackendChoice(preferred, None, describe_backend(preferred), trusted=trusted, allow_host=allow_host)
    from sandboxes.engine import docker_client

    try:
        docker_client(timeout=10)
    except EngineUnavailable as exc:
        if preferred == "docker":
            raise
        if not trusted and not allow_host:
            raise HostExecutionRefused(
                f"no Docker engine answered, and this incident is untrusted, so its commands will not run on this "
                f"machine; {START_AN_ENGINE}. ({exc})"
            ) from None
        reason = (
            "this world is a shipped scenario played by a shipped organism" if trusted else "--allow-host was given"
        )
        try:
            return _local(
                trusted,
                allow_host,
                f"no Docker engine answered, so the local bubblewrap backend is used ({reason}); it has weaker "
                "isolation than Docker",
            )
        except LocalSandboxUnavailable as local_exc:
            raise LocalSandboxUnavailable(f"{exc}; and {local_exc}") from None
    return BackendChoice("docker", None, describe_backend("docker"), trusted=trusted, allow_host=allow_host)


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
