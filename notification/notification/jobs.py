"""Jobs collection adapter for notification: read the job, record that its email went out or could not."""

from __future__ import annotations

from pymongo import ReturnDocument

from mp3core.mongo import JobsCollection, retry_transient


class Jobs(JobsCollection):
    """Notification's view of the `jobs` collection."""

    @retry_transient
    def mark_notified(self, job_id: str) -> None:
        self._jobs.update_one({"_id": job_id}, {"$set": {"notified_at": self._clock()}})

    @retry_transient
    def record_unavailable(self, job_id: str, error: str) -> float:
        """Records a delivery that could not hand the mail over; seconds since the first such delivery.

        Kept in the job, not the message, so it survives redeliveries and moves to the back of the queue.
        """
        now = self._clock()
        doc = self._jobs.find_one_and_update(
            {"_id": job_id},
            {"$min": {"notify_first_failed_at": now}, "$inc": {"notify_attempts": 1},
             "$set": {"notify_error": error}},
            return_document=ReturnDocument.AFTER)
        first = (doc or {}).get("notify_first_failed_at") or now
        return (now - first).total_seconds()

    @retry_transient
    def mark_notify_failed(self, job_id: str, reason: str) -> None:
        """The email was given up: the job says so (and why), so nobody waits for a mail that will not come."""
        self._jobs.update_one({"_id": job_id}, {"$set": {"notify_failed_at": self._clock(), "notify_error": reason}})
