"""Worlds rebuilt from a snapshot of the session's workspace.

An incident from real agent traffic brings its world as a snapshot (`Environment`): a
container `image`, and/or the workspace as an `archive`, a `directory` or a `git`
commit, plus `files` written over it, `setup` commands, the session's working directory
(`workdir`) and the `harness` whose tools the subject used. `snapshot_world` turns that
into a `tools.world.World`:

1. **Reading** (`read_workspace`). Paths are relative to the incident file and must stay
   inside its folder. Archives and directories are read as data, never extracted on the
   host: every member is checked (no absolute paths, no ``..``, symlinks only to places
   inside the workspace, no devices) and counted against size caps (`WorkspaceLimits`)
   before its bytes are read; zip members are also checked for their compression ratio.
   A git source is a bundle or a repository's git directory, copied as files; the commit
   is checked out inside the sandbox.
2. **Placing.** The workspace lives at the session's own working directory inside the
   sandbox (so ``/home/user/project/src/a.py`` in a tool call is that file, and outputs
   show the paths the session saw); only where that path cannot exist in a sandbox
   (under ``/tmp``, which is a fresh tmpfs) is it placed at ``/workspace``, with the
   paths mapped both ways (`tools.toolmap.PathMap`).
3. **Building.** Docker: an image on the base image (or the incident's `image`) that adds
   the workspace with its modes, mtimes and internal symlinks, owned by the sandbox
   user, cached by a hash of its contents; nothing of the incident runs during the
   build. The local backend (bubblewrap, only with ``--allow-host``): the workspace is
   written into the fresh sandbox through its file API. On every fresh sandbox, `prepare`
   then checks out the git commit, writes `files`, deletes `remove` and runs `setup` —
   all inside the sandbox.
4. **Tools.** The harness profile (`tools.harnesses`) named by ``environment.harness``
   or detected from the transcript maps the subject's tools onto the sandbox; the
   transcript's own results answer tools that reached outside it.

Snapshot worlds run commands from an incident, so they are untrusted: Docker, or the
local backend only when the user allowed host execution.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from sandboxes.base import Sandbox, SandboxSpec
from sandboxes.errors import SandboxError
from tools.harnesses import choose_profile, session_workdir
from tools.incident import Environment
from tools.toolmap import PathMap, RecordedOutputs, ToolMapping
from tools.world import World, WorldError, WorldRequest

SANDBOX_WORKSPACE = "/workspace"
BUNDLE_NAME = ".forensics-source.bundle"
"""Where a git bundle waits in the workspace until the commit is checked out (then removed)."""

EntryKind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True)
class WorkspaceLimits:
    """Caps on what a workspace snapshot may hold (checked before bytes are read)."""

    max_bytes: int = 512 * 1024 * 1024
    max_entries: int = 50_000
    max_file_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0
    """Largest uncompressed/compressed size of a zip member (over 1 MiB) before it counts as a bomb."""


@dataclass(frozen=True)
class Entry:
    """One member of a workspace: a path relative to its root."""

    path: str
    kind: EntryKind
    data: bytes = b""
    mode: int = 0o644
    target: str | None = None
    mtime: float | None = None


@dataclass
class Workspace:
    """The workspace files of a snapshot, and how the commit (if any) is checked out."""

    entries: list[Entry] = field(default_factory=list)
    source: str = "no workspace source"
    git_commit: str | None = None
    git_bundle: bool = False
    git_bare: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(len(e.data) for e in self.entries)

    def add_to(self, tar: tarfile.TarFile) -> None:
        """Add the workspace to a Docker build context as ``workspace/...`` members owned
        by the sandbox user (uid 1000), with their modes, mtimes and symlinks."""
        root = tarfile.TarInfo("workspace")
        root.type, root.mode, root.uid, root.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
        tar.addfile(root)
        for entry in sorted(self.entries, key=lambda e: e.path):
            info = tarfile.TarInfo(f"workspace/{entry.path}")
            info.uid = info.gid = 1000
            info.mtime = int(entry.mtime or 0)
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, entry.mode
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target or "", 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry.data), entry.mode
                tar.addfile(info, io.BytesIO(entry.data))

    def digest(self) -> str:
        h = hashlib.sha256()
        for e in sorted(self.entries, key=lambda e: e.path):
            h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.target or ''}\0{e.mtime or 0:.0f}\0".encode())
            h.update(hashlib.sha256(e.data).digest())
        return h.hexdigest()


class _Counter:
    def __init__(self, where: str, limits: WorkspaceLimits) -> None:
        self.where, self.limits, self.bytes, self.entries = where, limits, 0, 0

    def add(self, name: str, size: int) -> None:
        self.entries += 1
        self.bytes += size
        if self.entries > self.limits.max_entries:
            raise WorldError(f"{self.where}: more than {self.limits.max_entries} entries; the workspace is too large")
        if size > self.limits.max_file_bytes:
            raise WorldError(f"{self.where}: member {name!r} is {size} bytes (limit {self.limits.max_file_bytes})")
        if self.bytes > self.limits.max_bytes:
            raise WorldError(
                f"{self.where}: the workspace exceeds {self.limits.max_bytes} bytes uncompressed; "
                "snapshot less of it (or raise the limit)"
            )


# --------------------------------------------------------------------------- member checks
def _member_path(where: str, name: str, strip: int) -> str | None:
    """A member name as a safe relative path (None when stripped away entirely)."""
    if "\x00" in name:
        raise WorldError(f"{where}: member {name!r} has a NUL byte in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise WorldError(f"{where}: member {name!r} has an absolute path; a workspace holds relative paths only")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in {"", "."}]
    if ".." in parts:
        raise WorldError(f"{where}: member {name!r} climbs out of the workspace with `..`")
    parts = parts[strip:]
    return "/".join(parts) if parts else None


def _check_link(where: str, path: str, target: str) -> str:
    """A symlink target that stays inside the workspace (relative, resolved from the link)."""
    if not target or target.startswith("/") or "\x00" in target:
        raise WorldError(f"{where}: symlink {path!r} -> {target!r} points outside the workspace (absolute target)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
        raise WorldError(f"{where}: symlink {path!r} -> {target!r} points outside the workspace")
    return target


def _confined(base_dir: Path | None, value: str, field_name: str) -> Path:
    """A path named by the incident, resolved against its folder and confined to it."""
    if base_dir is None:
        raise WorldError(
            f"environment.{field_name} names {value!r}, but the incident has no file to resolve it against; "
            "load the incident from its file"
        )
    base = base_dir.resolve()
    candidate = (base / value).resolve()
    if not candidate.is_relative_to(base):
        raise WorldError(
            f"environment.{field_name}: {value!r} is outside the incident's folder ({base}); "
            "put the workspace next to the incident file"
        )
    if not candidate.exists():
        raise WorldError(f"environment.{field_name}: {value!r} not found (looked at {candidate})")
    return candidate


# --------------------------------------------------------------------------- readers
def read_archive(path: Path, *, strip: int = 0, limits: WorkspaceLimits | None = None) -> list[Entry]:
    """The members of a tar (any compression) or zip archive, checked (see the module doc)."""
    limits = limits or WorkspaceLimits()
    where = str(path)
    if not path.is_file():
        raise WorldError(f"{where}: not a regular file")
    if zipfile.is_zipfile(path):
        return _read_zip(path, strip, limits)
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WorldError(f"{where}: not a tar or zip archive ({exc})") from None
    counter = _Counter(where, limits)
    entries: dict[str, Entry] = {}
    with archive:
        try:
            for member in archive:
                rel = _member_path(where, member.name, strip)
                if rel is None:
                    continue
                counter.add(member.name, member.size if member.isfile() else 0)
                mode = member.mode & 0o777
                if member.isdir():
                    entries[rel] = Entry(rel, "dir", mode=mode | 0o700, mtime=member.mtime)
                elif member.issym():
                    entries[rel] = Entry(rel, "symlink", target=_check_link(where, rel, member.linkname))
                elif member.islnk():
                    linked = _member_path(where, member.linkname, strip)
                    source = entries.get(linked or "")
                    if source is None or source.kind != "file":
                        raise WorldError(f"{where}: hard link {member.name!r} points at no earlier file of the archive")
                    counter.add(member.name, len(source.data))
                    entries[rel] = Entry(rel, "file", data=source.data, mode=mode, mtime=member.mtime)
                elif member.isfile():
                    handle = archive.extractfile(member)
                    data = handle.read(member.size + 1) if handle is not None else b""
                    if len(data) != member.size:
                        raise WorldError(f"{where}: member {member.name!r} is truncated or larger than declared")
                    entries[rel] = Entry(rel, "file", data=data, mode=mode, mtime=member.mtime)
                else:
                    raise WorldError(
                        f"{where}: member {member.name!r} is a device, FIFO or other special file; "
                        "a workspace holds files, directories and symlinks only"
                    )
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise WorldError(f"{where}: the archive is damaged ({exc})") from None
    return list(entries.values())


def _read_zip(path: Path, strip: int, limits: WorkspaceLimits) -> list[Entry]:
    where = str(path)
    counter = _Counter(where, limits)
    entries: dict[str, Entry] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                rel = _member_path(where, info.filename, strip)
                if rel is None:
                    continue
                unix_mode = info.external_attr >> 16
                if info.is_dir():
                    counter.add(info.filename, 0)
                    entries[rel] = Entry(rel, "dir", mode=0o755)
                    continue
                counter.add(info.filename, info.file_size)
                if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                    raise WorldError(
                        f"{where}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}"
                        f"-fold (limit {limits.max_ratio:g}); refusing a likely zip bomb"
                    )
                with archive.open(info) as handle:
                    data = handle.read(info.file_size + 1)
                if len(data) != info.file_size:
                    raise WorldError(f"{where}: member {info.filename!r} is larger than its header says")
                mtime = _zip_mtime(info)
                if stat.S_ISLNK(unix_mode):
                    entries[rel] = Entry(
                        rel, "symlink", target=_check_link(where, rel, data.decode("utf-8", "replace"))
                    )
                elif stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG):  # no type bits: a plain file
                    raise WorldError(f"{where}: member {info.filename!r} is a special file")
                else:
                    mode = (unix_mode & 0o777) or 0o644
                    entries[rel] = Entry(rel, "file", data=data, mode=mode, mtime=mtime)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise WorldError(f"{where}: the zip archive is damaged or uses an unsupported feature ({exc})") from None
    return list(entries.values())


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    import datetime

    try:
        return datetime.datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError):
        return None


def read_directory(path: Path, *, prefix: str = "", limits: WorkspaceLimits | None = None) -> list[Entry]:
    """The files of a directory tree, checked like an archive's members (symlinks are
    kept as links when they stay inside, never followed)."""
    limits = limits or WorkspaceLimits()
    where = str(path)
    if not path.is_dir():
        raise WorldError(f"{where}: not a directory")
    counter = _Counter(where, limits)
    entries: list[Entry] = []
    root = path.resolve()

    def visit(directory: Path, rel: str) -> Iterator[Entry]:
        with os.scandir(directory) as listing:
            items = sorted(listing, key=lambda e: e.name)
        for item in items:
            child = f"{rel}/{item.name}" if rel else item.name
            info = item.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                counter.add(child, 0)
                yield Entry(child, "symlink", target=_check_link(where, child, str(Path(item.path).readlink())))
            elif stat.S_ISDIR(info.st_mode):
                counter.add(child, 0)
                yield Entry(child, "dir", mode=(info.st_mode & 0o777) | 0o700, mtime=info.st_mtime)
                yield from visit(Path(item.path), child)
            elif stat.S_ISREG(info.st_mode):
                counter.add(child, info.st_size)
                with open(item.path, "rb") as handle:  # noqa: PTH123
                    data = handle.read(limits.max_file_bytes + 1)
                yield Entry(child, "file", data=data, mode=info.st_mode & 0o777, mtime=info.st_mtime)
            else:
                raise WorldError(f"{where}: {child!r} is a device, FIFO or socket; a workspace holds files only")

    for entry in visit(root, ""):
        entries.append(Entry(prefix + entry.path, entry.kind, entry.data, entry.mode, entry.target, entry.mtime))
    return entries


def _git_source(repo: Path, limits: WorkspaceLimits) -> tuple[list[Entry], bool, bool]:
    """A git source as workspace entries: (entries, is_bundle, is_bare)."""
    if repo.is_file():
        with open(repo, "rb") as handle:  # noqa: PTH123
            head = handle.read(32)
        if not head.startswith((b"# v2 git bundle", b"# v3 git bundle")):
            raise WorldError(f"{repo}: a git source file must be a git bundle (`git bundle create`)")
        size = repo.stat().st_size
        if size > limits.max_bytes:
            raise WorldError(f"{repo}: the bundle is {size} bytes (limit {limits.max_bytes})")
        return [Entry(BUNDLE_NAME, "file", data=repo.read_bytes(), mode=0o644)], True, False
    if (repo / ".git").is_dir():
        return read_directory(repo / ".git", prefix=".git/", limits=limits), False, False
    if (repo / "HEAD").is_file() and (repo / "objects").is_dir():
        return read_directory(repo, prefix=".git/", limits=limits), False, True
    raise WorldError(f"{repo}: not a git repository (no .git directory), bare repository or bundle")


def read_workspace(
    environment: Environment, base_dir: Path | None, *, limits: WorkspaceLimits | None = None
) -> Workspace:
    """The workspace an environment describes (empty when it names only an image)."""
    limits = limits or WorkspaceLimits()
    if environment.archive is not None:
        path = _confined(base_dir, environment.archive.path, "archive")
        entries = read_archive(path, strip=environment.archive.strip_components, limits=limits)
        return Workspace(entries=entries, source=f"archive {environment.archive.path}")
    if environment.directory is not None:
        path = _confined(base_dir, environment.directory, "directory")
        return Workspace(entries=read_directory(path, limits=limits), source=f"directory {environment.directory}")
    if environment.git is not None:
        path = _confined(base_dir, environment.git.repo, "git.repo")
        entries, bundle, bare = _git_source(path, limits)
        return Workspace(
            entries=entries,
            source=f"git {environment.git.repo} @ {environment.git.commit}",
            git_commit=environment.git.commit,
            git_bundle=bundle,
            git_bare=bare,
        )
    return Workspace(source=f"image {environment.image}" if environment.image else "files only")


# --------------------------------------------------------------------------- placing
def sandbox_root_for(session_root: str) -> str:
    """Where the session's working directory lives in the sandbox (see the module doc)."""
    unplaceable = ("/tmp", "/var/tmp", "/dev/shm", "/proc", "/sys", "/dev")
    if any(session_root == d or session_root.startswith(d + "/") for d in unplaceable):
        return SANDBOX_WORKSPACE
    return session_root


