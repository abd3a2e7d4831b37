"""The local backend: bubblewrap namespaces, the same interface as Docker, real processes.

What every backend must contain (secrets, markers, background processes, quotas,
timeouts) is in test_containment.py; this file covers what is particular to bubblewrap.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from sandboxes import bwrap
from sandboxes import local as local_module
from sandboxes.base import Limits, SandboxSpec
from sandboxes.errors import LocalSandboxUnavailable, SandboxError
from sandboxes.local import LocalSandbox
from sandboxes.registry import fork, remove_snapshot, start
from tests.conftest import ROOT


async def test_exec_files_and_paths_like_docker() -> None:
    assert LocalSandbox.isolation == "namespaces"
    async with await LocalSandbox.start(SandboxSpec(files={"a/b.txt": "hi"}, setup=["echo set > setup.txt"])) as sb:
        r = await sb.exec("cat a/b.txt setup.txt; echo e >&2; exit 4")
        assert (r.exit_code, r.stdout, r.stderr) == (4, "hiset\n", "e\n")
        assert (await sb.exec("cat", input=b"bytes in")).stdout == "bytes in"
        assert (await sb.exec("echo $HOME; pwd; id -u")).stdout == "/workspace\n/workspace\n1000\n"
        assert (await sb.exec("pwd", workdir="a")).stdout == "/workspace/a\n"
        await sb.write_file("/workspace/x/y.bin", b"\x00\xffabs")
        assert await sb.read_file("x/y.bin") == b"\x00\xffabs"
        assert (await sb.exec("cat /workspace/a/b.txt")).stdout == "hi"  # absolute paths work
        with pytest.raises(SandboxError, match="no such file"):
            await sb.read_file("missing.txt")
        with pytest.raises(SandboxError, match="cannot write /etc/passwd"):
            await sb.write_file("/etc/passwd", "root::0:0::/:/bin/sh")
        # a symlink planted by a command resolves inside the sandbox, never on the host
        await sb.exec(f"ln -s {ROOT / 'pyproject.toml'} link")
        with pytest.raises(SandboxError, match="no such file"):
            await sb.read_file("link")


async def test_the_host_is_not_visible() -> None:
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        r = await sb.exec(f"ls /root /home {ROOT} /run /var")
        for path in ("/root", "/home", str(ROOT), "/run", "/var"):
            assert f"cannot access '{path}'" in r.stderr
        top = set((await sb.exec("ls /")).stdout.split())
        assert top <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr"} | {
            "workspace"
        }
        for target in ("/etc/evil", "/usr/evil", "/evil", "/opt/forensics/evil"):
            assert (await sb.exec(f"echo x > {target}")).exit_code != 0, target
        caps = await sb.exec("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
        assert "CapEff:\t0000000000000000" in caps.stdout and "NoNewPrivs:\t1" in caps.stdout
        assert (await sb.exec("unshare -U true")).exit_code != 0  # no user namespaces of its own
        # every namespace differs from ours, and the holder runs as an unprivileged host uid
        for kind in ("net", "pid", "ipc", "uts", "user", "mnt"):
            theirs, ours = Path(f"/proc/{sb.holder_pid}/ns/{kind}"), Path(f"/proc/self/ns/{kind}")
            assert theirs.readlink() != ours.readlink(), kind
        assert Path(f"/proc/{sb.holder_pid}").stat().st_uid == bwrap.sandbox_host_uid() != 0


async def test_python_git_and_mypy_come_from_read_only_runtime_binds() -> None:
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        script = "for t in python3 mypy git; do command -v $t; done; python3 -c 'import sys; print(sys.prefix)'"
        r = await sb.exec(script)
        assert r.ok, r.output
        python3, mypy, git, prefix = r.stdout.split()
        assert python3.startswith("/opt/forensics/") and mypy.startswith("/opt/forensics/") and git == "/usr/bin/git"
        assert prefix == "/opt/forensics/venv"
        assert (await sb.exec("mypy --version")).ok
        # the project's own code is not importable: its checkout is not mounted
        assert (await sb.exec(["python3", "-c", "import tools"])).exit_code != 0
        assert (await sb.exec("touch /opt/forensics/venv/bin/x")).exit_code != 0


async def test_timeout_kills_the_namespace_quickly() -> None:
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        started = time.monotonic()
        r = await sb.exec("sleep 1000 & setsid sleep 999 & sleep 1000", timeout=1)
        assert r.timed_out and r.exit_code is None
        assert time.monotonic() - started < 2.0
        assert "sleep" not in (await sb.exec("ps -eo args")).stdout.replace("ps -eo args", "")


async def test_output_cap_memory_and_cpu_limits() -> None:
    spec = SandboxSpec(limits=Limits(output_bytes=1000, memory_mb=256))
    async with await LocalSandbox.start(spec) as sb:
        r = await sb.exec("head -c 50000 /dev/zero | tr '\\0' b")
        assert r.truncated and "49000 more bytes not shown" in r.stdout
        hog = await sb.exec(["python3", "-c", "x = bytearray(1024 * 1024 * 1024)"])
        assert hog.exit_code != 0
        assert "MemoryError" in hog.stderr
        limits = {
            line[:26].strip(): line[26:].split()[0]
            for line in (await sb.exec("cat /proc/self/limits", timeout=7)).stdout.splitlines()[1:]
        }
        assert limits["Max cpu time"] == "7"
        assert limits["Max processes"] == str(Limits().pids)
        assert limits["Max file size"] == str((Limits().workspace_mb + 1) << 20)
        assert limits["Max core file size"] == "0"


async def test_snapshot_and_fork_start_from_the_replayed_state() -> None:
    spec = SandboxSpec()
    async with await start(spec, backend="local") as sb:
        await sb.exec("mkdir -p repo && echo state > repo/s.txt && chmod 600 repo/s.txt && ln -s repo/s.txt link")
        snap = await sb.snapshot()
    assert Path(snap.ref).is_file()

    async def work(i: int, f: object) -> str:
        assert isinstance(f, LocalSandbox)
        await f.exec(f"echo {i} >> repo/s.txt")  # forks are independent
        return str((await f.exec("cat link; stat -c %a repo/s.txt")).stdout)

    assert await fork(snap, spec, 5, work, concurrency=2) == [f"state\n{i}\n600\n" for i in range(5)]
    await remove_snapshot(snap)
    assert not Path(snap.ref).exists()


def test_snapshots_of_a_dead_process_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "_swept", False)
    stale = tmp_path / f"{socket.gethostname()}:999999999:1-abc.tar"  # a pid that cannot exist
    mine = tmp_path / f"{local_module.owner_id()}-def.tar"
    stale.write_bytes(b"")
    mine.write_bytes(b"")
    local_module._sweep_stale_snapshots(tmp_path)
    assert not stale.exists() and mine.exists()


def test_refuses_rather_than_degrades_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap, "missing_tools", lambda: ["bwrap"])
    local_module.probe.cache_clear()
    try:
        with pytest.raises(LocalSandboxUnavailable, match=r"bwrap not found.*refuses to run them unsandboxed"):
            local_module.require()
    finally:
        monkeypatch.undo()
        local_module.probe.cache_clear()
    assert local_module.require().ok


async def test_workdir_must_not_be_a_system_directory() -> None:
    for bad in ("/", "/usr/src", "/etc", "relative", "/tmp"):
        with pytest.raises(SandboxError, match="workdir"):
            await LocalSandbox.start(SandboxSpec(workdir=bad))
    async with await LocalSandbox.start(SandboxSpec(workdir="/repo")) as sb:
        assert (await sb.exec("pwd; echo $HOME")).stdout == "/repo\n/repo\n"
