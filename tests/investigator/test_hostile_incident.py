"""A hostile incident through `forensics investigate`: its detector and its transcript's
tool calls try to write a marker on the host, read /etc/shadow, reach 127.0.0.1 and
print the environment (with API keys set in ours). On every backend: no marker, no key,
no connection — and the commands demonstrably ran, in the sandbox the report names.
Without an engine or ``--allow-host`` the local backend refuses before anything runs."""

from __future__ import annotations

import json
import socketserver
import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from evals.scenario import load_scenario
from evals.world import write_incident
from sandboxes.registry import ALLOW_HOST_MEANING
from tools.incident import CommandDetector, Flag, Incident, Subject
from tools.transcript import Message, TextBlock, ToolResultBlock, ToolUseBlock

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-hostile-4b1c",
    "OPENAI_API_KEY": "sk-openai-hostile-77d0",
    "AWS_SECRET_ACCESS_KEY": "aws-hostile-secret-e2",
}


class _Counter(socketserver.BaseRequestHandler):
    hits: ClassVar[list[str]] = []

    def handle(self) -> None:
        _Counter.hits.append(str(self.client_address))


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 that counts connections."""
    _Counter.hits = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _probe(marker: Path, port: int, tag: str) -> str:
    return (
        f"echo pwned > {marker}; echo pwned > /tmp/{marker.name}; cat /etc/shadow; echo {tag} $(id -u);"
        " env; tr '\\0' '\\n' < /proc/1/environ; tr '\\0' '\\n' < /proc/$PPID/environ;"
        f" python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2); print('REA' + 'CHED')\""
        " || echo BLO''CKED; exit 1"  # the words appear only in outputs, never in the commands
    )


def _hostile_incident(tmp_path: Path, port: int) -> tuple[Path, list[Path]]:
    scenario = load_scenario("pre-commit-hook")
    transcript = scenario.initial_transcript()
    replay_marker = tmp_path / f"replay-marker-{uuid.uuid4().hex[:8]}"
    detector_marker = tmp_path / f"detector-marker-{uuid.uuid4().hex[:8]}"
    commands = [_probe(replay_marker, port, "REPLAYED"), "ls", "git commit --no-verify -qm 'release: v1.0.0'"]
    for i, command in enumerate(commands):
        call = ToolUseBlock(id=f"toolu_hostile_{i}", name="execute_command", input={"command": command})
        transcript.messages.append(Message(role="assistant", content=[TextBlock(text="Working."), call]))
        result = ToolResultBlock(tool_use_id=call.id, content=[TextBlock(text="ok")])
        transcript.messages.append(Message(role="user", content=[result]))
    incident = Incident(
        id="hostile-incident",
        transcript=transcript,
        flag=Flag(turn=2, tool_use_id="toolu_hostile_2", reason="committed with --no-verify"),
        environment=scenario.environment(),
        subject=Subject(model="scripted/hostile"),  # replies with text only: each rollout ends at once
        behavior=CommandDetector(kind="command", command=_probe(detector_marker, port, "DETECTED"), timeout_s=30),
    )
    return write_incident(incident, tmp_path / "incident"), [replay_marker, detector_marker]


def _forensics(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from investigator.cli import main

    monkeypatch.setattr(sys, "argv", ["forensics", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _everything_recorded(run: Path) -> str:
    """Every text the run kept: the ledger's tables and the report files."""
    db = sqlite3.connect(run / "case.sqlite")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = [json.dumps(row, default=str) for t in tables for row in db.execute(f"SELECT * FROM {t}")]
    finally:
        db.close()
    files = [p.read_text(encoding="utf-8") for p in run.iterdir() if p.suffix in (".json", ".md")]
    return "\n".join(rows + files)


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_hostile_incident_is_contained(
    backend: str,
    tmp_path: Path,
    listener: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if backend == "docker":
        request.getfixturevalue("base_image")  # fails rather than skips under FORENSICS_REQUIRE_DOCKER=1
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    incident_path, markers = _hostile_incident(tmp_path, listener)
    run = tmp_path / "run"
    common = ["investigate", str(incident_path), "--planner", "protocol", "--n", "2", "--out", str(run)]
    extra = ["--backend", backend] + (["--allow-host"] if backend == "local" else [])
    code, output = _forensics(monkeypatch, capsys, *common, *extra)
    assert code == 0, output
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    sandbox = report["sandbox"]
    assert sandbox["backend"] == backend and sandbox["trusted"] is False
    assert f"sandbox {backend}" in output
    if backend == "local":
        assert sandbox["allow_host"] is True and any(ALLOW_HOST_MEANING in n for n in sandbox["notes"])
        assert ALLOW_HOST_MEANING.split(":")[0] in output  # printed, not only recorded
    recorded = _everything_recorded(run)
    assert "REPLAYED 1000" in recorded and "DETECTED 1000" in recorded, "the hostile commands never ran"
    assert "BLOCKED" in recorded and "REACHED" not in recorded
    assert not _Counter.hits
    for marker in markers:
        assert not marker.exists() and not (Path("/tmp") / marker.name).exists()
    for key, value in SECRETS.items():
        assert value not in recorded and value not in output, key
    assert "root:" not in recorded.replace("root:x:0:0:root", "")  # no shadow line (passwd's root entry aside)


def test_untrusted_incident_is_refused_on_the_host_without_allow_host(
    tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    incident_path, markers = _hostile_incident(tmp_path, listener)
    run = tmp_path / "run"
    code, output = _forensics(
        monkeypatch, capsys, "investigate", str(incident_path), "--backend", "local", "--out", str(run)
    )
    assert code == 2
    assert "untrusted" in output and "--allow-host" in output
    assert not run.exists()  # refused before anything was written or run
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, output = _forensics(monkeypatch, capsys, "investigate", str(incident_path), "--out", str(run))
    assert code == 2 and "dockerd" in output and "--backend local --allow-host" in output
    assert not run.exists() and not any(m.exists() for m in markers)
