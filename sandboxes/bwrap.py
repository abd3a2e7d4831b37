"""Bubblewrap plumbing for the local backend: what a sandbox sees, and whether bwrap runs here.

A local sandbox is two layers of bubblewrap (Debian's `bubblewrap`):

- a **holder**, started once per sandbox: new user, pid, network, IPC, UTS (and, where
  possible, cgroup) namespaces; the host's system directories (``/usr``, ``/etc``, the
  ``/bin``-style links) bound read-only; a fresh ``/proc``; only the null/zero/random
  devices; size-capped tmpfs mounts for the workspace, ``/tmp`` and ``/dev/shm``; the
  Python runtime (below) bound read-only at ``/opt/forensics``. Nothing else of the
  host exists inside — no ``/root``, ``/home``, ``/run``, ``/var`` or project checkout.
  Its only process waits on a pipe from us, and bwrap's ``--die-with-parent`` ends it
  (and with it every mount, the workspace included) if we die.
- an **exec layer** per command: ``nsenter`` joins the holder's user, mount and pid
  namespaces and starts a nested bwrap with its own user and pid namespaces, the
  holder's tree read-only except the workspace, ``/tmp`` and ``/dev/shm``, a cleared
  environment, ``--disable-userns`` and ``--new-session``. When the command exits,
  bwrap's pid 1 exits and the kernel kills everything left in that pid namespace, so
  nothing a command starts outlives it; on a timeout the caller kills the exec layer's
  process group and the same happens.

Commands run as uid 1000 inside; on the host they run as an unprivileged uid — the
caller's own, or `SANDBOX_HOST_UID` when the caller is root (a user namespace created by
root would otherwise map the sandbox onto host root, which owns /etc/shadow and /root).

**The Python runtime.** Shipped scenarios need python3 and mypy, which live in the
project's virtualenv. The sandbox gets a synthetic virtualenv at ``/opt/forensics/venv``
(a ``pyvenv.cfg``, interpreter links and the console scripts with their ``#!`` line
rewritten) whose ``site-packages`` is the host venv's, bound read-only; the base
interpreter is used where it is (under ``/usr``) or, when it lives elsewhere (pyenv under
/root), its prefix alone is bound read-only at ``/opt/forensics/python``. The project's
editable install points at a checkout that is not mounted, so project code is not
importable inside.

`sandboxes.local.probe()` checks once per process that all of this works here; the local
backend refuses to start (`LocalSandboxUnavailable`) rather than run commands with less
isolation.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 1000
"""The uid (and gid) commands see inside the sandbox."""
SANDBOX_HOST_UID = int(os.environ.get("FORENSICS_SANDBOX_HOST_UID", "2000000000"))
"""The host uid sandboxes run as when we are root: owns nothing on the host."""
RUNTIME_ROOT = "/opt/forensics"
VENV_DIR = f"{RUNTIME_ROOT}/venv"
PYTHON_DIR = f"{RUNTIME_ROOT}/python"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_MASKED = ("shadow", "shadow-", "gshadow", "gshadow-")
PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:1000:1000:agent:/workspace:/bin/sh\n"
GROUP = "root:x:0:\nagent:x:1000:\n"
# the command-line tools the exec layer needs on the host
TOOLS = ("bwrap", "nsenter", "unshare", "setpriv", "prlimit")


def privileged() -> bool:
    """Whether we run as root: the holder is then set up by a privileged bwrap (so it can
    bind paths the sandbox uid could not traverse, such as a venv under /root) and every
    command is switched to `SANDBOX_HOST_UID` by nsenter before bwrap starts it."""
    return os.geteuid() == 0


def sandbox_host_uid() -> int:
    """The host uid a sandboxed command runs as."""
    return SANDBOX_HOST_UID if privileged() else os.geteuid()


@dataclass(frozen=True)
class Runtime:
    """What every sandbox gets beyond the system directories: a read-only directory of
    generated files (the synthetic venv, passwd/group, an empty file for masking), the
    host paths bound under /opt/forensics, the PATH and the extra environment."""

    files: Path
    binds: tuple[tuple[str, str], ...]
    """(host path, sandbox path), bound read-only."""
    path: str
    env: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None
    """How Python was provided, for the isolation description."""


def _is_system(path: Path) -> bool:
    return path == Path("/usr") or path.is_relative_to("/usr")


def _shebang_python(head: bytes, venv_bin: Path) -> bool:
    if not head.startswith(b"#!"):
        return False
    interpreter = head[2:].split(b"\n", 1)[0].strip().split(b" ", 1)[0]
    return interpreter.decode(errors="replace").startswith(str(venv_bin) + "/")


@functools.cache
def runtime() -> Runtime:
    """The runtime for this interpreter, built once per process (removed at exit)."""
    files = Path(tempfile.mkdtemp(prefix="model-forensics-runtime-"))
    atexit.register(shutil.rmtree, files, True)
    (files / "etc").mkdir()
    (files / "etc" / "passwd").write_text(PASSWD, encoding="utf-8")
    (files / "etc" / "group").write_text(GROUP, encoding="utf-8")
    (files / "empty").write_bytes(b"")
    binds: list[tuple[str, str]] = [(str(files / "etc" / "passwd"), "/etc/passwd")]
    binds.append((str(files / "etc" / "group"), "/etc/group"))
    env: dict[str, str] = {}
    path = SYSTEM_PATH

    base = Path(sys.base_prefix).resolve()
    real_python = Path(os.path.realpath(sys.executable))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    note: str | None = None
    if _is_system(base) and _is_system(real_python):
        interpreter = str(real_python)
        home = str(real_python.parent)
        note = f"the host's {interpreter}"
    elif real_python.is_relative_to(base):
        interpreter = f"{PYTHON_DIR}/{real_python.relative_to(base)}"
        home = str(Path(interpreter).parent)
        binds.append((str(base), PYTHON_DIR))
        libdir = sysconfig.get_config_var("LIBDIR") or str(base / "lib")
        if Path(libdir).resolve().is_relative_to(base) and any(Path(libdir).glob("libpython*.so*")):
            # the interpreter links libpython by an absolute RUNPATH under its old prefix
            env["LD_LIBRARY_PATH"] = f"{PYTHON_DIR}/{Path(libdir).resolve().relative_to(base)}"
        note = f"Python {version} from {base}, read-only at {PYTHON_DIR}"
    else:
        interpreter = ""
        home = ""
    in_venv = sys.prefix != sys.base_prefix
    if interpreter and in_venv:
        venv = Path(sys.prefix).resolve()
        site_packages = Path(sysconfig.get_path("purelib"))
        root = files / "venv"
        (root / "bin").mkdir(parents=True)
        inner_site = f"lib/python{version}/site-packages"
        (root / inner_site).mkdir(parents=True)
        cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8") if (venv / "pyvenv.cfg").exists() else ""
        system_site = "true" if "include-system-site-packages = true" in cfg else "false"
        (root / "pyvenv.cfg").write_text(
            f"home = {home}\ninclude-system-site-packages = {system_site}\nversion = {sys.version.split()[0]}\n",
            encoding="utf-8",
        )
        for name in ("python", "python3", f"python{version}"):
            (root / "bin" / name).symlink_to(interpreter)
        venv_bin = venv / "bin"
        for script in sorted(venv_bin.iterdir()) if venv_bin.is_dir() else []:
            target = root / "bin" / script.name
            if target.exists() or target.is_symlink() or not script.is_file() or script.stat().st_size > 65536:
                continue
            data = script.read_bytes()
            if not _shebang_python(data[:256], venv_bin):
                continue
            rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
            target.write_bytes(f"#!{VENV_DIR}/bin/python\n".encode() + rest)
            target.chmod(0o755)
        binds.append((str(root), VENV_DIR))
        binds.append((str(site_packages), f"{VENV_DIR}/{inner_site}"))
        path = f"{VENV_DIR}/bin:{path}"
        note = f"{note}; the virtualenv's site-packages read-only at {VENV_DIR}"
    elif interpreter:
        path = f"{home}:{path}"
    mnt = files / "mnt"
    mnt.mkdir()
    for index, _ in enumerate(binds):
        (mnt / str(index)).mkdir()
    for p in [files, *files.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
    return Runtime(files=files, binds=tuple(binds), path=path, env=env, python=note)


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    args += ["--ro-bind", "/etc", "/etc"]
    return args


def holder_argv(*, workdir: str, workspace_bytes: int, tmp_bytes: int, info_fd: int) -> list[str]:
    """The holder for one sandbox (see module doc). bwrap reports the holder's pid on
    `info_fd` and the holder prints ``ready`` once it waits for us.

    As root, bwrap itself runs as `SANDBOX_HOST_UID` (a user namespace made by root would
    map the sandbox onto host root): ``unshare -m`` gives it a private mount namespace in
    which the runtime's host directories are first bound under the runtime dir — the
    sandbox uid could not traverse their real parents (a venv under /root) — and
    ``setpriv`` drops to that uid with no capabilities before bwrap starts."""
    rt = runtime()
    args = ["bwrap", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    args += [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        *_system_args(),
    ]
    empty = str(rt.files / "empty")
    for name in _MASKED:
        if Path("/etc", name).exists():
            args += ["--ro-bind", empty, f"/etc/{name}"]
    mounts: list[str] = []
    for index, (host, inside) in enumerate(rt.binds):
        source = host
        if privileged() and not host.startswith(str(rt.files) + "/"):
            source = str(rt.files / "mnt" / str(index))
            mounts.append(f"mount --bind {shlex.quote(host)} {shlex.quote(source)}")
        args += ["--ro-bind", source, inside]
    args += ["--proc", "/proc", "--dir", "/dev"]
    for device in _DEVICES:
        args += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/dev/shm"]
    args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    args += ["--perms", "0755", "--size", str(workspace_bytes), "--tmpfs", workdir]
    args += ["--chdir", "/", "--info-fd", str(info_fd)]
    args += ["--", "/bin/sh", "-c", "echo ready && read -r _; exit 0"]
    if not privileged():
        return args
    uid = str(SANDBOX_HOST_UID)
    drop = f"setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all --bounding-set=-all --"
    script = " && ".join([*mounts, f'exec {drop} "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "holder", *args]


def exec_argv(
    holder_pid: int,
    argv: Sequence[str],
    *,
    workdir: str,
    cwd: str,
    env: Mapping[str, str],
    disable_userns: bool,
    join_cgroup: bool = False,
) -> list[str]:
    """The command line that runs `argv` in a fresh pid namespace inside the holder:
    nsenter joins the holder's namespaces (its user namespace first, which only the
    holder's uid may), then an unprivileged bwrap starts the command. It runs behind
    `limits_argv` (which, as root, switches to `SANDBOX_HOST_UID` first)."""
    args = ["nsenter", f"--target={holder_pid}", "--user", "--preserve-credentials"]
    args += ["--mount", "--pid", "--net", "--ipc", "--uts", "--root"]
    if join_cgroup:
        args.append("--cgroup")
    args += [
        "bwrap",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--unshare-pid",
        "--die-with-parent",
        "--new-session",
    ]
    if disable_userns:
        args.append("--disable-userns")
    args += ["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--bind", "/tmp", "/tmp"]
    args += ["--bind", "/dev/shm", "/dev/shm", "--bind", workdir, workdir, "--proc", "/proc"]
    args += ["--chdir", cwd, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--", *argv]


def limits_argv(*, pids: int, file_bytes: int, cpu_s: int, memory_bytes: int) -> list[str]:
    """The prefix that puts `exec_argv` under the sandbox's host uid (as root: ``setpriv``,
    which drops every capability and supplementary group) and its rlimits (``prlimit``),
    both inherited by the command. Small programs rather than a ``preexec_fn``, so that
    Python can start the command without forking its own (large) process."""
    prefix: list[str] = []
    if privileged():
        uid = str(SANDBOX_HOST_UID)
        prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return [
        *prefix,
        "prlimit",
        f"--nproc={pids}",
        f"--fsize={file_bytes}",
        f"--cpu={cpu_s}:{cpu_s + 1}",
        f"--as={memory_bytes}",
        "--core=0",
        "--",
    ]


HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
"""The environment bwrap and nsenter themselves run with (never the caller's)."""


@functools.cache
def help_version() -> str:
    """bubblewrap's version, for reports."""
    out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=False).stdout.split()
    return out[-1] if out else "?"


@functools.cache
def supports_disable_userns() -> bool:
    """bwrap >= 0.8 can stop the sandbox from creating user namespaces of its own."""
    return "--disable-userns" in subprocess.run(["bwrap", "--help"], capture_output=True, text=True, check=False).stdout


def missing_tools() -> list[str]:
    """The host tools the local backend needs and cannot find."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def read_holder_pid(fd: int) -> int | None:
    """The holder's host pid from bwrap's --info-fd JSON, or None when bwrap failed first."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        data += chunk
    pid = json.loads(data).get("child-pid")
    return int(pid) if isinstance(pid, int) else None
