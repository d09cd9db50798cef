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
# It also covers an election: a replica set picks a new primary within about 12 s, so a write that finds no
# primary fails here and is retried by retry_transient (consumers) or answered 503 (gateway).
TIMEOUT_MS = 5000

# What every service's writes and reads need to survive the loss of a replica set member (docs/ha.md).
# Pinned here, not left to MONGO_URI: pymongo lets these keywords win over the URI's options, so a URI
# written for a single server (w=1, a secondary read preference) cannot weaken them. The URI brings the
# hosts, the credentials, `replicaSet=` and TLS. FerretDB (local runs and tests) is a standalone server: it
# accepts the same write and read concerns, and pymongo sends no retryable-write transaction numbers there.
DURABILITY = {
    # A write is acknowledged once a majority of members (2 of 3) have it in their journal: a job state,
    # a GridFS chunk or files document that was acknowledged cannot be rolled back by a failover. Chunks
    # are majority writes too: if they were not, a failover during an upload could roll back its first
    # chunks while the files document, written later on the new primary, still appeared complete.
    # No wtimeout: a primary that cannot reach a majority steps down within the election timeout
    # (10 s), which ends the wait with an error the driver retries on the new primary.
    "w": "majority",
    "journal": True,  # what replica sets do by default for majority writes (writeConcernMajorityJournalDefault)
    # Reads see only majority-committed data, from the primary: a job's status as read by the gateway
    # or a consumer is never one a failover takes back, and never older than a write already acknowledged.
    "readConcernLevel": "majority",
    "readPreference": "primary",
    # A write or read cut off by a failover is sent once more to the new primary; a retried write carries a
    # transaction number, so the server applies it at most once (insert_many of chunks, find_one_and_update).
    "retryWrites": True,
    "retryReads": True,
}


def connect(uri: str) -> Database:
    """The URI's database on one pooled, thread-safe client per process; created at start, never at import.

    Every collection reached through it inherits the client's write concern, read concern and read
    preference (DURABILITY), so the services need no per-collection options."""
    client: MongoClient = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=TIMEOUT_MS,
                                      connectTimeoutMS=TIMEOUT_MS, **DURABILITY)
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
