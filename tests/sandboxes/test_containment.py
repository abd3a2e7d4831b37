"""What every backend contains, probed as an attacker would (SECURITY.md's table).

Each probe runs on the Docker backend (busybox image; fails rather than skips under
FORENSICS_REQUIRE_DOCKER=1) and on the local bubblewrap backend; the secrets probe also
runs on the simulated backend. The marker, shadow, loopback and environment probes
are the ones a hostile incident uses (tests/investigator/test_hostile_incident.py runs
them through `forensics investigate`).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sandboxes.base import Limits, Sandbox, SandboxSpec
from sandboxes.registry import start
from sandboxes.simulated import SimulatedSandbox
from tests.conftest import ROOT
from tools.env_simulator import model_simulator
from tools.models.scripted import ScriptedModel
from tools.transcript import Transcript

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-containment-0d1f",
    "OPENAI_API_KEY": "sk-openai-containment-8c2e",
    "AWS_ACCESS_KEY_ID": "AKIACONTAINMENT7Q",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-containment-55b",
    "AWS_SESSION_TOKEN": "aws-session-containment-91",
    "GITHUB_TOKEN": "ghp_containment_3e7",
    "HF_TOKEN": "hf_containment_a1",
}
ENV_PROBE = "env; for f in /proc/self/environ /proc/1/environ /proc/$PPID/environ; do tr '\\0' '\\n' < $f; done"


def _background(n: int) -> str:
    """Three ways to leave a process behind, sleeping n, n+1 and n+2 seconds (n unique
    per test, so the host's process list can be searched for exactly these)."""
    return f"(sleep {n} &); nohup sleep {n + 1} >/dev/null 2>&1 & setsid sleep {n + 2} & echo started"


FORK_BOMB = "bomb() { bomb | bomb & }; (bomb &); echo launched"
Factory = Callable[..., Awaitable[Sandbox]]


def observe(backend: str, probe: str, observed: object) -> None:
    """Print what a probe measured (``pytest -s -k containment`` shows SECURITY.md's table)."""
    print(f"[containment] {backend:9} | {probe:32} | {observed}")


@pytest.fixture(params=["docker", "local"])
async def sandbox_factory(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Factory]]:
    """(backend, make) where ``await make(limits=...)`` starts a sandbox closed after the test."""
    backend: str = request.param
    image = request.getfixturevalue("busybox_tag") if backend == "docker" else "unused"
    opened: list[Sandbox] = []

    async def make(**kwargs: Any) -> Sandbox:
        sandbox = await start(SandboxSpec(image=image, **kwargs), backend=backend)
        opened.append(sandbox)
        return sandbox

    yield backend, make
    for sandbox in opened:
        await sandbox.close()


def _net_probe(backend: str, port: int) -> str:
    # busybox in the Docker image; the host's busybox (busybox-static) inside bubblewrap
    prefix = "" if backend == "docker" else "busybox "
    return f"{prefix}wget -T 2 -q -O- http://127.0.0.1:{port}/ && echo REACHED || echo BLOCKED"