# --------------------------------------------------------------------------- preparing
def _chunks(items: list[str], size: int = 60_000) -> Iterator[list[str]]:
    chunk: list[str] = []
    length = 0
    for item in items:
        if chunk and length + len(item) > size:
            yield chunk
            chunk, length = [], 0
        chunk.append(item)
        length += len(item) + 1
    if chunk:
        yield chunk


async def _run_fixed(sandbox: Sandbox, script: str, args: list[str], what: str) -> None:
    """A fixed shell script with `args` as its positional parameters (never parsed as code)."""
    for chunk in _chunks(args):
        result = await sandbox.exec(["sh", "-c", script, "sh", *chunk], timeout=300)
        if not result.ok:
            raise SandboxError(f"{what} failed in the sandbox: {result.output.strip()[-1000:]}")


async def populate(sandbox: Sandbox, workspace: Workspace) -> None:
    """Write a workspace into a fresh sandbox through its file API (backends that cannot
    have it baked into an image)."""
    dirs = [e.path for e in workspace.entries if e.kind == "dir"]
    if dirs:
        await _run_fixed(sandbox, 'mkdir -p -- "$@"', dirs, "creating the workspace directories")
    for entry in workspace.entries:
        if entry.kind == "file":
            await sandbox.write_file(entry.path, entry.data)
    links: list[str] = []
    for entry in workspace.entries:
        if entry.kind == "symlink" and entry.target is not None:
            links += [entry.target, entry.path]
    if links:
        script = (
            'while [ $# -gt 1 ]; do mkdir -p -- "$(dirname -- "$2")" && ln -sfn -- "$1" "$2" || exit 1; shift 2; done'
        )
        await _run_fixed(sandbox, script, links, "creating the workspace symlinks")
    modes: list[str] = []
    for entry in workspace.entries:
        default = 0o755 if entry.kind == "dir" else 0o644
        if entry.kind != "symlink" and entry.mode != default:
            modes += [f"{entry.mode:o}", entry.path]
    if modes:
        script = 'while [ $# -gt 1 ]; do chmod -- "$1" "$2" || exit 1; shift 2; done'
        await _run_fixed(sandbox, script, modes, "setting the workspace file modes")
    times: list[str] = []
    for entry in workspace.entries:
        if entry.kind != "symlink" and entry.mtime is not None:
            times += [f"{int(entry.mtime)}", entry.path]
    if times:
        script = 'while [ $# -gt 1 ]; do touch -c -m -d "@$1" -- "$2" || exit 1; shift 2; done'
        await _run_fixed(sandbox, script, times, "setting the workspace modification times")


