"""Faults reported as faults: when the subject's or the investigator's API keeps
failing (tested against the local fake Anthropic server over real HTTP), the
investigation stops with status "failed", the report names the error, the CLI exits
non-zero, and a resumed run takes up again from before the failure. Also: run
directories carry what --resume needs, and the next run sweeps up what a killed one
left (temporary report files, local sandbox directories)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from investigator.cli import app
from investigator.investigate import RUN_FILE, investigate, sweep_run_dir
from tests.tools.models.fake_servers import FakeServer, Reply, anthropic_error, anthropic_message
from tools.agent_tools import fault_of
from tools.incident import Incident, RegexDetector, load_incident
from tools.models.anthropic import AnthropicModel
from tools.models.retry import ModelAPIError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "incident_precommit.yaml"
FIVE_HUNDRED = anthropic_error(500, "api_error", "Internal server error")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two quick attempts per call; no real keys, loopback never through a proxy."""
    monkeypatch.setenv("FORENSICS_MODEL_ATTEMPTS", "2")
    monkeypatch.setenv("FORENSICS_MODEL_TIMEOUT_S", "10")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def failing() -> Iterator[FakeServer]:
    with FakeServer(FIVE_HUNDRED).running() as server:
        yield server


def _incident(subject: str) -> Incident:
    incident = load_incident(EXAMPLE)
    incident.subject.model = subject
    # a detector that needs no sandbox, so the resamples are plain model calls
    incident.behavior = RegexDetector(kind="regex", pattern=r"git\s+commit\b.*--no-verify", target="tool_calls")
    return incident


def test_which_errors_are_faults() -> None:
    for status, fault in [(500, True), (529, True), (429, True), (None, True), (401, True), (404, True), (400, False)]:
        exc = ModelAPIError("anthropic/x", "boom", status=status, attempts=2)
        assert (fault_of(exc, stage="act", tool="resample") is not None) is fault, status
    found = fault_of(ModelAPIError("anthropic/x", "down", status=503, attempts=4), stage="act", tool="resample")
    assert found is not None and found.status == 503 and found.attempts == 4 and found.model == "anthropic/x"


async def test_a_subject_api_that_keeps_failing_ends_in_a_failed_report(failing: FakeServer, tmp_path: Path) -> None:
    subject = AnthropicModel("claude-sonnet-4-5", base_url=failing.url)
    started = time.monotonic()
    result = await investigate(
        _incident("anthropic/claude-sonnet-4-5"), tmp_path, planner="protocol", n=4, subject=subject
    )
    elapsed = time.monotonic() - started
    report = result.report
    assert report.status == "failed" and report.verdict == "inconclusive"
    assert report.failure is not None and report.failure.stage == "act"
    assert report.failure.tool in {"screen_context", "resample"}  # the first tool that samples
    assert report.failure.status == 500 and report.failure.attempts == 2
    assert "HTTP 500" in report.summary and "Internal server error" in report.summary
    assert any("HTTP 500" in limitation for limitation in report.limitations)
    assert "budget" not in report.summary.lower()
    assert report.cost.tool_calls <= 3  # it stopped at the fault instead of spending the budget
    assert elapsed < 60
    # every request the server saw was a retry of the same failing kind: 2 attempts per sample at most
    assert 2 <= len(failing.requests) <= 2 * 4
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["failure"]["status"] == 500
    assert "FAILED" in (tmp_path / "report.md").read_text()


def _submit_report() -> Reply:
    call = {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "submit_report",
        "input": {
            "verdict": "inconclusive",
            "motivation": None,
            "confidence": 0.2,
            "intentional_probability": 0.5,
            "knew_disapproval_probability": 0.5,
            "summary": "No experiment was run.",
            "intentional_rationale": "untested",
            "knew_disapproval_rationale": "untested",
            "evidence": [],
        },
    }
    return Reply(anthropic_message([call], stop_reason="tool_use"))


