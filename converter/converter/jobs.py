"""Jobs collection adapter for the converter: the job's status transitions, each stamping updated_at."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import tenacity
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure

log = logging.getLogger(__name__)

# MongoDB down or failing over: retry in place rather than redoing a whole conversion. After five minutes
# the error reaches the consumer, which requeues the message with its own backoff.
retry_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(ConnectionFailure),
    wait=tenacity.wait_exponential(multiplier=1, min=1, max=30),
    stop=tenacity.stop_after_delay(300),
    reraise=True,
    before_sleep=lambda state: log.warning(
        "MongoDB unavailable in %s (%s); retrying in %.0f s", state.fn.__name__ if state.fn else "?",
        state.outcome.exception() if state.outcome else "?", state.next_action.sleep if state.next_action else 0),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Jobs:
    """The converter's view of the `jobs` collection."""

    def __init__(self, collection: Collection, clock=_now) -> None:  # noqa: ANN001
        self._jobs = collection
        self._clock = clock

    @retry_transient
    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.find_one({"_id": job_id})

    @retry_transient
    def start_attempt(self, job_id: str) -> dict[str, Any] | None:
        """Atomically counts one more attempt and sets `converting`; None if the job is gone or finished.

        A retry after a lost reply may count one attempt twice; erring towards giving up sooner is fine.
        """
        return self._jobs.find_one_and_update(
            {"_id": job_id, "status": {"$in": ["queued", "converting"]}},
            {"$inc": {"attempts": 1}, "$set": {"status": "converting", "updated_at": self._clock()}},
            return_document=ReturnDocument.AFTER)

    @retry_transient
    def plan_mp3_fid(self, job_id: str, candidate: str) -> str | None:
        """The job's MP3 file id: candidate on the first call, the stored one ever after (so retries overwrite)."""
        self._jobs.update_one({"_id": job_id, "mp3_fid_planned": None},
                              {"$set": {"mp3_fid_planned": candidate}})
        job = self._jobs.find_one({"_id": job_id}, {"mp3_fid_planned": 1})
        return job.get("mp3_fid_planned") if job else None

    @retry_transient
    def mark_done(self, job_id: str, mp3_fid: str) -> None:
        self._jobs.update_one({"_id": job_id}, {"$set": {
            "status": "done", "mp3_fid": mp3_fid, "error": None, "updated_at": self._clock()}})

    @retry_transient
    def mark_failed(self, job_id: str, reason: str) -> bool:
        """Sets `failed` with the reason unless the job is gone or already done; True if it was marked."""
        result = self._jobs.update_one({"_id": job_id, "status": {"$ne": "done"}}, {"$set": {
            "status": "failed", "error": reason, "updated_at": self._clock()}})
        return result.matched_count == 1
