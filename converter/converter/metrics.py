"""Prometheus instruments for the converter's jobs and retention reaper, on the service's registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from mp3core.metrics import counter


@dataclass(frozen=True)
class Metrics:
    conversion_seconds: Histogram
    jobs: Counter
    reaper_deletions: Counter
    reaper_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            conversion_seconds=Histogram(
                "converter_conversion_seconds", "Wall time of the ffmpeg runs that produced an MP3.",
                buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600), registry=registry),
            jobs=counter(registry, "converter_jobs_total",
                         "Jobs finished by this converter: done, failed, or dropped (deleted by the user first).",
                         "outcome", ("done", "failed", "dropped")),
            reaper_deletions=counter(registry, "converter_reaper_deletions_total",
                                     "Deleted by retention: kind=mp3 (expired results), video (of failed jobs), job "
                                     "(expired and failed job documents past JOB_RETENTION_DAYS), orphan_video and "
                                     "orphan_mp3 (chunks of uploads that never finished).",
                                     "kind", ("mp3", "video", "job", "orphan_video", "orphan_mp3")),
            reaper_errors=counter(registry, "converter_reaper_errors_total",
                                  "Reaper passes cut short by an error (the next pass retries)."),
        )