async def test_an_investigator_api_that_keeps_failing_fails_and_a_resume_takes_it_up_again(
    failing: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", failing.url)
    incident = _incident("organism/precommit-lazy-knowing")
    first = await investigate(incident, tmp_path, planner="llm", model="anthropic/claude-sonnet-4-5", n=4)
    assert first.report.status == "failed"
    assert first.report.failure is not None and first.report.failure.stage == "plan"
    assert "the investigator's model" in first.report.summary and "HTTP 500" in first.report.summary
    assert len(failing.requests) == 2

    failing.default = _submit_report()  # the API is back
    second = await investigate(incident, tmp_path, planner="llm", model="anthropic/claude-sonnet-4-5", resume=True)
    assert second.report.status == "completed" and second.report.failure is None
    assert second.report.summary == "No experiment was run."
    assert len(failing.requests) == 3


def _write_incident(folder: Path, subject: str) -> Path:
    spec = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    spec["subject"]["model"] = subject
    spec["behavior"] = {"kind": "regex", "pattern": r"git\s+commit\b.*--no-verify", "target": "tool_calls"}
    (folder / "precommit_transcript.json").write_bytes((ROOT / "examples" / "precommit_transcript.json").read_bytes())
    path = folder / "incident.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_the_cli_exits_non_zero_and_names_the_error(failing: FakeServer, tmp_path: Path) -> None:
    incident = _write_incident(tmp_path, "organism/precommit-lazy-knowing")
    env = {**os.environ, "ANTHROPIC_BASE_URL": failing.url, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    args = ["investigate", str(incident), "--planner", "llm", "--model", "anthropic/claude-sonnet-4-5"]
    args += ["--out", str(tmp_path / "run"), "--model-attempts", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "investigator.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "investigation failed" in done.stdout and "HTTP 500" in done.stdout
    assert "Traceback" not in done.stderr
    assert len(failing.requests) == 1  # --model-attempts 1: no retry
    assert json.loads((tmp_path / "run" / "report.json").read_text())["status"] == "failed"


def test_a_run_directory_made_by_investigate_can_be_resumed_by_the_cli(tmp_path: Path) -> None:
    # The demo (evals/demo.py) calls investigate() directly, as here: run.json must come with it.
    incident = _incident("organism/precommit-lazy-knowing")
    asyncio.run(investigate(incident, tmp_path / "investigation", planner="cot-only", n=4))
    options = json.loads((tmp_path / "investigation" / RUN_FILE).read_text())
    assert options["planner"] == "cot-only" and options["incident"]["id"] == incident.id
    result = CliRunner().invoke(app, ["investigate", "--resume", str(tmp_path / "investigation")])
    assert result.exit_code == 0, result.output
    assert "(resuming)" in result.output and "report: precommit-noverify-001" in result.output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_the_next_run_sweeps_what_a_killed_one_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal, tempfile
        from sandboxes.base import SandboxSpec
        from sandboxes.local import LocalSandbox

        async def main():
            sandbox = await LocalSandbox.start(SandboxSpec(files={{"a.txt": "x"}}))
            snapshot = await sandbox.snapshot()
            fd, tmp = tempfile.mkstemp(dir={str(run_dir)!r}, prefix=".report.json.", suffix=".tmp")
            os.write(fd, b"half a report")
            print(sandbox.holder_pid, snapshot.ref, tmp, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # killed while writing: close() never runs

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    if "LocalSandboxUnavailable" in done.stderr:
        pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == -signal.SIGKILL, done.stderr
    holder, *paths = done.stdout.split()
    leftovers = [Path(p) for p in paths]
    assert len(leftovers) == 2 and all(p.exists() for p in leftovers)
    deadline = time.monotonic() + 10
    while _alive(int(holder)) and time.monotonic() < deadline:  # --die-with-parent: the sandbox goes by itself
        time.sleep(0.1)
    assert not _alive(int(holder))
    (run_dir / "notes.txt").write_text("mine")  # not a leftover: kept
    removed = sweep_run_dir(run_dir)
    assert not any(p.exists() for p in leftovers)
    assert {Path(p).name for p in removed} >= {p.name for p in leftovers}
    assert (run_dir / "notes.txt").exists()
