"""The Docker backend on a real engine: isolation, limits, files, snapshots, cleanup."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from sandboxes.base import Limits, SandboxSpec
from sandboxes.docker import LABEL, DockerSandbox, owner_id, owner_is_alive, sweep_stale
from sandboxes.errors import SandboxError
from sandboxes.registry import fork, remove_snapshot, start
from tests.conftest import ROOT

pytestmark = pytest.mark.docker


def _spec(image: str, **kwargs: Any) -> SandboxSpec:
    return SandboxSpec(image=image, **kwargs)


async def test_exec_basics_stdin_env_workdir(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag, files={"sub/a.txt": "hello"})) as sb:
        r = await sb.exec("cat sub/a.txt; echo oops >&2; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "hello", "oops\n")
        assert not r.ok
        assert (await sb.exec("tr a-z A-Z", input="piped text")).stdout == "PIPED TEXT"
        assert (await sb.exec("echo $GREETING", env={"GREETING": "hi"})).stdout == "hi\n"
        assert (await sb.exec("pwd", workdir="/workspace/sub")).stdout == "/workspace/sub\n"
        assert (await sb.exec(["id", "-u"])).stdout == "1000\n"


async def test_read_and_write_files(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag)) as sb:
        await sb.write_file("deep/dir/f.bin", b"\x00\x01binary")
        assert await sb.read_file("deep/dir/f.bin") == b"\x00\x01binary"
        assert await sb.read_file("/workspace/deep/dir/f.bin") == b"\x00\x01binary"
        with pytest.raises(SandboxError, match="no such file"):
            await sb.read_file("missing.txt")
        with pytest.raises(SandboxError, match="cannot write /etc/passwd"):
            await sb.write_file("/etc/passwd", "root::0:0::/:/bin/sh")


async def test_no_network_inside(base_image: str) -> None:
    async with await DockerSandbox.start(_spec(base_image)) as sb:
        script = textwrap.dedent(
            """
            import socket
            for host, port in [("1.1.1.1", 53), ("8.8.8.8", 443), ("172.17.0.1", 2375)]:
                s = socket.socket(); s.settimeout(2)
                try:
                    s.connect((host, port)); print("REACHED", host)
                except OSError as e:
                    print("blocked", host, type(e).__name__)
            print(open("/proc/net/dev").read())
            """
        )
        r = await sb.exec(["python3", "-c", script])
        assert "REACHED" not in r.stdout
        assert r.stdout.count("blocked") == 3
        assert "eth0" not in r.stdout


async def test_fork_bomb_is_stopped_by_pids_limit(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag, limits=Limits(pids=64))) as sb:
        r = await sb.exec("bomb() { bomb | bomb & }; bomb; sleep 3", timeout=6)
        assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr
        # the sandbox still works and the pids limit held
        alive = await sb.exec("echo alive", timeout=30)
        assert alive.stdout == "alive\n"
    # the host survived: it can still start processes
    assert subprocess.run(["true"], check=False).returncode == 0


async def test_memory_hog_is_killed(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag, limits=Limits(memory_mb=64))) as sb:
        r = await sb.exec("awk 'BEGIN { s = \"x\"; while (1) s = s s }'", timeout=60)
        assert not r.timed_out
        assert r.exit_code == 137  # SIGKILL from the OOM killer
        assert (await sb.exec("echo still here")).stdout == "still here\n"


async def test_timeout_kills_the_whole_process_tree(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag)) as sb:
        started = time.monotonic()
        r = await sb.exec("sleep 1000 & setsid sleep 999 & sleep 1000", timeout=1.5)
        assert r.timed_out
        assert r.exit_code is None
        assert "killed after 1.5s timeout" in r.stderr
        assert time.monotonic() - started < 15
        ps = await sb.exec("ps -o user,args")
        assert "sleep 1000" not in ps.stdout
        assert "sleep 999" not in ps.stdout


async def test_writing_outside_the_workspace_fails(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag)) as sb:
        for target in ("/etc/evil", "/evil", "/bin/evil", "/root/evil"):
            r = await sb.exec(f"echo x > {target}")
            assert r.exit_code != 0, target
            assert "Permission denied" in r.stderr or "Read-only" in r.stderr
        assert (await sb.exec("echo ok > /workspace/fine && cat /workspace/fine")).stdout == "ok\n"
        # no privilege escalation: setuid is neutered and all capabilities are gone
        caps = await sb.exec("grep CapEff /proc/self/status")
        assert caps.stdout.split()[-1] == "0000000000000000"


async def test_huge_output_is_truncated_with_a_marker(busybox_tag: str) -> None:
    async with await DockerSandbox.start(_spec(busybox_tag, limits=Limits(output_bytes=100_000))) as sb:
        r = await sb.exec("head -c 100000000 /dev/zero | tr '\\0' a", timeout=120)
        assert r.exit_code == 0
        assert r.truncated
        assert r.stdout.startswith("a" * 100_000)
        assert "output truncated by the sandbox: 99900000 more bytes not shown" in r.stdout
        assert len(r.stdout) < 100_200


async def test_container_removed_on_exception_and_cancellation(docker: Any, busybox_tag: str) -> None:
    with pytest.raises(RuntimeError):
        async with await DockerSandbox.start(_spec(busybox_tag)) as sb:
            cid = sb.container_id
            raise RuntimeError("boom")
    assert not docker.containers.list(all=True, filters={"id": cid})

    holder: dict[str, str] = {}

    async def long_job() -> None:
        async with await DockerSandbox.start(_spec(busybox_tag)) as sb:
            holder["id"] = sb.container_id
            await sb.exec("sleep 30", timeout=60)

    task = asyncio.create_task(long_job())
    while "id" not in holder:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)
    assert not docker.containers.list(all=True, filters={"id": holder["id"]})


def test_containers_of_a_killed_process_are_swept(docker: Any, busybox_tag: str) -> None:
    """A process that dies by SIGKILL cannot clean up; the next start-up sweep does."""
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        from sandboxes.base import SandboxSpec
        from sandboxes.docker import DockerSandbox
        async def main():
            sb = await DockerSandbox.start(SandboxSpec(image={busybox_tag!r}))
            print(sb.container_id, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    cid = proc.stdout.readline().strip()
    assert docker.containers.list(all=True, filters={"id": cid})
    owner = docker.containers.get(cid).labels[f"{LABEL}.owner"]
    assert owner_is_alive(owner)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not owner_is_alive(owner)
    removed = sweep_stale(docker)
    assert removed["containers"] >= 1
    assert not docker.containers.list(all=True, filters={"id": cid})
    # our own live containers are never swept
    assert owner_is_alive(owner_id())


async def test_snapshot_and_twenty_forks_see_the_state(docker: Any, busybox_tag: str) -> None:
    spec = _spec(busybox_tag)
    async with await start(spec, backend="docker") as sb:
        await sb.exec("mkdir -p repo && echo replayed > repo/state && echo 2 > counter")
        snapshot = await sb.snapshot()

    async def work(index: int, fork_sb: Any) -> str:
        await fork_sb.exec(f"echo {index} >> counter")  # forks are independent
        r = await fork_sb.exec("cat repo/state counter")
        return str(r.stdout)

    try:
        outputs = await fork(snapshot, spec, 20, work, concurrency=4)
    finally:
        await remove_snapshot(snapshot)
    assert outputs == [f"replayed\n2\n{i}\n" for i in range(20)]
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker.images.get(snapshot.ref)
