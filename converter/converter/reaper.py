"""Retention reaper: a background thread that deletes expired MP3s, the videos of long-failed jobs, old expired and
failed jobs themselves, and the chunks of uploads that never finished."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from .jobs import Jobs
from .metrics import Metrics
from .storage import Bucket

log = logging.getLogger(__name__)

BATCH = 100  # jobs per query: a backlog (e.g. after downtime) is worked off in bounded pieces
MAX_BATCHES = 100  # per kind and pass; the rest waits for the next pass
ORPHAN_BATCH = 100  # abandoned uploads per bucket and sweep: one chunk delete each (a bucket scan on FerretDB)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def reap_once(*, jobs: Jobs, videos: Bucket, mp3s: Bucket, ttl: timedelta, job_retention: timedelta, now: datetime,
              metrics: Metrics, stopping: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """One retention pass; returns how many MP3s, videos and jobs this pass deleted.

    Expired and failed jobs are deleted job_retention after their last update, with any file they still reference.

    Safe with several replicas reaping at once: the file is deleted first (a repeated delete is a no-op), then
    the job is updated (or deleted) only if it is still in the state that was read, so a crash in between just
    repeats the delete next time, and the end state is the same whoever gets there first. (Counts are exact on
    MongoDB, and for deleted jobs on FerretDB too; FerretDB v1 may let two racing replicas both count one expired
    MP3 or deleted video.) Errors propagate: the caller logs them.
    """
    counts = {"mp3": 0, "video": 0, "job": 0}

    def expire_mp3(job: dict) -> None:
        if job.get("mp3_fid"):
            mp3s.delete(job["mp3_fid"])
        if jobs.mark_expired(job["_id"], job.get("mp3_fid")):
            counts["mp3"] += 1
            metrics.reaper_deletions.labels("mp3").inc()
            log.info("MP3 expired and deleted", extra={"job_id": job["_id"], "mp3_fid": job.get("mp3_fid")})

    def delete_video(job: dict) -> None:
        videos.delete(job["video_fid"])
        if jobs.forget_video(job["_id"], job["video_fid"]):
            counts["video"] += 1
            metrics.reaper_deletions.labels("video").inc()
            log.info("video of a failed job deleted", extra={"job_id": job["_id"], "video_fid": job["video_fid"]})

    def delete_job(job: dict) -> None:
        # Files first: once the job is gone nothing would point at them. Expired jobs' files went earlier, and a
        # repeated delete is a no-op; the planned MP3 id covers what a failed attempt may have stored.
        for bucket, fid in _referenced_files(job, videos=videos, mp3s=mp3s):
            bucket.delete(fid)
        if jobs.delete_final(job["_id"], job["status"], now - job_retention):
            counts["job"] += 1
            metrics.reaper_deletions.labels("job").inc()
            log.info("job deleted after retention", extra={"job_id": job["_id"], "status": job["status"]})

    _in_batches(lambda: jobs.expired_mp3s(now, BATCH), expire_mp3, stopping)
    _in_batches(lambda: jobs.stale_failed_videos(now - ttl, BATCH), delete_video, stopping)
    _in_batches(lambda: jobs.stale_final_jobs(now - job_retention, BATCH), delete_job, stopping)
    return counts


def _referenced_files(job: dict, *, videos: Bucket, mp3s: Bucket) -> list[tuple[Bucket, str]]:
    """(bucket, file id) of every file the job document names, each once."""
    mp3_fids = dict.fromkeys(fid for fid in (job.get("mp3_fid"), job.get("mp3_fid_planned")) if fid)
    return ([(videos, job["video_fid"])] if job.get("video_fid") else []) + [(mp3s, fid) for fid in mp3_fids]


def sweep_orphans(*, videos: Bucket, mp3s: Bucket, written_before: datetime, metrics: Metrics,
                  stopping: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Deletes the chunks of uploads abandoned before written_before (no files document: the gateway's upload or
    the converter's MP3 store died before finishing); returns how many files' chunks went, per bucket.

    At most ORPHAN_BATCH files per bucket, in one delete: a backlog takes several sweeps. The grace period
    (written_before) must be longer than any upload takes, as an upload's files document comes last.
    """
    counts = {"orphan_video": 0, "orphan_mp3": 0}
    for kind, bucket in (("orphan_video", videos), ("orphan_mp3", mp3s)):
        if stopping():
            break
        found = bucket.orphaned_files(written_before, ORPHAN_BATCH)
        gone = bucket.delete_orphans(found) if found else []
        if gone:
            counts[kind] = len(gone)
            metrics.reaper_deletions.labels(kind).inc(len(gone))
            log.info("chunks of abandoned uploads deleted",
                     extra={"bucket": kind.removeprefix("orphan_"), "files": len(gone),
                            "file_ids": [str(fid) for fid in gone[:10]]})
    return counts


