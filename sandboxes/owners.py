"""Which process owns a sandbox resource, so that what a killed process left behind can
be told apart from what a live one still uses (Docker labels, local snapshot names)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from pathlib import Path


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


def private_dir(name: str) -> Path:
    """``$TMPDIR/<name>-<uid>``: a directory of this user's only (created mode 0700). One
    that exists but is not ours, is a symlink or is open to others is refused, so another
    local user cannot plant or read snapshots and workspace archives."""
    path = Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        from sandboxes.errors import SandboxError

        raise SandboxError(f"{path} is not a private directory of this user (owner, type or mode); remove it")
    return path
