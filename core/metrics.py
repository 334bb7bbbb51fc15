"""Prometheus metrics of one running service: jobs, latencies, queue, rejections, retries.

Each `Metrics` has its own registry, so several services in one process (tests) never clash.
The service is observed from the outside: its events through `MeteredHooks`, the backend through
`MeteredBackend`, and the queue through gauges that read the service when scraped.
"""

from __future__ import annotations

import time
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.backend import RetouchBackend
from core.errors import RetouchError
from core.formats import PreparedImage
from core.jobs import Job
from core.platform import JobEvent, PlatformHooks

CONTENT_TYPE = CONTENT_TYPE_LATEST
JOB_BUCKETS = (1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600)
UPSTREAM_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120)


class Workload(Protocol):
    """What the queue gauges read (the service does): jobs waiting, and jobs running."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def running_count(self) -> int: ...


class Metrics:
    """The metrics of one service, exposed in the Prometheus text format by `render`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "retouch_jobs",
            "Finished jobs by platform and outcome (done, failed, cancelled).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "retouch_job_duration_seconds",
            "Time from admission to delivery of successful jobs.",
            ["platform"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "retouch_upstream_duration_seconds",
            "Time the backend took per photo (request, processing and result download).",
            ["backend"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "retouch_rejections",
            "Requests turned away before becoming jobs, by reason (quota_exceeded, ...).",
            ["platform", "reason"],
            registry=self.registry,
        )
        self.upstream_retries = Counter(
            "retouch_upstream_retries",
            "Upstream requests retried after a timeout, 429 or 5xx.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "retouch_queue_depth", "Jobs waiting for a worker.", registry=self.registry
        )
        self.in_flight = Gauge(
            "retouch_jobs_in_flight", "Jobs being worked on now.", registry=self.registry
        )

    def watch(self, service: Workload) -> None:
        """Read the queue gauges from `service` whenever metrics are scraped."""
        self.queue_depth.set_function(lambda: service.queue_depth)
        self.in_flight.set_function(lambda: service.running_count)

    def rejected(self, platform: str, error: RetouchError) -> None:
        self.rejections.labels(platform, error.code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MeteredHooks:
    """An adapter's hooks, counting outcomes and job latencies on the way through."""

    def __init__(self, inner: PlatformHooks, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def fetch_input(self, job: Job) -> bytes:
        return await self.inner.fetch_input(job)

    async def deliver(self, job: Job, result: bytes) -> None:
        await self.inner.deliver(job, result)

    async def on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind in ("done", "failed", "cancelled"):
            self.metrics.jobs.labels(job.platform, event.kind).inc()
        if event.kind == "done":
            self.metrics.job_seconds.labels(job.platform).observe(
                max(0.0, time.time() - job.created_at)
            )
        await self.inner.on_event(event)


class MeteredBackend:
    """A backend whose every call is timed."""

    def __init__(self, inner: RetouchBackend, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        started = time.perf_counter()
        try:
            return await self.inner.retouch(image, fidelity)
        finally:
            self.metrics.upstream_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()
