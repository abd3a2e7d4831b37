"""The local backend: a bubblewrap sandbox on the host kernel.

Each sandbox is a bubblewrap "holder" (see `sandboxes.bwrap`): new user, pid, network,
IPC and UTS namespaces, the host's system directories read-only, a size-capped tmpfs
workspace at the spec's workdir (absolute paths such as ``/workspace/x`` work as in
Docker), a size-capped /tmp and /dev/shm, and nothing of /root, /home or the project.
Each command runs in a nested pid namespace inside it, as uid 1000, with a cleared
environment (`sandboxes.base.ENV_ALLOWED`) and rlimits on processes (the spec's pids),
file size (the workspace size), CPU time (the timeout) and address space (memory).
Whatever a command leaves running dies with it; a timeout kills the whole namespace.

What it does not have, compared with Docker: a memory cgroup (memory is an address-space
rlimit per process), a seccomp filter, and a kernel of its own to hide behind — a kernel
or bubblewrap exploit reaches the host. `describe_isolation` says so, and the backend
policy (`sandboxes.registry.choose_backend`) only picks it for trusted worlds unless the
user allows it explicitly.

Files are read, written and snapshotted through commands inside the sandbox (``cat``,
``tar``), so a symlink planted by a command resolves inside the sandbox, never on the
host. Snapshots are tar files named after their owner process; forks unpack them into a
fresh holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from sandboxes import bwrap
from sandboxes.base import (
    ExecResult,
    Isolation,
    Limits,
    Sandbox,
    SandboxSpec,
    SnapshotRef,
    cap_output,
    sandbox_environment,
)
from sandboxes.errors import LocalSandboxUnavailable, SandboxError
from sandboxes.owners import owner_id, owner_is_alive, private_dir

SNAPSHOT_DIR_NAME = "model-forensics-snapshots"
"""Local snapshots are tar files in this user's `owners.private_dir` of this name."""
_INTERNAL_TIMEOUT_S = 600.0
_KILL_GRACE_S = 2.0
_NOT_WORKDIRS = ("/", "/tmp", "/dev/shm")
_SYSTEM_TREES = ("/usr", "/etc", "/proc", "/dev", "/opt/forensics", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_swept = False


class LocalSandbox(Sandbox):
    """A sandbox in a bubblewrap holder on this machine."""

    backend: ClassVar[str] = "local"
    isolation: ClassVar[Isolation] = "namespaces"

    def __init__(self, spec: SandboxSpec, holder: asyncio.subprocess.Process, holder_pid: int) -> None:
        super().__init__(spec)
        self._holder = holder
        self.holder_pid = holder_pid
        """The host pid of the holder's pid 1 (tests look at its namespaces)."""
        self._disable_userns = bwrap.supports_disable_userns()
        self._join_cgroup = _own_namespace("cgroup") != _own_namespace("cgroup", holder_pid)
        self._closed = False

    @classmethod
    def describe_isolation(cls, limits: Limits | None = None) -> str:
        lim = limits or Limits()
        python = bwrap.runtime().python if probe().ok else None
        return (
            f"bubblewrap {bwrap.help_version()} on the host kernel: new user, pid, network, IPC and UTS namespaces; "
            f"uid {bwrap.SANDBOX_UID} inside (host uid {bwrap.sandbox_host_uid()}); system "
            f"directories read-only; only the workspace ({lim.workspace_mb} MiB), /tmp and /dev/shm "
            f"({lim.tmp_mb} MiB each) writable, all tmpfs; no /root, /home, /run or project checkout; no network; "
            f"cleared environment; rlimits on processes ({lim.pids}), file size, CPU time and address space "
            f"({lim.memory_mb} MiB); every process killed after each command"
            + (f"; Python: {python}" if python else "")
            + ". Weaker isolation than Docker: no memory cgroup, no seccomp filter, and the host's kernel is shared"
        )

    # ------------------------------------------------------------ lifecycle
    @classmethod
    async def start(
        cls, spec: SandboxSpec, *, from_snapshot: SnapshotRef | None = None, **options: Any
    ) -> LocalSandbox:
        """Start a holder, then unpack the snapshot or write the spec's files and run its setup."""
        await asyncio.to_thread(require)
        source: Path | None = None
        if from_snapshot is not None:
            source = Path(from_snapshot.ref)
            if not source.is_file():
                raise SandboxError(f"local snapshot {source} does not exist")
        sandbox = await cls._launch(spec)
        try:
            if source is not None:
                await sandbox._restore(source)
            else:
                for path, content in spec.files.items():
                    await sandbox.write_file(path, content)
                for command in spec.setup:
                    result = await sandbox.exec(command)
                    if not result.ok:
                        raise SandboxError(
                            f"setup command failed (exit {result.exit_code}): {command}\n{result.output[-2000:]}"
                        )
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    @classmethod
    async def _launch(cls, spec: SandboxSpec) -> LocalSandbox:
        """Start the holder and wait until it is ready for commands."""
        workdir = _checked_workdir(spec.workdir)
        read, write = os.pipe()
        argv = bwrap.holder_argv(
            workdir=workdir,
            workspace_bytes=spec.limits.workspace_mb << 20,
            tmp_bytes=spec.limits.tmp_mb << 20,
            info_fd=write,
        )
        try:
            holder = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write,),
                env=bwrap.HOST_ENV,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(read)
            raise SandboxError(f"bubblewrap could not be started: {exc}") from None
        finally:
            os.close(write)
        try:
            pid = await asyncio.to_thread(bwrap.read_holder_pid, read)
        finally:
            os.close(read)
        ready = b""
        if pid is not None and holder.stdout is not None:
            with contextlib.suppress(TimeoutError):
                ready = await asyncio.wait_for(holder.stdout.readline(), timeout=30)
        if pid is None or ready.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                holder.kill()
            err = await holder.stderr.read() if holder.stderr is not None else b""
            await holder.wait()
            raise SandboxError(f"bubblewrap could not start the sandbox: {err.decode(errors='replace').strip()}")
        return cls(spec, holder, pid)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        holder = self._holder
        if holder.stdin is not None:
            holder.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            holder.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(holder.wait(), timeout=10)

    # ---------------------------------------------------------------- exec
    def _inside(self, path: str) -> str:
        p = PurePosixPath(path)
        return str(p if p.is_absolute() else PurePosixPath(self.spec.workdir) / p)

    def _limits_prefix(self, timeout: float) -> list[str]:
        limits = self.spec.limits
        return bwrap.limits_argv(
            pids=limits.pids,
            # a file can never outgrow the tmpfs it is on; the margin lets that fail with ENOSPC first
            file_bytes=(max(limits.workspace_mb, limits.tmp_mb) + 1) << 20,
            cpu_s=max(1, math.ceil(timeout)),
            memory_bytes=limits.memory_mb << 20,
        )

    async def _spawn(
        self,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        cap: int | None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        """Run `argv` in a fresh pid namespace in the holder; `cap` bytes kept per stream
        (None: all), stdout to a file when given."""
        if self._closed:
            raise SandboxError("exec on a closed sandbox")
        if self._holder.returncode is not None:
            raise SandboxError(f"the sandbox's bubblewrap holder has exited (status {self._holder.returncode})")
        environment = sandbox_environment(self.spec, bwrap.runtime().path, env, runtime=bwrap.runtime().env)
        full = self._limits_prefix(timeout) + bwrap.exec_argv(
            self.holder_pid,
            argv,
            workdir=self.spec.workdir,
            cwd=cwd or self.spec.workdir,
            env=environment,
            disable_userns=self._disable_userns,
            join_cgroup=self._join_cgroup,
        )
        data = stdin if isinstance(stdin, bytes) else None
        source: int | IO[bytes] = asyncio.subprocess.DEVNULL
        if data is not None:
            source = asyncio.subprocess.PIPE
        elif stdin is not None and not isinstance(stdin, bytes):
            source = stdin
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdin=source,
            stdout=stdout or asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=bwrap.HOST_ENV,
            start_new_session=True,
        )
        kept = {"out": bytearray(), "err": bytearray()}
        total = {"out": 0, "err": 0}

        async def pump(stream: asyncio.StreamReader | None, key: str) -> None:
            if stream is None:
                return
            while chunk := await stream.read(65536):
                total[key] += len(chunk)
                if cap is None:
                    kept[key] += chunk
                elif len(kept[key]) < cap:
                    kept[key] += chunk[: cap - len(kept[key])]

        async def feed() -> None:
            if proc.stdin is None:
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if data:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
                proc.stdin.close()

        timed_out = False
        work = asyncio.gather(feed(), pump(proc.stdout, "out"), pump(proc.stderr, "err"), proc.wait())
        try:
            await asyncio.wait_for(asyncio.shield(work), timeout=timeout)
        except TimeoutError:
            timed_out = True
        finally:
            if not work.done():
                # the exec layer's session: nsenter and the nested bwrap; bwrap's pid 1 dies
                # with them, and the kernel kills everything left in its pid namespace
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    await asyncio.wait_for(work, timeout=_KILL_GRACE_S)
                except (TimeoutError, asyncio.CancelledError):
                    work.cancel()
        out, cut_out = cap_output(bytes(kept["out"]), cap or total["out"], total["out"])
        err, cut_err = cap_output(bytes(kept["err"]), cap or total["err"], total["err"])
        if timed_out:
            err += f"\n[sandbox: command killed after {timeout:g}s timeout]\n"
        return ExecResult(
            exit_code=None if timed_out else _exit_code(proc.returncode),
            stdout=out,
            stderr=err,
            timed_out=timed_out,
            truncated=cut_out or cut_err,
            duration_s=time.monotonic() - started,
        )

    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        argv, data, limit = self._command(cmd, input, timeout)
        return await self._spawn(
            argv,
            timeout=limit,
            stdin=data,
            cap=self.spec.limits.output_bytes,
            env=env,
            cwd=self._inside(workdir) if workdir else None,
        )

    # ---------------------------------------------------------------- files
    async def read_file(self, path: str) -> bytes:
        target = self._inside(path)
        script = 'test -f "$1" || exit 3; exec cat -- "$1"'
        with tempfile.TemporaryFile() as sink:
            result = await self._spawn(
                ["/bin/sh", "-c", script, "read_file", target], timeout=_INTERNAL_TIMEOUT_S, stdout=sink, cap=4096
            )
            if result.exit_code == 3:
                raise SandboxError(f"no such file in the sandbox: {target}")
            if not result.ok:
                raise SandboxError(f"cannot read {target} in the sandbox: {result.stderr.strip()}")
            sink.seek(0)
            return sink.read()

    async def write_file(self, path: str, data: str | bytes) -> None:
        target = self._inside(path)
        payload = data.encode() if isinstance(data, str) else data
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
        result = await self._spawn(
            ["/bin/sh", "-c", script, "write_file", target], timeout=_INTERNAL_TIMEOUT_S, stdin=payload, cap=4096
        )
        if not result.ok:
            raise SandboxError(f"cannot write {target} as the sandbox user: {result.output.strip()}")

    # ------------------------------------------------------------- snapshot
    async def snapshot(self) -> SnapshotRef:
        root = private_dir(SNAPSHOT_DIR_NAME)
        await asyncio.to_thread(_sweep_stale_snapshots, root)
        destination = root / f"{owner_id()}-{uuid.uuid4().hex}.tar"
        with destination.open("wb") as sink:
            result = await self._spawn(
                ["tar", "-C", self.spec.workdir, "-cf", "-", "."], timeout=_INTERNAL_TIMEOUT_S, stdout=sink, cap=4096
            )
        if not result.ok:
            destination.unlink(missing_ok=True)
            raise SandboxError(f"snapshot of {self.spec.workdir} failed: {result.output.strip()}")
        return SnapshotRef(backend=self.backend, ref=str(destination), workdir=self.spec.workdir)

    async def _restore(self, archive: Path) -> None:
        with archive.open("rb") as source:
            result = await self._spawn(
                ["tar", "-C", self.spec.workdir, "-xpf", "-"], timeout=_INTERNAL_TIMEOUT_S, stdin=source, cap=4096
            )
        if not result.ok:
            raise SandboxError(f"restoring the snapshot {archive} failed: {result.output.strip()}")


