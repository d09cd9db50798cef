"""Jobs collection adapter for the converter: the job's status transitions, each stamping updated_at."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection

from mp3core.contract import CONVERTING, DONE, EXPIRED, FAILED, UNFINISHED
from mp3core.mongo import JobsCollection, retry_transient, utc_now


class Jobs(JobsCollection):
    """The converter's view of the `jobs` collection."""

    def __init__(self, collection: Collection, clock: Callable[[], datetime] = utc_now, *,
                 mp3_ttl: timedelta = timedelta(hours=24)) -> None:
        super().__init__(collection, clock)
        self._mp3_ttl = mp3_ttl

    @retry_transient
    def start_attempt(self, job_id: str) -> dict[str, Any] | None:
        """Atomically counts one more attempt and sets `converting`; None if the job is gone or finished.

        A retry after a lost reply may count one attempt twice; erring towards giving up sooner is fine.
        """
        return self._jobs.find_one_and_update(
            {"_id": job_id, "status": {"$in": list(UNFINISHED)}},
            {"$inc": {"attempts": 1}, "$set": {"status": CONVERTING, "updated_at": self._clock()}},
            return_document=ReturnDocument.AFTER)

    @retry_transient
    def plan_mp3_fid(self, job_id: str, candidate: str) -> str | None:
        """The job's MP3 file id: candidate on the first call, the stored one ever after (so retries overwrite)."""
        self._jobs.update_one({"_id": job_id, "mp3_fid_planned": None},
                              {"$set": {"mp3_fid_planned": candidate}})
        job = self._jobs.find_one({"_id": job_id}, {"mp3_fid_planned": 1})
        return job.get("mp3_fid_planned") if job else None

    @retry_transient
    def set_duration(self, job_id: str, duration_s: float | None) -> bool:
        """Stores the duration ffmpeg reported; False if the job is gone (deleted by its owner)."""
        return self._jobs.update_one({"_id": job_id}, {"$set": {"duration_s": duration_s}}).matched_count == 1

    # Not retried: progress is cosmetic, and minutes of retrying would stall ffmpeg, which waits for us to read it.
    def set_progress(self, job_id: str, percent: int) -> bool:
        """Raises progress to percent, never lowers it (a retry starts ffmpeg over); False if the job is gone."""
        return self._jobs.update_one({"_id": job_id}, {"$max": {"progress": percent}}).matched_count == 1

    @retry_transient
    def mark_done(self, job_id: str, mp3_fid: str, *, duration_s: float | None = None) -> str | None:
        """Sets `done`, progress 100, expires_at = now + the MP3's TTL and (unless None) the MP3's duration, only if
        the job is unfinished (see _end). Returns the job's status after the call (DONE: done now, or earlier by
        another attempt or by a retry of this call whose reply was lost; FAILED: another attempt gave up) or None
        if the job is gone."""
        now = self._clock()
        done = {"status": DONE, "mp3_fid": mp3_fid, "error": None, "progress": 100,
                "expires_at": now + self._mp3_ttl, "updated_at": now}
        if duration_s is not None:
            done["duration_s"] = round(duration_s, 3)
        return self._end(job_id, done)

    @retry_transient
    def mark_failed(self, job_id: str, reason: str) -> bool:
        """Sets `failed` with the reason on an unfinished job; True if the job is failed now: by this call, or
        earlier (then the first reason and time stand, and the failure may be announced again, e.g. after a crash
        before it was). False if the job is gone, done or expired."""
        return self._end(job_id, {"status": FAILED, "error": reason, "updated_at": self._clock()}) == FAILED

    def _end(self, job_id: str, fields: dict[str, Any]) -> str | None:
        """A job ends once: sets fields (an end status with its details) only on an unfinished job, so an end another
        attempt recorded first stands. Returns the job's status after the call; None if the job is gone."""
        if self._jobs.update_one({"_id": job_id, "status": {"$in": list(UNFINISHED)}},
                                 {"$set": fields}).matched_count == 1:
            return fields["status"]
        job = self._jobs.find_one({"_id": job_id}, {"status": 1})
        return job.get("status") if job else None

    # --- retention (the reaper) ------------------------------------------------------------------------

    @retry_transient
    def ensure_retention_index(self) -> None:
        """The indexes the reaper's queries use; creating an existing index is a no-op, so every replica may."""
        self._jobs.create_index([("status", ASCENDING), ("expires_at", ASCENDING)])
        self._jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])

    @retry_transient
    def expired_mp3s(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Done jobs whose expires_at has passed: [{"_id", "mp3_fid"}], oldest first."""
        return list(self._jobs.find({"status": DONE, "expires_at": {"$lte": now}}, {"mp3_fid": 1},
                                    sort=[("expires_at", ASCENDING)], limit=limit))

    @retry_transient
    def mark_expired(self, job_id: str, mp3_fid: str | None) -> bool:
        """`done` -> `expired` with mp3_fid null, only if the job still holds that MP3; True if this call did it.

        Conditional, so on MongoDB exactly one of several replicas reaping at once records (and counts) it.
        FerretDB v1 does not isolate conditional updates: there two may both "match"; the end state is the same.
        """
        result = self._jobs.update_one({"_id": job_id, "status": DONE, "mp3_fid": mp3_fid}, {"$set": {
            "status": EXPIRED, "mp3_fid": None, "updated_at": self._clock()}})
        return result.matched_count == 1

    @retry_transient
    def stale_failed_videos(self, failed_before: datetime, limit: int) -> list[dict[str, Any]]:
        """Failed jobs last updated before failed_before that still have a video: [{"_id", "video_fid"}]."""
        return list(self._jobs.find({"status": FAILED, "updated_at": {"$lte": failed_before},
                                     "video_fid": {"$ne": None}}, {"video_fid": 1},
                                    sort=[("updated_at", ASCENDING)], limit=limit))

    @retry_transient
    def forget_video(self, job_id: str, video_fid: str) -> bool:
        """Sets video_fid null once the video is deleted, only if still that one; True if this call did it.

        updated_at is left alone: the job's visible state does not change.
        """
        result = self._jobs.update_one({"_id": job_id, "status": FAILED, "video_fid": video_fid},
                                       {"$set": {"video_fid": None}})
        return result.matched_count == 1

    @retry_transient
    def stale_final_jobs(self, updated_before: datetime, limit: int) -> list[dict[str, Any]]:
        """Expired and failed jobs last updated before updated_before, oldest first, with the files they may still
        reference: [{"_id", "status", "video_fid", "mp3_fid", "mp3_fid_planned"}] (missing fields left out)."""
        return list(self._jobs.find({"status": {"$in": [EXPIRED, FAILED]}, "updated_at": {"$lte": updated_before}},
                                    {"status": 1, "video_fid": 1, "mp3_fid": 1, "mp3_fid_planned": 1},
                                    sort=[("updated_at", ASCENDING)], limit=limit))

    @retry_transient
    def delete_final(self, job_id: str, status: str, updated_before: datetime) -> bool:
        """Deletes the job only if it is still in that final status and last updated before updated_before; True if
        this call deleted it.

        delete_one's deleted_count is exact on FerretDB v1 too, so of several replicas reaping at once only one
        counts it; a job that changed since it was read (a newer updated_at) is kept. A retry after a lost reply
        finds nothing and answers False: the job is gone either way.
        """
        result = self._jobs.delete_one({"_id": job_id, "status": status, "updated_at": {"$lte": updated_before}})
        return result.deleted_count == 1
