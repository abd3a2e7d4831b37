"""The Docker backend: one container per sandbox, hardened by default.

Isolation (all on by default, see `_create_kwargs`): no network; memory (no swap),
CPU and pids limits; every capability dropped; no-new-privileges; the engine's default
seccomp profile; commands run as an unprivileged user (uid 1000) whose only writable
places are the workspace and a size-capped tmpfs /tmp; a reaping init (tini) as PID 1;
an environment of our own (`sandboxes.base.ENV_ALLOWED` plus the spec's), never the
caller's. Output beyond the cap is dropped with a visible marker.

**Processes die with their command.** Each command runs under a small ``sh`` wrapper
that, once the command exits, sends ``kill -9 -1`` as the sandbox user (which cannot
reach the root-owned init), so a ``nohup``/``setsid``/``(cmd &)`` child no longer
keeps the output stream open. Because a command can kill its own wrapper, the engine's
process list (``docker top``, read on the engine's side) is then checked, and whatever
the sandbox user still runs is killed with more ``kill -9 -1`` execs — or, when a fork
bomb leaves no pid for even that, by restarting the container with its workspace
saved and put back. This cleanup runs after the command has returned (so a timeout
returns at its deadline) and every later operation on the sandbox waits for it, so
nothing a command left behind runs while the next command or a detector does.

**Workspace quota.** Where the engine's storage driver supports ``--storage-opt size``
(overlay2 on xfs with pquota, btrfs, zfs, devicemapper) the container's writable layer
is capped at the workspace size. Otherwise (overlay2 on ext4, as on our machines) the
workspace is an anonymous tmpfs volume of that size — its pages count against the
container's memory cgroup, so the memory limit is raised by the same amount — filled
from the image's (or snapshot's) workspace archive when the sandbox starts. Either
way, writing past the quota fails with ENOSPC inside the sandbox.

Every container, volume and snapshot image carries the `LABEL` label and an owner
label (host, pid, process start time). `close()` removes the container and its volume
on every normal path; an `atexit` hook removes what a dying interpreter still holds;
`sweep_stale()` (run once per process before the first start, and by `forensics
sandbox prune`) removes what a killed process left behind. Snapshots are ``docker
commit`` images plus, with the volume workspace, a tar of the workspace kept beside
them (`WORKSPACE_CACHE_NAME`, named by image id).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import socket
import struct
import tarfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

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
from sandboxes.engine import LABEL, docker_client
from sandboxes.errors import SandboxError
from sandboxes.owners import owner_id, owner_is_alive, private_dir

__all__ = ["LABEL", "DockerSandbox", "owner_id", "owner_is_alive", "remove_snapshot", "sweep_stale"]

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
WORKSPACE_CACHE_NAME = "model-forensics-workspaces"
"""Workspace archives by image id, in this user's `owners.private_dir` of this name: an
image's own /workspace (read once from a created, never started, container) and each
snapshot's, written when it is taken."""
EXEC_WRAPPER = '"$@"; status=$?; kill -9 -1 2>/dev/null; exit $status'
"""Runs the command, then kills whatever else the sandbox user still runs (kill -1
spares the caller, and the sandbox user cannot signal the root-owned init)."""
_REAP_ATTEMPTS = 20
WorkspaceMode = Literal["storage-opt", "volume"]
_WORKSPACE_MODES: dict[str, WorkspaceMode] = {}
_MODE_LOCK = threading.Lock()


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: fn(*args, **kwargs))