def _own_namespace(kind: str, pid: int | None = None) -> str:
    try:
        return str(Path(f"/proc/{pid or 'self'}/ns/{kind}").readlink())
    except OSError:
        return "?"


@dataclass(frozen=True)
class Probe:
    """Whether the local backend can isolate here, and why not."""

    ok: bool
    detail: str


async def _probe_async() -> Probe:
    missing = bwrap.missing_tools()
    if missing:
        return Probe(False, f"{' and '.join(missing)} not found; install Debian's bubblewrap and util-linux packages")
    try:
        sandbox = await LocalSandbox._launch(SandboxSpec(limits=Limits(workspace_mb=1, tmp_mb=1)))
    except SandboxError as exc:
        return Probe(False, str(exc))
    try:
        script = "id -u; cat /proc/net/dev"
        result = await sandbox.exec(["/bin/sh", "-c", script], timeout=30)
        lines = result.stdout.split()
        if not result.ok or not lines or lines[0] != str(bwrap.SANDBOX_UID):
            return Probe(False, f"a command could not run inside bubblewrap: {result.output.strip()[-500:]}")
        if any(name.startswith(("eth", "en", "wl", "docker")) for name in lines):
            return Probe(False, "the sandbox's network namespace shows host interfaces")
        return Probe(True, f"bubblewrap {bwrap.help_version()}")
    finally:
        await sandbox.close()