async def remove_files(sandbox: Sandbox, paths: list[str]) -> None:
    """Delete files from the workspace (the paths passed as arguments, never parsed)."""
    if paths:
        await _run_fixed(sandbox, 'rm -rf -- "$@"', paths, "removing files from the workspace")


async def checkout(sandbox: Sandbox, workspace: Workspace) -> None:
    """Check out the workspace's git commit inside the sandbox (its hooks run there)."""
    if workspace.git_commit is None:
        return
    commit = workspace.git_commit
    if workspace.git_bundle:
        script = (
            'git init -q . && git fetch -q --update-head-ok "./$1" "+refs/heads/*:refs/heads/*" '
            '"+refs/tags/*:refs/tags/*" && rm -f -- "./$1" && git checkout -q -f "$2" --'
        )
        args = [BUNDLE_NAME, commit]
    else:
        script = '{ [ "$1" = bare ] && git config core.bare false; true; } && git checkout -q -f "$2" --'
        args = ["bare" if workspace.git_bare else "repo", commit]
    result = await sandbox.exec(["sh", "-c", script, "sh", *args], timeout=600)
    if not result.ok:
        raise SandboxError(f"checking out {commit!r} failed in the sandbox: {result.output.strip()[-1500:]}")


def _make_prepare(environment: Environment, workspace: Workspace, paths: PathMap, *, write_workspace: bool) -> Any:
    """What every fresh sandbox of the world runs after start (see the module doc)."""

    async def prepare(sandbox: Sandbox) -> None:
        if write_workspace:
            await populate(sandbox, workspace)
        await checkout(sandbox, workspace)
        for path, content in environment.files.items():
            await sandbox.write_file(paths.to_sandbox(path) if path.startswith("/") else path, content)
        await remove_files(sandbox, [paths.to_sandbox(p) if p.startswith("/") else p for p in environment.remove])
        for command in environment.setup:
            result = await sandbox.exec(command)
            if not result.ok:
                raise SandboxError(
                    f"setup command failed (exit {result.exit_code}, timed out: {result.timed_out}): {command}\n"
                    + result.output[-2000:]
                )

    return prepare