def _in_batches(fetch: Callable[[], list[dict]], handle: Callable[[dict], None], stopping: Callable[[], bool]) -> None:
    # Every handled job leaves the query's result (by our update or a peer's), so fetching again moves on;
    # MAX_BATCHES bounds a pass should some job keep matching anyway.
    for _ in range(MAX_BATCHES):
        batch = fetch()
        for job in batch:
            if stopping():
                return
            handle(job)
        if len(batch) < BATCH:
            return


class Reaper:
    """Runs reap_once every interval_s in a daemon thread until stop(), and sweep_orphans with it every
    orphan_sweep_s (the first pass included); an error is logged, never fatal."""

    def __init__(self, *, jobs: Jobs, videos: Bucket, mp3s: Bucket, ttl: timedelta, interval_s: float,
                 metrics: Metrics, job_retention: timedelta = timedelta(days=30),
                 orphan_grace: timedelta = timedelta(hours=24), orphan_sweep_s: float = 3600,
                 clock: Callable[[], datetime] = _now, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._jobs, self._videos, self._mp3s = jobs, videos, mp3s
        self._metrics = metrics
        self._ttl, self._job_retention, self._interval = ttl, job_retention, interval_s
        self._orphan_grace, self._orphan_sweep_s = orphan_grace, orphan_sweep_s
        self._clock, self._monotonic = clock, monotonic
        self._next_sweep: float | None = None  # None: at the first pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._indexed = False

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Asks the thread to finish; waits briefly (it is a daemon, so a pass stuck on MongoDB cannot block exit)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self) -> dict[str, int] | None:
        """One pass with errors logged and counted; the counts (mp3, video, job, and orphan_video/orphan_mp3 when
        a sweep deleted some), or None if the pass failed."""
        try:
            if not self._indexed:
                self._jobs.ensure_retention_index()
                self._indexed = True
            now = self._clock()
            counts = reap_once(jobs=self._jobs, videos=self._videos, mp3s=self._mp3s, ttl=self._ttl,
                               job_retention=self._job_retention, now=now, metrics=self._metrics,
                               stopping=self._stop.is_set)
            if self._next_sweep is None or self._monotonic() >= self._next_sweep:
                # Scheduled before it runs: a sweep that keeps failing is not retried every pass (on FerretDB each
                # reads both buckets whole).
                self._next_sweep = self._monotonic() + self._orphan_sweep_s
                swept = sweep_orphans(videos=self._videos, mp3s=self._mp3s, metrics=self._metrics,
                                      written_before=now - self._orphan_grace, stopping=self._stop.is_set)
                counts |= {kind: n for kind, n in swept.items() if n}  # orphan kinds only when some went
        except Exception:  # noqa: BLE001 - the reaper must outlive MongoDB outages and bugs alike
            self._metrics.reaper_errors.inc()
            log.exception("retention pass failed; retrying in %.0f s", self._interval)
            return None
        if any(counts.values()):
            log.info("retention pass done", extra={"deleted": counts})
        return counts

    def _run(self) -> None:
        # First pass right away: a converter that restarts often must still get round to it.
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._interval)
