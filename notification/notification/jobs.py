"""Jobs collection adapter for notification: read the job, record that its email went out."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import tenacity
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure

log = logging.getLogger(__name__)

# MongoDB down or failing over: retry in place. After five minutes the error reaches the consumer, which
# requeues the message with its own backoff.
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
