"""The Docker backend: one container per sandbox, hardened by default.

Isolation (all on by default, see `_create_kwargs`): no network; memory (no swap),
CPU and pids limits; every capability dropped; no-new-privileges; commands run as an
unprivileged user (uid 1000) whose only writable places are the workspace and a
size-capped tmpfs /tmp; a reaping init (tini) as PID 1. A timeout kills every
process of the sandbox user (``kill -9 -1`` as that user, which cannot reach the
root-owned init), so daemons and fork bombs die with the command. Output beyond the
cap is dropped with a visible marker.

Every container and snapshot image carries the `LABEL` label and an owner label
(host, pid, process start time). `close()` removes the container on every normal
path; an `atexit` hook removes what a dying interpreter still holds; `sweep_stale()`
(run once per process before the first start, and by `forensics sandbox prune`)
removes what a killed process left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import os
import socket
import struct
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

from sandboxes.base import ExecResult, Isolation, Sandbox, SandboxSpec, SnapshotRef, cap_output
from sandboxes.engine import LABEL, docker_client
from sandboxes.errors import SandboxError

AGENT_UID = 1000
AGENT_USER = f"{AGENT_UID}:{AGENT_UID}"
OWNER_LABEL = f"{LABEL}.owner"
ROLE_SANDBOX = "sandbox"
ROLE_SNAPSHOT = "snapshot"
SNAPSHOT_REPOSITORY = "model-forensics/snapshot"

# Docker calls block; they run on a pool big enough for many concurrent sandboxes
# (the default executor has only cpu_count + 4 threads).
_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="docker-sandbox")
_LIVE: dict[str, Any] = {}
_SWEPT = False


def _process_start_ticks(pid: int) -> str:
    """The start time of a process in clock ticks since boot (guards against pid reuse)."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii").read()  # noqa: SIM115, PTH123
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def owner_id(pid: int | None = None) -> str:
    """This process's owner label value: ``host:pid:start_ticks``."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid)}"


def owner_is_alive(owner: str) -> bool:
    """Whether the process named by an owner label still runs (on another host: assume yes)."""
    try:
        host, pid_text, ticks = owner.split(":")
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True
    return os.path.exists(f"/proc/{pid}") and _process_start_ticks(pid) == ticks  # noqa: PTH110


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: fn(*args, **kwargs))


def sweep_stale(client: Any, *, everything: bool = False) -> dict[str, int]:
    """Remove labelled containers and snapshot images whose owner process is gone (all
    of them with `everything`). Returns counts of what was removed."""
    from docker.errors import APIError, NotFound

    removed = {"containers": 0, "images": 0}
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        if everything or not owner_is_alive(owner):
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True)
                removed["containers"] += 1
    for image in client.images.list(filters={"label": f"{LABEL}={ROLE_SNAPSHOT}"}):
        owner = image.labels.get(OWNER_LABEL, "")
        if everything or not owner_is_alive(owner):
            with contextlib.suppress(NotFound, APIError):
                client.images.remove(image.id, force=True)
                removed["images"] += 1
    return removed


@atexit.register
def _remove_live_containers() -> None:
    for container in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            container.remove(force=True)
    _LIVE.clear()


class DockerSandbox(Sandbox):
    """A sandbox backed by one container on a real Docker engine."""

    backend: ClassVar[str] = "docker"
    isolation: ClassVar[Isolation] = "container"

    def __init__(self, spec: SandboxSpec, client: Any, container: Any) -> None:
        super().__init__(spec)
        self._client = client
        self._container = container
        self._closed = False

    @property
    def container_id(self) -> str:
        return str(self._container.id)

    # ------------------------------------------------------------ lifecycle
    @classmethod
    async def start(
        cls, spec: SandboxSpec, *, from_snapshot: SnapshotRef | None = None, client: Any = None, **options: Any
    ) -> DockerSandbox:
        """Create and start a container for `spec` (or from a snapshot), write the
        spec's files and run its setup commands."""
        global _SWEPT
        client = client or await _run(docker_client)
        if not _SWEPT:
            _SWEPT = True
            await _run(sweep_stale, client)
        image = from_snapshot.ref if from_snapshot is not None else spec.image
        kwargs = cls._create_kwargs(spec, image)
        from docker.errors import APIError, ImageNotFound

        try:
            container = await _run(client.containers.run, **kwargs)
        except ImageNotFound:
            raise SandboxError(
                f"image {image!r} not found; build it with `forensics sandbox build` (or pass an existing image)"
            ) from None
        except APIError as exc:
            raise SandboxError(f"could not start a container from {image!r}: {exc.explanation or exc}") from None
        _LIVE[container.id] = container
        sandbox = cls(spec, client, container)
        try:
            if from_snapshot is None:
                await sandbox._prepare()
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    @staticmethod
    def _create_kwargs(spec: SandboxSpec, image: str) -> dict[str, Any]:
        limits = spec.limits
        labels = {
            LABEL: ROLE_SANDBOX,
            OWNER_LABEL: owner_id(),
            f"{LABEL}.created": datetime.now(UTC).isoformat(timespec="seconds"),
            **spec.labels,
        }
        return {
            "image": image,
            # root (with no capabilities) owns PID 1 and the idle main process, so the
            # sandbox user's `kill -9 -1` cannot end the container.
            "command": ["sleep", "2147483647"],
            "user": "0:0",
            "init": True,
            "detach": True,
            "name": f"forensics-{uuid.uuid4().hex[:12]}",
            "labels": labels,
            "working_dir": spec.workdir,
            "environment": {"HOME": spec.workdir, **spec.env},
            "network_mode": "none",
            "mem_limit": f"{limits.memory_mb}m",
            "memswap_limit": f"{limits.memory_mb}m",
            "nano_cpus": int(limits.cpus * 1e9),
            "pids_limit": limits.pids,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "tmpfs": {"/tmp": f"size={limits.tmp_mb}m,mode=1777,nosuid,nodev"},
            "ipc_mode": "private",
        }

    async def _prepare(self) -> None:
        for path, content in self.spec.files.items():
            await self.write_file(path, content)
        for command in self.spec.setup:
            result = await self.exec(command)
            if not result.ok:
                raise SandboxError(
                    f"setup command failed (exit {result.exit_code}, timed out: {result.timed_out}): {command}\n"
                    + result.output[-2000:]
                )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            await _run(self._container.remove, force=True)
        _LIVE.pop(self._container.id, None)

    # ---------------------------------------------------------------- exec
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
        result: ExecResult = await _run(self._exec_blocking, argv, limit, data, dict(env or {}), workdir)
        return result

    def _exec_blocking(
        self, argv: list[str], timeout: float, data: bytes | None, env: dict[str, str], workdir: str | None
    ) -> ExecResult:
        api = self._client.api
        started = time.monotonic()
        exec_id = api.exec_create(
            self._container.id,
            argv,
            stdin=data is not None,
            stdout=True,
            stderr=True,
            user=AGENT_USER,
            workdir=workdir or self.spec.workdir,
            environment=env or None,
        )["Id"]
        stream = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(stream, "_sock", stream)
        cap = self.spec.limits.output_bytes
        kept = {1: bytearray(), 2: bytearray()}
        total = {1: 0, 2: 0}
        timed_out = False
        try:
            if data is not None:
                raw.sendall(data)
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_WR)
            deadline = started + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                raw.settimeout(remaining)
                try:
                    header = _read_exactly(raw, 8)
                except TimeoutError:
                    timed_out = True
                    break
                if header is None:
                    break
                stream_id, size = struct.unpack(">BxxxL", header)
                try:
                    payload = _read_exactly(raw, size)
                except TimeoutError:
                    timed_out = True
                    break
                if payload is None:
                    break
                channel = 2 if stream_id == 2 else 1
                total[channel] += len(payload)
                room = cap - len(kept[channel])
                if room > 0:
                    kept[channel] += payload[:room]
        finally:
            if timed_out:
                self._kill_all_user_processes()
            with contextlib.suppress(OSError):
                raw.close()
            with contextlib.suppress(Exception):
                stream.close()
        exit_code: int | None = None
        if not timed_out:
            exit_code = api.exec_inspect(exec_id).get("ExitCode")
        stdout, cut_out = cap_output(bytes(kept[1]), cap, total[1])
        stderr, cut_err = cap_output(bytes(kept[2]), cap, total[2])
        if timed_out:
            stderr += f"\n[sandbox: command killed after {timeout:g}s timeout]\n"
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            truncated=cut_out or cut_err,
            duration_s=time.monotonic() - started,
        )

    def _kill_all_user_processes(self) -> None:
        """SIGKILL every process of the sandbox user, leaving the root-owned init and
        main process alone. Repeated because a fork bomb may be mid-fork; when even
        that cannot run (the pids limit refuses a new process), restart the container:
        the workspace survives, every process does not."""
        api = self._client.api
        for _ in range(5):
            try:
                kill = api.exec_create(self._container.id, ["kill", "-9", "-1"], user=AGENT_USER)
                api.exec_start(kill["Id"])
                # `kill -0 -1` fails (ESRCH) when no other process of the user is left.
                probe = api.exec_create(self._container.id, ["kill", "-0", "-1"], user=AGENT_USER)
                api.exec_start(probe["Id"])
                if api.exec_inspect(probe["Id"]).get("ExitCode") != 0:
                    return
            except Exception:
                time.sleep(0.2)
        self._container.restart(timeout=0)

    # ---------------------------------------------------------------- files
    def _resolve(self, path: str) -> str:
        p = PurePosixPath(path)
        return str(p if p.is_absolute() else PurePosixPath(self.spec.workdir) / p)

    async def read_file(self, path: str) -> bytes:
        from docker.errors import NotFound

        target = self._resolve(path)
        try:
            chunks, _ = await _run(self._container.get_archive, target)
        except NotFound:
            raise SandboxError(f"no such file in the sandbox: {target}") from None
        raw = b"".join(chunks)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise SandboxError(f"not a regular file in the sandbox: {target}")
            extracted = tar.extractfile(member)
            assert extracted is not None
            return extracted.read()

    async def write_file(self, path: str, data: str | bytes) -> None:
        target = self._resolve(path)
        result = await self.exec(
            ["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "write_file", target], input=data
        )
        if not result.ok:
            raise SandboxError(f"cannot write {target} as the sandbox user: {result.output.strip()}")

    # ------------------------------------------------------------- snapshot
    async def snapshot(self) -> SnapshotRef:
        tag = uuid.uuid4().hex[:16]
        changes = [
            f'LABEL {LABEL}="{ROLE_SNAPSHOT}"',
            f'LABEL {OWNER_LABEL}="{owner_id()}"',
        ]
        image = await _run(self._container.commit, repository=SNAPSHOT_REPOSITORY, tag=tag, changes=changes)
        return SnapshotRef(backend=self.backend, ref=str(image.id), workdir=self.spec.workdir)


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    """n bytes from the socket, or None at a clean end of stream."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None if not buf else bytes(buf)
        buf += chunk
    return bytes(buf)


async def remove_snapshot(ref: SnapshotRef, client: Any = None) -> None:
    """Delete a snapshot image (forks already started from it are unaffected)."""
    from docker.errors import APIError, NotFound

    client = client or await _run(docker_client)
    with contextlib.suppress(NotFound, APIError):
        await _run(client.images.remove, ref.ref, force=True)
