"""MongoDB helpers every service uses the same way: the client and the retry of transient failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import tenacity
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

log = logging.getLogger(__name__)

# A call waiting on an unreachable MongoDB gives up after this (an HTTP request then answers 503).
TIMEOUT_MS = 5000


def connect(uri: str) -> Database:
    """The URI's database on one pooled, thread-safe client per process; created at start, never at import."""
    client: MongoClient = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=TIMEOUT_MS,
                                      connectTimeoutMS=TIMEOUT_MS)
    return client.get_default_database()


# MongoDB down or failing over: a consumer retries in place rather than redoing a whole job. After five
# minutes the error reaches the consumer loop, which requeues the message with its own backoff.
retry_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(ConnectionFailure),
    wait=tenacity.wait_exponential(multiplier=1, min=1, max=30),
    stop=tenacity.stop_after_delay(300),
    reraise=True,
    before_sleep=lambda state: log.warning(
        "MongoDB unavailable in %s (%s); retrying in %.0f s", state.fn.__name__ if state.fn else "?",
        state.outcome.exception() if state.outcome else "?", state.next_action.sleep if state.next_action else 0),
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class JobsCollection:
    """Base of each consumer's view of the `jobs` collection: the collection, a clock for the timestamps it
    writes, and reading one job. Each service adds the transitions it owns."""

    def __init__(self, collection: Collection, clock: Callable[[], datetime] = utc_now) -> None:
        self._jobs = collection
        self._clock = clock

    @retry_transient
    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.find_one({"_id": job_id})
