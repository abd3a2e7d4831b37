"""Signed webhooks: when an investigation ends, POST its summary to the callback URL.

The body is the investigation as ``GET /v1/incidents/{id}`` shows it, wrapped with the
event name, a delivery id and the time it was sent. It is signed with HMAC-SHA256 over
the exact bytes sent, with the service's shared secret::

    X-Forensics-Signature: sha256=<hex digest>
    X-Forensics-Event: investigation.done | investigation.failed | investigation.cancelled
    X-Forensics-Delivery: <delivery id, the same on every retry of one delivery>

Delivery is retried with exponential backoff (tenacity) on connection errors, timeouts,
429 and 5xx answers; any other 4xx is final. Every attempt is an event in the batch
database (``webhook_attempt``: attempt, status or error), and the outcome too
(``webhook_delivered`` / ``webhook_failed``), so a delivery is visible in the API and
survives a restart: a service that starts finds finished investigations whose
delivery has no outcome yet and sends them again (receivers deduplicate by the
delivery id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from investigator.executor import BatchDB, JobRecord

SIGNATURE_HEADER = "X-Forensics-Signature"
EVENT_HEADER = "X-Forensics-Event"
DELIVERY_HEADER = "X-Forensics-Delivery"

ATTEMPT, DELIVERED, FAILED = "webhook_attempt", "webhook_delivered", "webhook_failed"

log = structlog.get_logger("forensics.webhooks")


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """Whether `header` is the signature of `body` (what a receiver checks)."""
    return hmac.compare_digest(sign(body, secret), header)


class _Retryable(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def webhook_state(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The delivery state of one investigation from its events (None: no webhook yet)."""
    attempts = [e for e in events if e["kind"] == ATTEMPT]
    outcome = next((e for e in reversed(events) if e["kind"] in {DELIVERED, FAILED}), None)
    if not attempts and outcome is None:
        return None
    state = "pending" if outcome is None else ("delivered" if outcome["kind"] == DELIVERED else "failed")
    last = attempts[-1] if attempts else {}
    return {"state": state, "attempts": len(attempts), "last_status": last.get("status")}


class Webhooks:
    """Sends and records deliveries (see module doc). `summary(record)` makes the body's
    ``investigation`` from a finished job."""

    def __init__(
        self,
        db: BatchDB,
        *,
        secret: str | None,
        summary: Callable[[JobRecord], dict[str, Any]],
        attempts: int = 6,
        timeout_s: float = 10.0,
        backoff_s: float = 1.0,
    ) -> None:
        self.db = db
        self.secret = secret
        self.summary = summary
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False)
        return self._client

    @staticmethod
    def callback_of(record: JobRecord) -> str | None:
        service = record.labels.get("service") or {}
        url = service.get("callback_url") if isinstance(service, dict) else None
        return str(url) if url else None

    def schedule(self, record: JobRecord) -> None:
        """Deliver in the background (the executor's finish hook must not wait on a
        receiver that is down)."""
        if self.callback_of(record) is None or not record.state.final:
            return
        task = asyncio.create_task(self.deliver(record.id), name=f"webhook:{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self) -> int:
        """Schedule every finished investigation whose delivery has no outcome yet."""
        settled = {e["job_id"] for e in self.db.events(kind=DELIVERED)} | {
            e["job_id"] for e in self.db.events(kind=FAILED)
        }
        count = 0
        for record in self.db.jobs():
            if record.state.final and self.callback_of(record) and record.id not in settled:
                self.schedule(record)
                count += 1
        return count

    async def deliver(self, job_id: str) -> None:
        record = self.db.get(job_id)
        url = self.callback_of(record)
        if url is None:
            return
        if self.secret is None:
            self.db.event(job_id, FAILED, url=url, reason="no webhook secret is configured")
            return
        earlier = [e for e in self.db.events(job_id) if e["kind"] == ATTEMPT]
        delivery = next((str(e["delivery"]) for e in earlier if e.get("delivery")), None) or uuid.uuid4().hex
        event = f"investigation.{record.state.value}"
        payload = {
            "event": event,
            "delivery": delivery,
            "sent_at": time.time(),
            "investigation": self.summary(record),
        }
        body = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "model-forensics-webhooks",
            SIGNATURE_HEADER: sign(body, self.secret),
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery,
        }
        attempt = len(earlier)

        async def once() -> None:
            nonlocal attempt
            attempt += 1
            try:
                response = await self._http().post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self.db.event(job_id, ATTEMPT, attempt=attempt, url=url, delivery=delivery, error=reason)
                raise _Retryable(None, reason) from None
            self.db.event(job_id, ATTEMPT, attempt=attempt, url=url, delivery=delivery, status=response.status_code)
            if response.status_code == 429 or response.status_code >= 500:
                raise _Retryable(response.status_code, f"answered {response.status_code}")
            if response.status_code >= 300:
                self.db.event(job_id, FAILED, url=url, status=response.status_code, reason="refused by the receiver")
                return
            self.db.event(job_id, DELIVERED, url=url, status=response.status_code, attempts=attempt)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.attempts - len(earlier))),
            wait=wait_exponential(multiplier=self.backoff_s, max=60),
            retry=retry_if_exception_type(_Retryable),
            reraise=False,
        )
        try:
            async for try_ in retrying:
                with try_:
                    await once()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            reason = str(last) if last else "gave up"
            self.db.event(job_id, FAILED, url=url, reason=f"gave up after {attempt} attempt(s): {reason}")
            log.warning("webhook_failed", job_id=job_id, url=url, attempts=attempt, reason=reason)

    async def close(self) -> None:
        """Stop deliveries in flight (a restarted service sends them again)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self) -> None:
        """Until every delivery in flight has ended (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