@functools.cache
def probe() -> Probe:
    """Whether bubblewrap isolates here, checked once per process by starting a sandbox
    and running a command in it (in a thread of its own, so callers may hold a loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _probe_async()).result()


def require() -> Probe:
    """The probe, or `LocalSandboxUnavailable` saying what is missing and what to do instead."""
    result = probe()
    if not result.ok:
        raise LocalSandboxUnavailable(
            f"the local backend cannot isolate commands on this machine: {result.detail}. "
            "It refuses to run them unsandboxed; start a Docker engine (`dockerd`) and use --backend docker"
        )
    return result


def _exit_code(returncode: int | None) -> int | None:
    """A shell-style status: death by signal N is 128 + N, as Docker reports it."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


def _checked_workdir(workdir: str) -> str:
    p = PurePosixPath(workdir)
    if not p.is_absolute() or ".." in p.parts:
        raise SandboxError(f"the sandbox workdir must be an absolute path without '..': {workdir!r}")
    if str(p) in _NOT_WORKDIRS or any(p.is_relative_to(tree) for tree in _SYSTEM_TREES):
        raise SandboxError(f"the sandbox workdir cannot be a system directory: {workdir!r}")
    return str(p)


def _sweep_stale_snapshots(root: Path) -> None:
    """Remove snapshot files whose owner process is gone (once per process)."""
    global _swept
    if _swept:
        return
    _swept = True
    _remove_stale(root)


def _remove_stale(root: Path) -> list[Path]:
    removed = []
    for entry in root.glob("*.tar"):
        owner = entry.name.rsplit("-", 1)[0]
        if not owner_is_alive(owner):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sweep_stale() -> list[Path]:
    """What a killed run left of the local backend, removed: snapshot files whose owner
    process is gone (a workspace lives in its sandbox's own tmpfs and dies with it, by
    ``--die-with-parent``). Returns the files removed. Called at the start of each
    investigation (`investigator.investigate.sweep_run_dir`)."""
    return _remove_stale(private_dir(SNAPSHOT_DIR_NAME))


def remove_local_snapshot(ref: SnapshotRef) -> None:
    """Delete a local snapshot."""
    Path(ref.ref).unlink(missing_ok=True)
