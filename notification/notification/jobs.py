"""Jobs collection adapter for notification: read the job, record that its email went out."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pymongo.collection import Collection

from mp3core.mongo import retry_transient


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Jobs:
    """Notification's view of the `jobs` collection."""

    def __init__(self, collection: Collection, clock=_now) -> None:  # noqa: ANN001
        self._jobs = collection
        self._clock = clock

    @retry_transient
    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.find_one({"_id": job_id})

    @retry_transient
    def mark_notified(self, job_id: str) -> None:
        self._jobs.update_one({"_id": job_id}, {"$set": {"notified_at": self._clock()}})