def sweep_stale(client: Any, *, everything: bool = False) -> dict[str, int]:
    """Remove labelled containers and snapshot images whose owner process is gone (all
    of them with `everything`). Returns counts of what was removed."""
    from docker.errors import APIError, NotFound

    removed = {"containers": 0, "images": 0, "volumes": 0}
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner = container.labels.get(OWNER_LABEL, "")
        if everything or not owner_is_alive(owner):
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True, v=True)
                removed["containers"] += 1
    for volume in client.volumes.list(filters={"label": LABEL}):
        owner = (volume.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        if everything or not owner_is_alive(owner):
            with contextlib.suppress(NotFound, APIError):
                volume.remove(force=True)
                removed["volumes"] += 1
    for image in client.images.list(filters={"label": f"{LABEL}={ROLE_SNAPSHOT}"}):
        owner = image.labels.get(OWNER_LABEL, "")
        if everything or not owner_is_alive(owner):
            with contextlib.suppress(NotFound, APIError):
                client.images.remove(image.id, force=True)
                _archive_path(image.id).unlink(missing_ok=True)
                removed["images"] += 1
    return removed


@atexit.register
def _remove_live_containers() -> None:
    for container in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
    _LIVE.clear()


def _archive_path(image_id: str) -> Path:
    return private_dir(WORKSPACE_CACHE_NAME) / f"{image_id.replace(':', '-')}.tar"


def workspace_mode(client: Any, image: str) -> WorkspaceMode:
    """How this engine caps a sandbox's workspace (see module doc), found once per engine:
    from `docker info` where the driver settles it, else by creating (not starting) a
    container with a size option and seeing whether the engine accepts it."""
    key = str(getattr(client.api, "base_url", id(client)))
    with _MODE_LOCK:
        if key in _WORKSPACE_MODES:
            return _WORKSPACE_MODES[key]
        info = client.info()
        driver = str(info.get("Driver", ""))
        status = {str(k): str(v) for k, v in (info.get("DriverStatus") or [])}
        mode: WorkspaceMode
        if driver == "vfs" or (driver.startswith("overlay") and status.get("Backing Filesystem") != "xfs"):
            mode = "volume"
        else:
            from docker.errors import APIError

            try:
                trial = client.containers.create(image, ["true"], storage_opt={"size": "64m"}, labels={LABEL: "probe"})
                trial.remove(force=True)
                mode = "storage-opt"
            except APIError:
                mode = "volume"
        _WORKSPACE_MODES[key] = mode
        return mode


class DockerSandbox(Sandbox):
    """A sandbox backed by one container on a real Docker engine."""

    backend: ClassVar[str] = "docker"
    isolation: ClassVar[Isolation] = "container"

    def __init__(self, spec: SandboxSpec, client: Any, container: Any, mode: WorkspaceMode) -> None:
        super().__init__(spec)
        self._client = client
        self._container = container
        self._mode = mode
        self._closed = False
        self._lock = asyncio.Lock()
        self._cleanup: asyncio.Future[None] | None = None

    @classmethod
    def describe_isolation(cls, limits: Limits | None = None) -> str:
        lim = limits or Limits()
        return (
            f"Docker container: no network; uid 1000 with no capabilities, no-new-privileges and the engine's "
            f"seccomp profile; memory {lim.memory_mb} MiB (no swap), {lim.cpus:g} CPU, {lim.pids} processes; "
            f"workspace capped at {lim.workspace_mb} MiB and /tmp at {lim.tmp_mb} MiB; only the workspace and /tmp "
            "writable; our own environment, none of the caller's; every process of the sandbox user killed after "
            "each command. It shares the engine host's kernel"
        )

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
        from docker.errors import APIError, ImageNotFound

        try:
            mode = await _run(workspace_mode, client, image)
            archive = await _run(_workspace_archive, client, image, spec.workdir) if mode == "volume" else None
            kwargs = cls._create_kwargs(spec, image, mode=mode)
            container = await _run(client.containers.run, **kwargs)
        except ImageNotFound:
            raise SandboxError(
                f"image {image!r} not found; build it with `forensics sandbox build` (or pass an existing image)"
            ) from None
        except APIError as exc:
            raise SandboxError(f"could not start a container from {image!r}: {exc.explanation or exc}") from None
        _LIVE[container.id] = container
        sandbox = cls(spec, client, container, mode)
        try:
            if archive is not None:
                await _run(sandbox._put_workspace, archive)
            if from_snapshot is None:
                await sandbox._prepare()
        except BaseException:
            await sandbox.close()
            raise
        return sandbox

    @staticmethod
    def _create_kwargs(spec: SandboxSpec, image: str, *, mode: WorkspaceMode = "volume") -> dict[str, Any]:
        limits = spec.limits
        labels = {
            LABEL: ROLE_SANDBOX,
            OWNER_LABEL: owner_id(),
            f"{LABEL}.created": datetime.now(UTC).isoformat(timespec="seconds"),
            **spec.labels,
        }
        memory = limits.memory_mb
        quota: dict[str, Any] = {}
        if mode == "storage-opt":
            quota["storage_opt"] = {"size": f"{limits.workspace_mb}m"}
        else:
            from docker.types import DriverConfig, Mount

            size = f"size={limits.workspace_mb}m,uid={AGENT_UID},gid={AGENT_UID},mode=0755"
            quota["mounts"] = [
                Mount(
                    target=spec.workdir,
                    source=None,
                    type="volume",
                    no_copy=True,
                    labels={LABEL: ROLE_SANDBOX, OWNER_LABEL: owner_id()},
                    driver_config=DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": size}),
                )
            ]
            memory += limits.workspace_mb  # the workspace's tmpfs pages are charged to the container
        environment = sandbox_environment(spec, None)  # the image's own PATH, unless the spec sets one
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
            "environment": environment,
            "network_mode": "none",
            "mem_limit": f"{memory}m",
            "memswap_limit": f"{memory}m",
            "nano_cpus": int(limits.cpus * 1e9),
            "pids_limit": limits.pids,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "tmpfs": {"/tmp": f"size={limits.tmp_mb}m,mode=1777,nosuid,nodev"},
            "ipc_mode": "private",
            **quota,
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
        if self._cleanup is not None:
            self._cleanup.cancel()  # removing the container ends whatever it was killing
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            await _run(self._container.remove, force=True, v=True)
        _LIVE.pop(self._container.id, None)

    async def _settle(self) -> None:
        """Wait for the cleanup after the previous command (see module doc)."""
        pending, self._cleanup = self._cleanup, None
        if pending is None:
            return
        try:
            await pending
        except Exception as exc:
            raise SandboxError(f"the sandbox could not be cleaned up after its last command: {exc}") from exc

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
        wrapped = ["/bin/sh", "-c", EXEC_WRAPPER, "forensics-exec", *argv]
        async with self._lock:
            await self._settle()
            result: ExecResult = await _run(self._exec_blocking, wrapped, limit, data, dict(env or {}), workdir)
            self._cleanup = asyncio.ensure_future(_run(self._reap))
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

    def _leftovers(self) -> bool:
        """Whether the sandbox user still runs anything: from the engine's process list
        (read on the engine's side, so nothing in the sandbox can forge it), or, where
        the engine cannot list processes, from ``kill -0 -1`` run as that user."""
        from docker.errors import APIError, NotFound

        try:
            rows = self._container.top(ps_args="-eo pid,uid,stat,comm").get("Processes") or []
        except (APIError, NotFound):
            probe = self._client.api.exec_create(self._container.id, ["/bin/sh", "-c", "kill -0 -1"], user=AGENT_USER)
            self._client.api.exec_start(probe["Id"])
            return bool(self._client.api.exec_inspect(probe["Id"]).get("ExitCode") == 0)
        if not rows:
            return False
        init = next((row for row in rows if row[3] in ("docker-init", "tini")), rows[0])
        root_uid = init[1]  # tini and our idle main process run as the container's root
        return any(row[1] != root_uid and "Z" not in row[2] for row in rows)

    def _reap(self) -> None:
        """Kill everything the sandbox user still runs; restart the container (keeping the
        workspace) when even a ``kill`` cannot be started."""
        api = self._client.api
        for _ in range(_REAP_ATTEMPTS):
            if self._closed:
                return
            try:
                if not self._leftovers():
                    return
            except Exception:
                time.sleep(0.05)  # no pid left even for the probe: kill, then look again
            try:
                kill = api.exec_create(self._container.id, ["/bin/sh", "-c", "kill -9 -1"], user=AGENT_USER)
                api.exec_start(kill["Id"])
            except Exception:
                time.sleep(0.05)
        if not self._closed:
            self._restart_keeping_workspace()

    def _restart_keeping_workspace(self) -> None:
        archive = None
        if self._mode == "volume":
            archive = private_dir(WORKSPACE_CACHE_NAME) / f"restart-{uuid.uuid4().hex}.tar"
            self._save_workspace(archive)
        try:
            self._container.restart(timeout=0)
            if archive is not None:
                self._put_workspace(archive)
        finally:
            if archive is not None:
                archive.unlink(missing_ok=True)

    def _save_workspace(self, destination: Path) -> None:
        """Stream the workspace (read by the engine, not by a process in the sandbox) to a tar file."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
        chunks, _ = self._container.get_archive(f"{self.spec.workdir.rstrip('/')}/.")
        with partial.open("wb") as sink:
            for chunk in chunks:
                sink.write(chunk)
        partial.replace(destination)

    def _put_workspace(self, archive: Path) -> None:
        with archive.open("rb") as source:
            if not self._container.put_archive(self.spec.workdir, source):
                raise SandboxError(f"the engine refused to restore the workspace from {archive}")

    # ---------------------------------------------------------------- files
    def _resolve(self, path: str) -> str:
        p = PurePosixPath(path)
        return str(p if p.is_absolute() else PurePosixPath(self.spec.workdir) / p)

    async def read_file(self, path: str) -> bytes:
        from docker.errors import NotFound

        target = self._resolve(path)
        async with self._lock:
            await self._settle()
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
        async with self._lock:
            await self._settle()
            image = await _run(self._container.commit, repository=SNAPSHOT_REPOSITORY, tag=tag, changes=changes)
            if self._mode == "volume":
                try:
                    await _run(self._save_workspace, _archive_path(str(image.id)))
                except BaseException:
                    await remove_snapshot(SnapshotRef(backend=self.backend, ref=str(image.id)), self._client)
                    raise
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
    _archive_path(ref.ref).unlink(missing_ok=True)


def _workspace_archive(client: Any, image: str, workdir: str) -> Path:
    """The workspace a sandbox from `image` starts with, as a tar file: a snapshot's was
    written when it was taken; an image's own is read once from a created (never started)
    container and cached by image id (ids name content, so the cache cannot go stale)."""
    from docker.errors import NotFound

    image_id = str(client.images.get(image).id)
    path = _archive_path(image_id)
    if path.is_file():
        return path
    probe = client.containers.create(image_id, ["true"], labels={LABEL: "probe", OWNER_LABEL: owner_id()})
    try:
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            chunks, _ = probe.get_archive(f"{workdir.rstrip('/')}/.")
        except NotFound:
            chunks = [_empty_tar()]
        with partial.open("wb") as sink:
            for chunk in chunks:
                sink.write(chunk)
        partial.replace(path)
    finally:
        probe.remove(force=True)
    return path


def _empty_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return buf.getvalue()
