"""Prometheus metrics for the converter's jobs and retention reaper (the consumer loop defines its own)."""

from prometheus_client import Counter, Histogram

CONVERSION_SECONDS = Histogram(
    "converter_conversion_seconds", "Wall time of the ffmpeg runs that produced an MP3.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 2400, 3600))
JOBS = Counter("converter_jobs_total",
               "Jobs finished by this converter: done, failed, or dropped (deleted by the user first).", ["outcome"])
REAPER_DELETIONS = Counter("converter_reaper_deletions_total",
                           "Files deleted by retention: kind=mp3 (expired results), video (of failed jobs).", ["kind"])
REAPER_ERRORS = Counter("converter_reaper_errors_total", "Reaper passes cut short by an error (the next pass retries).")

# Export every series from the start at 0, so rate() and alerts see them before the first event.
for _outcome in ("done", "failed", "dropped"):
    JOBS.labels(_outcome)
for _kind in ("mp3", "video"):
    REAPER_DELETIONS.labels(_kind)
