"""Prometheus instruments for the converter's jobs and retention reaper, on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    conversion_seconds: Histogram
    jobs: Counter
    reaper_deletions: Counter
    reaper_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        metrics = cls(
            conversion_seconds=Histogram(
                "converter_conversion_seconds", "Wall time of the ffmpeg runs that produced an MP3.",
                buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600), registry=registry),
            jobs=Counter("converter_jobs_total",
                         "Jobs finished by this converter: done, failed, or dropped (deleted by the user first).",
                         ["outcome"], registry=registry),
            reaper_deletions=Counter(
                "converter_reaper_deletions_total",
                "Files deleted by retention: kind=mp3 (expired results), video (of failed jobs).", ["kind"],
                registry=registry),
            reaper_errors=Counter("converter_reaper_errors_total",
                                  "Reaper passes cut short by an error (the next pass retries).", registry=registry),
        )
        # Every series exported from the start at 0, so rate() and alerts see them before the first event.
        for outcome in ("done", "failed", "dropped"):
            metrics.jobs.labels(outcome)
        for kind in ("mp3", "video"):
            metrics.reaper_deletions.labels(kind)
        return metrics