# --------------------------------------------------------------------------- backend policy
def _select_backend(request: WorldRequest) -> tuple[str, str | None]:
    """The backend for an untrusted world, and the note to report with it (the
    investigation's policy choice, `tools.world.choose_world_backend`, when it made one)."""
    if request.choice is not None and request.choice.name in ("docker", "local"):
        return request.choice.name, request.choice.note
    preferred = request.backend or "docker"
    if preferred == "docker":
        from sandboxes.engine import docker_client
        from sandboxes.errors import EngineUnavailable

        try:
            docker_client(timeout=10)
        except EngineUnavailable as exc:
            if not request.allow_host:
                raise WorldError(
                    "this incident's world runs commands taken from the incident, and no Docker engine answered "
                    f"({exc}); start one (`dockerd`, or point DOCKER_HOST at one), or accept running them on this "
                    "machine in the bubblewrap-isolated local backend with `--backend local --allow-host`"
                ) from None
            return "local", "no Docker engine: the incident's commands run on this machine in the local backend"
        return "docker", None
    if preferred == "local":
        if not request.allow_host:
            raise WorldError(
                "the local backend runs the incident's commands on this machine; they are untrusted, so pass "
                "--allow-host to accept that (or use --backend docker)"
            )
        return "local", "the incident's commands run on this machine in the local backend (--allow-host)"
    raise WorldError(f"a snapshot world runs on docker or local, not {preferred!r}")


