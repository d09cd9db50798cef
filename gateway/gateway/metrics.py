"""The gateway's Prometheus metrics: mp3core's request metrics plus uploads, publishes and jobs by status."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mp3core.contract import STATUSES
from mp3core.http import HttpMetrics
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

JOBS_CACHE_SECONDS = 15.0


class JobsByStatus:
    """Custom collector: the jobs collection counted by status when Prometheus scrapes.

    The count is cached for JOBS_CACHE_SECONDS, so several scrapers (or replicas' worth of dashboards)
    cost one aggregation per interval; a failed count is cached too, so a scrape during a MongoDB
    outage waits for the server-selection timeout at most once per interval.
    """

    name = "gateway_jobs"
    documentation = "Jobs in MongoDB by status, counted at scrape time (cached briefly)."

    def __init__(self, count: Callable[[], dict[str, int]], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
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
            # Every known status is exported, 0 when no job has it, so alerts never see a series vanish.
            for status in sorted({*STATUSES, *counts}):
                family.add_metric([status], counts.get(status, 0))
        yield family

    def _cached_counts(self) -> dict[str, int] | None:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= JOBS_CACHE_SECONDS:
                try:
                    self._counts = self._count()
                except Exception as exc:  # noqa: BLE001 - a scrape must still answer with the other metrics
                    log.warning("counting jobs for metrics failed: %r", exc)
                    self._counts = None
                self._fetched_at = now
            return self._counts


@dataclass(frozen=True)
class Metrics:
    """The gateway's instruments on one registry per app: the shared request metrics plus its own."""

    registry: CollectorRegistry
    http: HttpMetrics
    upload_bytes: Counter
    publish_failures: Counter
    idempotent_replays: Counter

    @classmethod
    def create(cls, count_jobs: Callable[[], dict[str, int]]) -> Metrics:
        """Instruments on a fresh registry; `count_jobs` feeds the jobs-by-status gauge at scrape time."""
        registry = CollectorRegistry(auto_describe=True)
        registry.register(JobsByStatus(count_jobs))
        return cls(
            registry=registry,
            http=HttpMetrics.create("gateway", registry),
            upload_bytes=Counter("gateway_upload_bytes_total", "Bytes of video stored from accepted uploads.",
                                 registry=registry),
            publish_failures=Counter(
                "gateway_publish_failures_total",
                "Uploads whose job message could not be published (the upload was rolled back).",
                registry=registry,
            ),
            idempotent_replays=Counter(
                "gateway_idempotent_replays_total",
                "Uploads answered with the job an earlier upload with the same Idempotency-Key created.",
                registry=registry,
            ),
        )
