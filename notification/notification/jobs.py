"""Jobs collection adapter for notification: read the job, record that its email went out."""

from __future__ import annotations

from mp3core.mongo import JobsCollection, retry_transient


class Jobs(JobsCollection):
    """Notification's view of the `jobs` collection."""

    @retry_transient
    def mark_notified(self, job_id: str) -> None:
        self._jobs.update_one({"_id": job_id}, {"$set": {"notified_at": self._clock()}})
