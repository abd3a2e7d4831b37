"""The service's core, between the HTTP routes and the executor.

The queue is the executor's batch database in the service directory; this layer adds
what a multi-client endpoint needs on top of it, all recorded in the job's labels so
that nothing lives only in memory:

- **tokens**: each investigation is labelled with the name of the token that submitted
  it; a token sees and cancels its own (an admin token, every one);
- **idempotency**: with an ``Idempotency-Key`` the investigation's id is derived from the
  token and the key, so a retry finds the same job; the request's fingerprint is
  stored, and the same key with a different request is refused (409);
- **per-token limits**: investigations queued or running at once (429), and a dollar
  budget over all of the token's investigations (402): each new investigation's own
  dollar limit is capped at what is left, counting what running ones may still spend;
- **the sandbox rule**: every job gets the operator's sandbox backend and
  ``allow_host=False`` — an untrusted incident runs in Docker or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from investigator.executor import Executor, JobRecord, JobSpec, JobState
from investigator.service.config import ServiceConfig, TokenPolicy
from investigator.service.errors import RequestRejected
from investigator.service.intake import INPUT_DIR, Intake
from investigator.service.schemas import (
    ErrorView,
    Investigation,
    Links,
    ProgressView,
    StateName,
    WebhookView,
)
from investigator.service.webhooks import ATTEMPT, DELIVERED, FAILED, Webhooks, webhook_state
from tools.budget import BudgetLimits

RUNS_DIR = "runs"
LIVE = (JobState.pending, JobState.running)

STATE_NAMES: dict[JobState, StateName] = {
    JobState.pending: "queued",
    JobState.running: "running",
    JobState.done: "done",
    JobState.failed: "failed",
    JobState.cancelled: "cancelled",
}
STATES_BY_NAME = {v: k for k, v in STATE_NAMES.items()}


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


def service_labels(record: JobRecord) -> dict[str, Any]:
    service = record.labels.get("service")
    return service if isinstance(service, dict) else {}


class InvestigationService:
    """Submit, look up, list and cancel investigations (see module doc)."""

    def __init__(self, config: ServiceConfig, executor: Executor, webhooks: Webhooks) -> None:
        self.config = config
        self.executor = executor
        self.db = executor.db
        self.webhooks = webhooks
        self.root = config.dir
        self._submitting = asyncio.Lock()

    # ------------------------------------------------------------------ ownership
    def visible(self, record: JobRecord, token: TokenPolicy) -> bool:
        return token.admin or service_labels(record).get("token") == token.name

    def get(self, job_id: str, token: TokenPolicy) -> JobRecord:
        """The job, when it exists and `token` may see it (else 404: nothing is said
        about other tokens' investigations)."""
        from investigator.executor import ExecutorError

        try:
            record = self.db.get(job_id)
        except ExecutorError:
            record = None
        if record is None or not self.visible(record, token) or not service_labels(record):
            raise RequestRejected(404, f"no investigation {job_id!r}")
        return record

    def records(
        self,
        token: TokenPolicy,
        *,
        states: Sequence[JobState] | None = None,
        verdict: str | None = None,
        since: float | None = None,
    ) -> list[JobRecord]:
        return [
            r
            for r in self.db.jobs(states=states, verdict=verdict, since=since)
            if service_labels(r) and self.visible(r, token)
        ]

    # ------------------------------------------------------------------ limits
    def _of_token(self, name: str, states: Sequence[JobState] | None = None) -> list[JobRecord]:
        return [r for r in self.db.jobs(states=states) if service_labels(r).get("token") == name]

    def _dollars_left(self, token: TokenPolicy) -> float | None:
        if token.budget_dollars is None:
            return None
        spent = reserved = 0.0
        for record in self._of_token(token.name):
            spent += record.dollars
            if record.state in LIVE:
                cap = service_labels(record).get("dollar_cap")
                if cap is not None:
                    reserved += max(0.0, float(cap) - record.dollars)
        return token.budget_dollars - spent - reserved

    def _admit(self, token: TokenPolicy) -> float | None:
        """Refuse a submission over the token's limits; the dollars it may spend (None: no cap)."""
        if token.max_concurrent is not None:
            live = len(self._of_token(token.name, LIVE))
            if live >= token.max_concurrent:
                raise RequestRejected(
                    429,
                    f"token {token.name!r} already has {live} investigations queued or running, its limit; "
                    "retry when one finishes",
                    headers={"Retry-After": "30"},
                )
        left = self._dollars_left(token)
        if left is not None and left <= 0:
            raise RequestRejected(
                402,
                f"token {token.name!r} has used its budget of ${token.budget_dollars:.2f} (spent or reserved by "
                "investigations still running); ask the operator for more",
            )
        return left

    # ------------------------------------------------------------------ submitting
    def job_id(self, token: TokenPolicy, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return f"inv-{int(time.time()):x}-{secrets.token_hex(6)}"
        digest = hashlib.sha256(f"{token.name}\0{idempotency_key}".encode()).hexdigest()[:24]
        return f"inv-k{digest}"

    def _limits(self, intake: Intake, dollars_left: float | None) -> BudgetLimits:
        asked = intake.options.budget
        base = self.config.defaults.budget
        values = {
            name: getattr(asked, name)
            if asked is not None and getattr(asked, name) is not None
            else getattr(base, name)
            for name in ("samples", "tool_calls", "tokens", "dollars")
        }
        top = self.config.max_budget
        for name in ("samples", "tool_calls", "tokens", "dollars"):
            most = getattr(top, name)
            if most is not None and (values[name] is None or values[name] > most):
                values[name] = most
        if dollars_left is not None:
            values["dollars"] = round(
                min(values["dollars"], dollars_left) if values["dollars"] is not None else dollars_left, 6
            )
        return BudgetLimits(**values)

    async def submit(
        self, token: TokenPolicy, intake: Intake, *, idempotency_key: str | None
    ) -> tuple[JobRecord, bool]:
        """Queue a staged submission; (its job, whether it is new). A replayed
        idempotent request returns the existing job and discards the new staging."""
        async with self._submitting:
            job_id = self.job_id(token, idempotency_key)
            existing = self._existing(job_id)
            if existing is not None:
                intake.discard()
                if service_labels(existing).get("fingerprint") != intake.fingerprint:
                    raise RequestRejected(
                        409,
                        "Idempotency-Key was already used with a different request; use a new key for a new incident",
                    )
                return existing, False
            try:
                left = self._admit(token)
            except RequestRejected:
                intake.discard()
                raise
            run_dir = (self.root / RUNS_DIR / job_id).resolve()
            incident_path = intake.install(run_dir / INPUT_DIR, job_id)
            options = intake.options
            limits = self._limits(intake, left)
            subject = intake.incident.subject.model
            labels: dict[str, Any] = {
                "service": {
                    "token": token.name,
                    "fingerprint": intake.fingerprint,
                    "idempotency_key": idempotency_key,
                    "callback_url": str(options.callback_url) if options.callback_url else None,
                    "incident_id": intake.incident.id if intake.named_id else job_id,
                    "subject": subject,
                    "planner": options.planner or self.config.defaults.planner,
                    "dollar_cap": limits.dollars,
                },
                "client": dict(options.labels),
            }
            spec = JobSpec(
                id=job_id,
                run_dir=str(run_dir),
                incident_path=str(incident_path),
                planner=options.planner or self.config.defaults.planner,
                model=options.model,
                judge=self.config.judge,
                n=options.n or self.config.defaults.n,
                limits=limits,
                blind=options.blind,
                backend=self.config.sandbox_backend,
                allow_host=False,  # never for request data: see the module doc
                subject_pricing=self.config.pricing_for(subject),
                organism_dirs=list(self.config.organism_dirs),
                scenario_dirs=list(self.config.scenario_dirs),
                labels=labels,
            )
            return self.executor.submit(spec), True

    def _existing(self, job_id: str) -> JobRecord | None:
        from investigator.executor import ExecutorError

        try:
            return self.db.get(job_id)
        except ExecutorError:
            return None

    async def cancel(self, record: JobRecord) -> JobRecord:
        if record.state.final:
            raise RequestRejected(409, f"investigation {record.id} is already {STATE_NAMES[record.state]}")
        return await self.executor.cancel(record.id)

    # ------------------------------------------------------------------ views
    def report_file(self, record: JobRecord, suffix: str) -> Path:
        if record.state is not JobState.done:
            raise RequestRejected(
                409, f"investigation {record.id} is {STATE_NAMES[record.state]}; its report exists once it is done"
            )
        path = Path(record.run_dir) / f"report.{suffix}"
        if not path.is_file():
            raise RequestRejected(404, f"investigation {record.id} finished without a report.{suffix}")
        return path

    def webhook_events(self, job_ids: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        events: list[dict[str, Any]] = []
        for kind in (ATTEMPT, DELIVERED, FAILED):
            events += self.db.events(kind=kind)
        for event in sorted(events, key=lambda e: e["id"]):
            if job_ids is None or event["job_id"] in job_ids:
                grouped.setdefault(event["job_id"], []).append(event)
        return grouped

    def view(self, record: JobRecord, webhook_events: list[dict[str, Any]] | None = None) -> Investigation:
        service = service_labels(record)
        if webhook_events is None:
            webhook_events = [e for e in self.db.events(record.id) if e["kind"] in {ATTEMPT, DELIVERED, FAILED}]
        # live from the run directory while it runs; otherwise what the database holds (no file is read)
        progress = self.executor.progress(record.id) if record.state is JobState.running else record.progress
        webhook = None
        url = service.get("callback_url")
        if url:
            state = webhook_state(webhook_events) or {"state": "pending", "attempts": 0, "last_status": None}
            webhook = WebhookView(url=str(url), **state)
        error = None
        if record.state in {JobState.failed, JobState.cancelled} and record.error:
            error = ErrorView(kind=record.error_kind, message=record.error)
        client = record.labels.get("client")
        return Investigation(
            id=record.id,
            state=STATE_NAMES[record.state],
            incident_id=str(service.get("incident_id") or record.id),
            subject=str(service.get("subject") or ""),
            planner=str(service.get("planner") or ""),
            submitted=_when(record.submitted) or datetime.now(tz=UTC),
            started=_when(record.started),
            finished=_when(record.finished),
            progress=ProgressView(
                attempt=progress.attempt,
                tool_calls=progress.tool_calls,
                samples=progress.samples,
                tokens=progress.tokens,
                dollars=progress.dollars,
                last_step=progress.last_step,
                updated=_when(progress.updated),
            ),
            verdict=record.verdict if record.verdict in {"misalignment", "mistake", "inconclusive"} else None,
            motivation=record.motivation,
            confidence=record.confidence,
            error=error,
            note=record.note,
            cancel_requested=record.cancel_requested,
            webhook=webhook,
            labels={str(k): str(v) for k, v in client.items()} if isinstance(client, dict) else {},
            token=service.get("token"),
            links=Links(
                self=f"/v1/incidents/{record.id}",
                report=f"/v1/incidents/{record.id}/report" if record.state is JobState.done else None,
            ),
        )