def _host_processes(pattern: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in args:
            found.append(args)
    return found


async def test_hostile_command_leaves_no_marker_reads_no_shadow_reaches_no_loopback(
    sandbox_factory: tuple[str, Factory], tmp_path: Path
) -> None:
    backend, make = sandbox_factory
    hits: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    marker = tmp_path / "marker"
    tmp_marker = Path("/tmp") / f"forensics-containment-{uuid.uuid4().hex}"
    sandbox = await make()
    try:
        r = await sandbox.exec(
            f"echo pwned > {marker}; echo pwned > {tmp_marker}; echo pwned > {ROOT}/pwned; echo pwned > /root/pwned;"
            f" cat /etc/shadow; id -u; {_net_probe(backend, port)}",
            timeout=30,
        )
    finally:
        server.close()
        await server.wait_closed()
    observe(backend, "marker / shadow / 127.0.0.1", f"uid {r.stdout.splitlines()[-2]}, {r.stdout.splitlines()[-1]}")
    assert r.stdout.splitlines()[-2:] == ["1000", "BLOCKED"], r.output
    assert not marker.exists() and not tmp_marker.exists() and not (ROOT / "pwned").exists()
    assert not Path("/root/pwned").exists()
    assert not hits
    shadow = Path("/etc/shadow")
    if shadow.exists() and os.access(shadow, os.R_OK):
        for line in shadow.read_text().splitlines():
            assert line not in r.stdout
    assert "root:" not in r.stdout


async def test_no_secret_of_ours_reaches_a_sandbox(
    sandbox_factory: tuple[str, Factory], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, make = sandbox_factory
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    sandbox = await make()
    r = await sandbox.exec(ENV_PROBE)
    seen = r.stdout + r.stderr
    assert "HOME=/workspace" in seen and "PATH=" in seen  # the probe ran
    for key, value in SECRETS.items():
        assert value not in seen, key
        assert f"{key}=" not in seen, key
    names = {line.split("=", 1)[0] for line in r.stdout.splitlines() if "=" in line}
    observe(backend, "environment (incl. /proc/1, PPID)", f"variables seen: {sorted(names)}")
    assert names <= {"PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "HOSTNAME", "LD_LIBRARY_PATH", "OLDPWD", "_"}


async def test_no_secret_reaches_the_simulated_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing runs there; the model playing the environment sees only the description and
    the history, so even an `env` command cannot be answered with our environment."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)

    def echo_everything(transcript: Transcript, index: int) -> str:
        return "\n".join([transcript.system or "", *(m.text for m in transcript.messages)])

    simulator = model_simulator(ScriptedModel(respond=echo_everything), environment="a Debian box")
    async with await SimulatedSandbox.start(SandboxSpec(), simulator=simulator) as sandbox:
        r = await sandbox.exec(ENV_PROBE)
    assert r.provenance == "simulated" and "a Debian box" in r.stdout
    observe(
        "simulated", "environment", f"secrets in the simulator's view: {[v for v in SECRETS.values() if v in r.stdout]}"
    )
    for value in SECRETS.values():
        assert value not in r.stdout


async def test_background_processes_die_with_their_command(sandbox_factory: tuple[str, Factory]) -> None:
    backend, make = sandbox_factory
    sandbox = await make()
    await sandbox.write_file("state", "replayed\n")
    started = time.monotonic()
    n = 300_000 + uuid.uuid4().int % 600_000
    r = await sandbox.exec(f"{_background(n)}; (sleep 1; echo tampered > state) &")
    assert r.ok and r.stdout == "started\n"
    returned = time.monotonic() - started
    assert returned < 2.0  # nothing holds the output stream open
    ps = await sandbox.exec("ps -o pid,args 2>/dev/null || ps")
    assert f"sleep {n}" not in ps.stdout and f"sleep {n + 2}" not in ps.stdout and "sleep 1" not in ps.stdout
    await asyncio.sleep(1.5)
    assert await sandbox.read_file("state") == b"replayed\n"  # the detector would see the real state
    observe(backend, "nohup / (cmd &) / setsid", f"returned in {returned:.2f} s; none left; workspace untouched")
    if backend == "local":
        assert not [p for p in _host_processes(f"sleep {n}") if "pytest" not in p]


async def test_a_backgrounded_fork_bomb_is_gone_after_its_command(sandbox_factory: tuple[str, Factory]) -> None:
    backend, make = sandbox_factory
    sandbox = await make(limits=Limits(pids=64))
    r = await sandbox.exec(FORK_BOMB, timeout=10)
    assert "launched" in r.stdout
    started = time.monotonic()
    alive = await sandbox.exec("echo alive; ps | wc -l", timeout=30)
    assert alive.stdout.startswith("alive\n"), alive.output
    assert int(alive.stdout.split()[-1]) < 8  # header, sh, ps, wc (and the init on Docker)
    assert time.monotonic() - started < 15
    observe(
        backend,
        "backgrounded fork bomb",
        f"next command in {time.monotonic() - started:.2f} s, {alive.stdout.split()[-1]} ps lines",
    )


async def test_disk_fill_stops_at_the_quota(sandbox_factory: tuple[str, Factory]) -> None:
    backend, make = sandbox_factory
    sandbox = await make(limits=Limits(workspace_mb=16, tmp_mb=8, memory_mb=256))
    r = await sandbox.exec("dd if=/dev/zero of=fill bs=1048576 count=64; echo status=$?; ls -l fill", timeout=60)
    assert "No space left on device" in r.output
    assert "status=0" not in r.stdout
    size = int(r.stdout.split()[-5])
    assert 8 << 20 < size <= 16 << 20
    t = await sandbox.exec("dd if=/dev/zero of=/tmp/fill bs=1048576 count=64; ls -l /tmp/fill", timeout=60)
    assert "No space left on device" in t.output and int(t.stdout.split()[-5]) <= 8 << 20
    observe(
        backend, "disk fill (16 MiB / 8 MiB quotas)", f"ENOSPC at {size} B workspace, {t.stdout.split()[-5]} B /tmp"
    )
    assert (await sandbox.exec("rm fill && echo ok > small && cat small")).stdout == "ok\n"  # usable again


async def test_timeouts_return_within_a_second_of_their_deadline(sandbox_factory: tuple[str, Factory]) -> None:
    backend, make = sandbox_factory
    sandbox = await make(limits=Limits(pids=64))
    busy_bomb = "(bomb() { bomb | bomb & }; bomb) & while :; do :; done"
    for command in ("sleep 100", "setsid sleep 100 & (sleep 99 &); sleep 100", busy_bomb):
        started = time.monotonic()
        r = await sandbox.exec(command, timeout=2)
        elapsed = time.monotonic() - started
        assert r.timed_out and r.exit_code is None, command
        assert elapsed < 3.0, (command, elapsed)
        observe(backend, f"timeout 2 s: {command[:22]}", f"returned after {elapsed:.2f} s")
    after = await sandbox.exec("ps | wc -l", timeout=30)
    assert int(after.stdout.split()[-1]) < 8, after.output
