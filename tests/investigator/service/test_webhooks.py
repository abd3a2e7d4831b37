"""Webhooks, received by a small HTTP server in the test: signed with HMAC-SHA256 over
the body, retried with backoff when the receiver fails, every attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from investigator.service.webhooks import sign, verify
from tests.investigator.service.conftest import WEBHOOK_SECRET, Server, auth, incident_body, wait_until_final


class Receiver:
    """Answers 503 to the first `failures` deliveries, 204 after; keeps what it got."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body, "path": self.path})
                failing = len(receiver.received) <= receiver.failures
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/forensics"

    def wait(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=1)
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"event": "investigation.done"}'
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, "k") == expected
    assert verify(body, "k", expected) and not verify(body + b" ", "k", expected) and not verify(body, "j", expected)


def test_a_finished_investigation_is_posted_signed_and_retried(
    server: Server, receiver: Receiver, organism_incidents: dict[str, Path]
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = incident_body(organism_incidents["shutdown-ambiguity"], callback_url=receiver.url)
        job = client.post("/v1/incidents", json=body, headers=auth()).json()
        assert job["webhook"] == {"url": receiver.url, "state": "pending", "attempts": 0, "last_status": None}
        # an investigation that fails is reported too (the llm planner has no API key here)
        failing = client.post(
            "/v1/incidents",
            json={**body, "planner": "llm", "model": "anthropic/claude-sonnet-4-5"},
            headers=auth(),
        ).json()
        views = wait_until_final(client, [job["id"], failing["id"]])
        assert views[job["id"]]["state"] == "done" and views[failing["id"]]["state"] == "failed"
        got = receiver.wait(3)  # one 503, then one delivery each
        deadline = time.monotonic() + 30
        view = client.get(f"/v1/incidents/{job['id']}", headers=auth()).json()
        while view["webhook"]["state"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            view = client.get(f"/v1/incidents/{job['id']}", headers=auth()).json()

    by_event: dict[str, list[dict[str, Any]]] = {}
    for delivery in got:
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        # the signature is over the exact bytes received, with the shared secret
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), delivery["body"], hashlib.sha256).hexdigest()
        assert headers["x-forensics-signature"] == expected
        payload = json.loads(delivery["body"])
        assert (
            headers["x-forensics-event"] == payload["event"] and headers["x-forensics-delivery"] == payload["delivery"]
        )
        by_event.setdefault(payload["investigation"]["id"], []).append(payload)
        assert delivery["path"] == "/hooks/forensics"
    done = by_event[job["id"]]
    assert done[-1]["event"] == "investigation.done"
    summary = done[-1]["investigation"]
    assert summary["state"] == "done" and summary["verdict"] == views[job["id"]]["verdict"]
    assert summary["links"]["report"] == f"/v1/incidents/{job['id']}/report"
    failed = by_event[failing["id"]][-1]
    assert failed["event"] == "investigation.failed" and failed["investigation"]["error"]["message"]
    # the first delivery got a 503 and was retried, with the same delivery id; both attempts recorded
    retried = next(d for d in by_event.values() if len(d) == 2)
    assert retried[0]["delivery"] == retried[1]["delivery"]
    total_attempts = sum(
        client_view["webhook"]["attempts"]
        for client_view in [view, *(httpx.get(f"{server.url}/v1/incidents/{failing['id']}", headers=auth()).json(),)]
    )
    assert total_attempts == 3
    assert view["webhook"]["state"] == "delivered" and view["webhook"]["last_status"] == 204
