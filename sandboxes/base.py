"""The sandbox interface every backend implements, and the values that cross it.

A `Sandbox` is one isolated world the subject's commands run in. It is an async
context manager: leaving the block (normally, by exception or by cancellation)
closes it and removes everything it created. `snapshot()` freezes the current state
so that many sandboxes can be forked from it (`start(spec, from_snapshot=ref)`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

TRUNCATION_MARKER = "\n[... output truncated by the sandbox: {omitted} more bytes not shown ...]\n"


class Limits(BaseModel):
    """Resource limits applied to every sandbox (backends enforce what they can and
    say what they cannot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(default=1024, gt=0)
    cpus: float = Field(default=1.0, gt=0)
    pids: int = Field(default=256, gt=0)
    output_bytes: int = Field(default=1_000_000, gt=0, description="bytes kept per stream per exec")
    default_timeout_s: float = Field(default=120.0, gt=0)
    tmp_mb: int = Field(default=256, gt=0, description="size of the scratch /tmp")
    workspace_mb: int = Field(
        default=1024,
        gt=0,
        description="size of the workspace: writing past it fails with ENOSPC inside the sandbox",
    )


class SandboxSpec(BaseModel):
    """What to start: an image (backend-specific reference), files to write into the
    workspace, setup commands, environment variables and limits."""

    model_config = ConfigDict(extra="forbid")

    image: str = "model-forensics/base"
    workdir: str = "/workspace"
    files: dict[str, str] = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)
    labels: dict[str, str] = Field(default_factory=dict)
    shell: list[str] = Field(default_factory=lambda: ["/bin/sh", "-c"], description="how a string command runs")


class ExecResult(BaseModel):
    """The outcome of one command. `exit_code` is None when the command was killed by
    the timeout (or, for a simulated output, is unknown); `truncated` says output
    beyond the cap was dropped (the text then ends with a visible marker)."""

    model_config = ConfigDict(extra="forbid")

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    provenance: Literal["executed", "recorded", "simulated"] = "executed"
    """`executed`: really run. `recorded`/`simulated`: answered by the simulated
    backend from the transcript or by a model — reports must say so."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout then stderr, the way a terminal user would mostly see them."""
        if self.stdout and self.stderr:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr


class SnapshotRef(BaseModel):
    """A frozen sandbox state that forks start from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str
    ref: str
    workdir: str = "/workspace"


Isolation = Literal["container", "namespaces", "none"]

ENV_ALLOWED = ("PATH", "HOME", "LANG", "TERM")
"""The only variables a sandboxed command inherits from us (with our values, never the
caller's), plus what the spec or the exec call sets explicitly: no API key, token or
credential of the investigator's process can reach a sandbox."""


def sandbox_environment(
    spec: SandboxSpec,
    path: str | None,
    extra: Mapping[str, str] | None = None,
    *,
    runtime: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment of a sandboxed command (see `ENV_ALLOWED`); without a
    `path` the image's own PATH stays (Docker)."""
    env = {"HOME": spec.workdir, "LANG": "C.UTF-8", "TERM": "dumb", **(runtime or {})}
    if path is not None:
        env["PATH"] = path
    env.update(spec.env)
    env.update(extra or {})
    return env


class Sandbox(abc.ABC):
    """One isolated world. Backends subclass this and register with `register_backend`."""

    backend: ClassVar[str]
    isolation: ClassVar[Isolation]
    """`container`: a container on a Docker engine (namespaces, cgroup limits, seccomp).
    `namespaces`: bubblewrap namespaces on the host kernel, rlimits but no cgroup or
    seccomp — weaker; callers must report it. `none`: nothing runs (simulated)."""

    @classmethod
    @abc.abstractmethod
    def describe_isolation(cls, limits: Limits | None = None) -> str:
        """One human sentence: what separates a command in this backend from the host,
        and what does not. Reports and console output carry it."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec

    @classmethod
    @abc.abstractmethod
    async def start(cls, spec: SandboxSpec, *, from_snapshot: SnapshotRef | None = None, **options: Any) -> Self:
        """Start a sandbox for `spec`, or from a snapshot of this backend."""

    @abc.abstractmethod
    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run a command (a string runs under ``sh -c``) and return its result. A
        timeout kills the command's whole process tree."""

    @abc.abstractmethod
    async def read_file(self, path: str) -> bytes:
        """A file's bytes (relative paths are under the workdir)."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: str | bytes) -> None:
        """Write a file as the sandbox user, creating parent directories."""

    @abc.abstractmethod
    async def snapshot(self) -> SnapshotRef:
        """Freeze the current state so new sandboxes can start from it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Remove everything this sandbox created. Safe to call twice."""

    def _command(
        self, cmd: str | Sequence[str], input: str | bytes | None, timeout: float | None
    ) -> tuple[list[str], bytes | None, float]:
        """What every backend's `exec` starts from: the argv (a string runs under the
        spec's shell), stdin as bytes, and the effective timeout."""
        argv = [*self.spec.shell, cmd] if isinstance(cmd, str) else list(cmd)
        data = input.encode() if isinstance(input, str) else input
        return argv, data, timeout if timeout is not None else self.spec.limits.default_timeout_s

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def cap_output(data: bytes, limit: int, total: int) -> tuple[str, bool]:
    """Decode kept bytes and append the truncation marker when `total` exceeded them."""
    text = data[:limit].decode("utf-8", errors="replace")
    if total > limit:
        return text + TRUNCATION_MARKER.format(omitted=total - limit), True
    return text, False
