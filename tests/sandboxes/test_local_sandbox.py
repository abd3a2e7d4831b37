"""The local backend: weaker isolation, same interface, real subprocesses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sandboxes.base import Limits, SandboxSpec
from sandboxes.errors import SandboxError
from sandboxes.local import LocalSandbox
from sandboxes.registry import choose_backend, fork, remove_snapshot, start


async def test_exec_files_and_isolation_label() -> None:
    assert LocalSandbox.isolation == "process"
    async with await LocalSandbox.start(SandboxSpec(files={"a/b.txt": "hi"}, setup=["echo set > setup.txt"])) as sb:
        r = await sb.exec("cat a/b.txt setup.txt; echo e >&2; exit 4")
        assert (r.exit_code, r.stdout, r.stderr) == (4, "hiset\n", "e\n")
        assert (await sb.exec("cat", input=b"bytes in")).stdout == "bytes in"
        assert (await sb.exec("echo $HOME")).stdout.strip() == str(sb.root)
        await sb.write_file("/workspace/x/y.txt", "abs")
        assert await sb.read_file("x/y.txt") == b"abs"
        with pytest.raises(SandboxError, match="escapes the workspace"):
            await sb.read_file("../../etc/passwd")
        with pytest.raises(SandboxError, match="only reaches files under /workspace"):
            await sb.read_file("/etc/passwd")
        root = sb.root
    assert not root.exists()


async def test_timeout_kills_the_process_group() -> None:
    async with await LocalSandbox.start(SandboxSpec()) as sb:
        started = time.monotonic()
        r = await sb.exec("sleep 1000 & sleep 1000", timeout=1)
        assert r.timed_out and r.exit_code is None
        assert time.monotonic() - started < 10


async def test_output_cap_and_memory_limit() -> None:
    spec = SandboxSpec(limits=Limits(output_bytes=1000, memory_mb=256))
    async with await LocalSandbox.start(spec) as sb:
        r = await sb.exec("head -c 50000 /dev/zero | tr '\\0' b")
        assert r.truncated and "49000 more bytes not shown" in r.stdout
        hog = await sb.exec(["python3", "-c", "x = bytearray(1024 * 1024 * 1024)"])
        assert hog.exit_code != 0
        assert "MemoryError" in hog.stderr


async def test_snapshot_and_fork() -> None:
    spec = SandboxSpec()
    async with await start(spec, backend="local") as sb:
        await sb.exec("echo state > s.txt")
        snap = await sb.snapshot()

    async def work(i: int, f: object) -> bytes:
        assert isinstance(f, LocalSandbox)
        return await f.read_file("s.txt")

    assert await fork(snap, spec, 5, work, concurrency=2) == [b"state\n"] * 5
    await remove_snapshot(snap)
    assert not Path(snap.ref).exists()


def test_choose_backend_says_when_it_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    choice = choose_backend()
    assert choice.name == "local"
    assert choice.note is not None and "weaker isolation" in choice.note
    assert choose_backend("local").note is not None