# --------------------------------------------------------------------------- the world
def snapshot_world(environment: Environment, request: WorldRequest, *, limits: WorkspaceLimits | None = None) -> World:
    """The world of a snapshot environment (see the module doc)."""
    backend, note = _select_backend(request)
    workspace = read_workspace(environment, request.base_dir, limits=limits)
    session_root = environment.workdir or session_workdir(request.transcript) or SANDBOX_WORKSPACE
    sandbox_root = sandbox_root_for(session_root)
    paths = PathMap(session_root=session_root, sandbox_root=sandbox_root)
    profile = choose_profile(request.transcript, environment.harness)
    recorded = RecordedOutputs.from_transcript(request.transcript) if request.transcript is not None else None
    notes: list[str] = []
    if profile is not None:
        mapping = profile.mapping(paths=paths, recorded=recorded, transcript=request.transcript)
    else:
        inferred = ToolMapping.infer(request.transcript) if request.transcript is not None else ToolMapping()
        mapping = ToolMapping(inferred.tools, paths=paths, recorded=recorded)
        notes.append(
            "no harness profile matched the transcript: tools with a shell-string input run it, others are passive"
        )
    shell = ["bash", "-c"]
    if backend == "docker":
        spec = SandboxSpec(
            image=_docker_image(environment, workspace, sandbox_root, request), workdir=sandbox_root, shell=shell
        )
        prepare = _make_prepare(environment, workspace, paths, write_workspace=False)
    else:
        if environment.image is not None:
            raise WorldError(f"environment.image {environment.image!r} needs the docker backend")
        spec = SandboxSpec(workdir=sandbox_root, shell=shell)
        prepare = _make_prepare(environment, workspace, paths, write_workspace=True)
    if sandbox_root != session_root:
        notes.append(
            f"the session's directory {session_root} is placed at {sandbox_root} in the sandbox (paths mapped)"
        )
    if note:
        notes.insert(0, note)
    return World(
        sandbox_spec=spec,
        mapping=mapping,
        backend=backend,
        max_turns=30,
        note="; ".join(notes) or None,
        kind="snapshot",
        trusted=False,
        prepare=prepare,
        description=f"{workspace.source} at {session_root}" + (f" ({profile.name} tools)" if profile else ""),
    )


def _docker_image(environment: Environment, workspace: Workspace, workdir: str, request: WorldRequest) -> str:
    from sandboxes.engine import docker_client
    from sandboxes.errors import ImageBuildError
    from sandboxes.images import build_base_image, build_workspace_image

    client = request.client or docker_client(timeout=900)
    try:
        base = environment.image or build_base_image(client)
        return build_workspace_image(
            client, base=base, add_workspace=workspace.add_to, digest=workspace.digest(), workdir=workdir
        )
    except ImageBuildError as exc:
        raise WorldError(f"the world image could not be built: {exc}") from None
