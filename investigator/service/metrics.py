"""Prometheus metrics (``GET /metrics``), with prometheus_client.

The queue's numbers are read from the batch database at scrape time (so they are
right after a restart, and agree with the API): investigations by state, the queue's
depth, how many run, dollars and samples spent, webhook outcomes. Request counts and
latencies come from a middleware, labelled by route template (never by raw path, so
ids do not explode the label space).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from investigator.executor import BatchDB, JobState
from investigator.service.investigations import STATE_NAMES
from investigator.service.webhooks import DELIVERED, FAILED


class QueueCollector(Collector):
    """The queue's state from the batch database, at each scrape."""

    def __init__(self, db: BatchDB) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        counts = self.db.counts()
        by_state = GaugeMetricFamily(
            "forensics_investigations", "Investigations in the queue's database, by state.", labels=["state"]
        )
        for state, count in counts.items():
            by_state.add_metric([STATE_NAMES[state]], count)
        yield by_state
        yield GaugeMetricFamily(
            "forensics_queue_depth", "Investigations queued, not yet running.", value=counts[JobState.pending]
        )
        yield GaugeMetricFamily(
            "forensics_investigations_running", "Investigations running now.", value=counts[JobState.running]
        )
        finished = CounterMetricFamily(
            "forensics_investigations_finished", "Investigations that ended, by final state.", labels=["state"]
        )
        for state in (JobState.done, JobState.failed, JobState.cancelled):
            finished.add_metric([STATE_NAMES[state]], counts[state])
        yield finished
        jobs = self.db.jobs()
        yield CounterMetricFamily(
            "forensics_spend_dollars",
            "Dollars spent by all investigations (running ones so far).",
            value=self.db.spent(),
        )
        yield CounterMetricFamily(
            "forensics_samples", "Subject samples taken by all investigations.", value=sum(j.samples for j in jobs)
        )
        hooks = CounterMetricFamily("forensics_webhooks", "Webhook deliveries, by outcome.", labels=["outcome"])
        hooks.add_metric(["delivered"], len(self.db.events(kind=DELIVERED)))
        hooks.add_metric(["failed"], len(self.db.events(kind=FAILED)))
        yield hooks


class Metrics:
    """The service's registry: the queue collector and the HTTP instruments."""

    def __init__(self, db: BatchDB) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(QueueCollector(db))
        self.requests = Counter(
            "forensics_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forensics_http_request_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
