"""The local backend: a temporary directory and subprocesses.

Weaker isolation than Docker, and said so wherever it is used (`isolation =
"process"`): commands run as the calling user with the host's filesystem and network
visible. What it does enforce: each command runs in its own session with the
workspace as its working directory and HOME, a timeout kills the whole process group,
output is capped, and address-space / CPU-time limits are set with setrlimit.
Absolute paths under the spec's workdir (``/workspace/x``) are not remapped, so
commands should use relative paths. It exists so that the system still runs where no
container engine does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sandboxes.base import ExecResult, Isolation, Sandbox, SandboxSpec, SnapshotRef, cap_output
from sandboxes.errors import SandboxError

SNAPSHOT_ROOT = Path(tempfile.gettempdir()) / "model-forensics-snapshots"


class LocalSandbox(Sandbox):
    """A sandbox in a temporary directory on the host."""

    backend: ClassVar[str] = "local"
    isolation: ClassVar[Isolation] = "process"

    def __init__(self, spec: SandboxSpec, root: Path) -> None:
        super().__init__(spec)
        self.root = root
        self._closed = False

    @classmethod
    async def start(
        cls, spec: SandboxSpec, *, from_snapshot: SnapshotRef | None = None, **options: Any
    ) -> LocalSandbox:
        """Make the workspace (a copy of the snapshot when given), write files, run setup."""
        root = Path(tempfile.mkdtemp(prefix="forensics-local-"))
        sandbox = cls(spec, root)
        try:
            if from_snapshot is not None:
                source = Path(from_snapshot.ref)
                if not source.is_dir():
                    raise SandboxError(f"local snapshot {source} does not exist")
                await asyncio.to_thread(shutil.copytree, source, root, symlinks=True, dirs_exist_ok=True)
            else:
                for path, content in spec.files.items():
                    await sandbox.write_file(path, content)
                for command in spec.setup:
                    result = await sandbox.exec(command)
                    if not result.ok:
                        raise SandboxError(
                            f"setup command failed (exit {result.exit_code}): {command}\n{result.output}"
                        )
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    def _path(self, path: str) -> Path:
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.relative_to(self.spec.workdir)
            except ValueError:
                raise SandboxError(f"the local sandbox only reaches files under {self.spec.workdir}: {path}") from None
        resolved = (self.root / p).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise SandboxError(f"path escapes the workspace: {path}")
        return resolved

    def _limits(self) -> None:  # runs in the child between fork and exec
        limits = self.spec.limits
        memory = limits.memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        if self._closed:
            raise SandboxError("exec on a closed sandbox")
        argv, data, limit = self._command(cmd, input, timeout)
        cwd = self._path(workdir) if workdir else self.root
        # The interpreter's own bin directory comes first, so tools installed beside
        # the project (mypy in its virtualenv) are found as they are in the image.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
        environment = {"PATH": path, "HOME": str(self.root), "LANG": "C.UTF-8"}
        environment.update(self.spec.env)
        environment.update(env or {})
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=environment,
            stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=self._limits,
        )
        cap = self.spec.limits.output_bytes
        kept = {"out": bytearray(), "err": bytearray()}
        total = {"out": 0, "err": 0}

        async def pump(stream: asyncio.StreamReader | None, key: str) -> None:
            if stream is None:
                return
            while chunk := await stream.read(65536):
                total[key] += len(chunk)
                room = cap - len(kept[key])
                if room > 0:
                    kept[key] += chunk[:room]

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
            await asyncio.wait_for(asyncio.shield(work), timeout=limit)
        except TimeoutError:
            timed_out = True
        finally:
            if timed_out or not work.done():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    await asyncio.wait_for(work, timeout=5)
                except (TimeoutError, asyncio.CancelledError):
                    # an escaped grandchild still holds the pipes open: stop reading
                    work.cancel()
        stdout, cut_out = cap_output(bytes(kept["out"]), cap, total["out"])
        stderr, cut_err = cap_output(bytes(kept["err"]), cap, total["err"])
        if timed_out:
            stderr += f"\n[sandbox: command killed after {limit:g}s timeout]\n"
        return ExecResult(
            exit_code=None if timed_out else proc.returncode,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            truncated=cut_out or cut_err,
            duration_s=time.monotonic() - started,
        )

    async def read_file(self, path: str) -> bytes:
        target = self._path(path)
        try:
            return await asyncio.to_thread(target.read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            raise SandboxError(f"no such file in the sandbox: {path}") from None

    async def write_file(self, path: str, data: str | bytes) -> None:
        target = self._path(path)
        payload = data.encode() if isinstance(data, str) else data
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, payload)

    async def snapshot(self) -> SnapshotRef:
        SNAPSHOT_ROOT.mkdir(parents=True, exist_ok=True)
        destination = SNAPSHOT_ROOT / uuid.uuid4().hex
        await asyncio.to_thread(shutil.copytree, self.root, destination, symlinks=True)
        return SnapshotRef(backend=self.backend, ref=str(destination), workdir=self.spec.workdir)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(shutil.rmtree, self.root, True)


def remove_local_snapshot(ref: SnapshotRef) -> None:
    """Delete a local snapshot directory."""
    shutil.rmtree(ref.ref, ignore_errors=True)
