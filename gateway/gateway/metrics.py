"""Prometheus metrics on a registry owned by the app (so tests can build many apps)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("gateway")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Always exported, 0 when no job has them, so alerts never see a series vanish.
JOB_STATUSES = ("queued", "converting", "done", "failed", "expired")
JOBS_CACHE_SECONDS = 15.0


class JobsByStatus:
    """Custom collector: the jobs collection counted by status when Prometheus scrapes.

    The count is cached for `ttl` seconds, so several scrapers (or replicas' worth of dashboards)
    cost one aggregation per interval; a failed count is cached too, so a scrape during a MongoDB
    outage waits for the server-selection timeout at most once per interval.
    """

    name = "gateway_jobs"
    documentation = "Jobs in MongoDB by status, counted at scrape time (cached briefly)."

    def __init__(
        self, count: Callable[[], dict[str, int]], *, ttl: float = JOBS_CACHE_SECONDS, clock=time.monotonic
    ) -> None:
        self._count = count
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] | None = None
        self._fetched_at: float | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declared so registering does not call collect() (which would query MongoDB at app start).
        yield GaugeMetricFamily(self.name, self.documentation, labels=["status"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["status"])
        counts = self._cached_counts()
        if counts is not None:  # unknown counts are left out rather than reported as 0
            for status in sorted({*JOB_STATUSES, *counts}):
                family.add_metric([status], counts.get(status, 0))
        yield family

    def _cached_counts(self) -> dict[str, int] | None:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._ttl:
                try:
                    self._counts = self._count()
                except Exception as exc:  # noqa: BLE001 - a scrape must still answer with the other metrics
                    log.warning("counting jobs for metrics failed: %r", exc)
                    self._counts = None
                self._fetched_at = now
            return self._counts


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time until the response headers were ready (a streamed download's body is not included).",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "gateway_upload_bytes_total",
            "Bytes of video stored from accepted uploads.",
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "gateway_publish_failures_total",
            "Uploads whose job message could not be published (the upload was rolled back).",
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "gateway_idempotent_replays_total",
            "Uploads answered with the job an earlier upload with the same Idempotency-Key created.",
            registry=self.registry,
        )

    def watch_jobs(self, count: Callable[[], dict[str, int]], **kwargs) -> JobsByStatus:
        """Export the jobs-by-status gauge, counted by `count` at scrape time."""
        collector = JobsByStatus(count, **kwargs)
        self.registry.register(collector)
        return collector

    def install(self, app: Flask) -> None:
        """Time every request and count it by route template (bounded label values)."""

        @app.before_request
        def _start_timer() -> None:
            g.metrics_start = time.perf_counter()

        @app.after_request
        def _record(response):
            # Unmatched URLs share one label so scanners cannot blow up the series count.
            endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            method = request.method if request.method in _METHODS else "OTHER"
            self.requests.labels(endpoint, method, str(response.status_code)).inc()
            start = g.get("metrics_start")
            if start is not None:
                self.latency.labels(endpoint).observe(time.perf_counter() - start)
            return response

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)
