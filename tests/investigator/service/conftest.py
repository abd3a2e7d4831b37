"""A real `forensics serve` for the service tests: uvicorn in a subprocess on a free
port of 127.0.0.1, a config file with a few tokens, and cheap organism incidents
(the cot-only planner by default, so one investigation takes about a second)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

MAIN = "main-token-0123456789"
OTHER = "other-token-0123456789"
SINGLE = "single-token-0123456789"
BROKE = "broke-token-0123456789"
CAPPED = "capped-token-0123456789"
WEBHOOK_SECRET = "whsec-test-secret"
MAX_REQUEST_BYTES = 2 * 1024 * 1024

CONFIG: dict[str, Any] = {
    "tokens": [
        {"name": "main", "token": MAIN, "max_concurrent": 200},
        {"name": "other", "token": OTHER},
        {"name": "single", "token": SINGLE, "max_concurrent": 1},
        {"name": "broke", "token": BROKE, "budget_dollars": 0},
        {"name": "capped", "token": CAPPED, "budget_dollars": 0.5},
    ],
    "webhook_secret": WEBHOOK_SECRET,
    "webhook_backoff_s": 0.05,
    "webhook_timeout_s": 5,
    "max_request_bytes": MAX_REQUEST_BYTES,
    "sandbox_backend": "local",  # the organisms' shipped scenarios are trusted worlds
    "defaults": {"planner": "cot-only", "n": 5, "budget": {"tool_calls": 6, "samples": 200}},
    "workers": 3,
    "poll_interval_s": 0.2,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A `forensics serve` subprocess."""

    state_dir: Path
    config_file: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 180.0) -> Server:
        self.log = self.state_dir.parent / f"server-{self.port}.log"
        env = {
            **os.environ,
            "FORENSICS_NO_EMBEDDINGS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        for name in ("FORENSICS_API_TOKENS", "FORENSICS_SERVE_CONFIG", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
            env.pop(name, None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "investigator.cli",
                    "serve",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.state_dir),
                    "--config",
                    str(self.config_file),
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir.parent,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"the server did not answer /healthz in {timeout:.0f} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def write_config(folder: Path, **changes: Any) -> Path:
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **changes}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that do not need their own."""
    root = tmp_path_factory.mktemp("serve")
    running = Server(state_dir=root / "state", config_file=write_config(root)).start()
    yield running
    running.stop()


def auth(token: str = MAIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def incident_body(incident_file: Path, **options: Any) -> dict[str, Any]:
    """A JSON request for an incident file, its transcript inlined."""
    data = yaml.safe_load(incident_file.read_text(encoding="utf-8"))
    data["transcript"] = json.loads((incident_file.parent / data["transcript"]).read_text(encoding="utf-8"))
    return {"incident": data, **options}


def wait_until_final(
    client: httpx.Client, job_ids: list[str], *, token: str = MAIN, timeout: float = 240.0
) -> dict[str, dict[str, Any]]:
    """Poll until every investigation has ended; their last views."""
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        pending = [j for j in job_ids if views.get(j, {}).get("state") not in {"done", "failed", "cancelled"}]
        if not pending:
            return views
        listing = client.get("/v1/incidents", params={"limit": 1000}, headers=auth(token)).json()
        for item in listing["items"]:
            if item["id"] in job_ids:
                views[item["id"]] = item
        time.sleep(0.3)
    states = {j: views.get(j, {}).get("state") for j in job_ids}
    raise AssertionError(f"not finished after {timeout:.0f} s: {states}")
