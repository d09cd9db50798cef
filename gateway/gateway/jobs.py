"""MongoDB `jobs` collection adapter (plus the Idempotency-Key claims) and the public job view."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pymongo
from mp3core.contract import CONVERTING, OPTION_NAMES, QUEUED, Options
from mp3core.errors import ServiceUnavailable
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

log = logging.getLogger(__name__)

# How long an Idempotency-Key stays bound to its first job (docs/design.md).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
# A takeover marker this old belongs to a request that died between the marker and the claim update.
TAKEOVER_ABANDONED_AFTER = timedelta(seconds=30)
# A taker that lost a takeover waits this long (times the round) for the winner to rebind the claim.
TAKEOVER_WAIT_S = 0.05
# Where the server has no TTL indexes (FerretDB 1.x), the gateway deletes expired claims itself this often.
CLAIM_PURGE_EVERY = timedelta(hours=1)
# MongoDB's code for a feature the server does not implement (FerretDB's answer to expireAfterSeconds).
NOT_IMPLEMENTED = 238
IN_FLIGHT = (QUEUED, CONVERTING)


class Jobs:
    """The `jobs` collection, and `idempotency_keys`: one document per (owner, key) whose unique `_id`
    lets exactly one of several concurrent uploads with the same key keep its job."""

    def __init__(self, db: Database) -> None:
        self._jobs = db["jobs"]
        self._claims = db["idempotency_keys"]
        self._indexes_ready = False
        self._indexes_lock = threading.Lock()
        self._claims_ttl: bool | None = None  # None: not yet known whether the server expires claims itself
        self._claims_purged_at: datetime | None = None

    def create(self, job: dict) -> None:
        self._jobs.insert_one(job)

    def get(self, job_id: str) -> dict | None:
        return self._jobs.find_one({"_id": job_id})

    def delete(self, job_id: str) -> None:
        self._jobs.delete_one({"_id": job_id})

    def take(self, job_id: str, *, owner: str | None) -> dict | None:
        """Delete the job (only if `owner` owns it, unless owner is None) and return it as it was.

        Of several concurrent takes only one gets the job: FerretDB lets two find_one_and_delete calls both
        return the document, but counts a deleted row once. A converter write between the read and the
        delete is not lost: the converter itself deletes the MP3 of a job that has gone.
        """
        query = {"_id": job_id} if owner is None else {"_id": job_id, "owner": owner}
        job = self._jobs.find_one(query)
        if job is None or not self._jobs.delete_one({"_id": job_id}).deleted_count:
            return None
        return job

    def list_for_owner(self, owner: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
        """One page of the owner's jobs, newest first, and how many they have in all."""
        self._ensure_indexes()
        cursor = (
            self._jobs.find({"owner": owner})
            # _id breaks ties between jobs created in the same millisecond so pages never overlap.
            .sort([("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return list(cursor), self._jobs.count_documents({"owner": owner})

    def count_in_flight(self, owner: str) -> int:
        """How many of `owner`'s jobs are queued or converting (the per-user quota)."""
        self._ensure_indexes()
        return self._jobs.count_documents({"owner": owner, "status": {"$in": list(IN_FLIGHT)}})

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each status (for the metrics scrape)."""
        rows = self._jobs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        return {str(row["_id"]): int(row["n"]) for row in rows}

    def find_idempotent(self, owner: str, key: str, *, now: datetime) -> dict | None:
        """The job that `key` is bound to for `owner`, if it was used within the window."""
        claim = self._claims.find_one({"_id": claim_id(owner, key)})
        if claim is None or _aware(claim["created_at"]) < now - IDEMPOTENCY_WINDOW:
            return None
        return self._jobs.find_one({"_id": claim["job_id"]})

    def claim_idempotency_key(self, owner: str, key: str, job_id: str, *, now: datetime) -> dict | None:
        """Bind `key` to our freshly inserted job; return the other job that holds it, None if we do.

        Two uploads with the same key can both pass find_idempotent (it runs before their bodies
        are read). The claim's unique _id lets only one of them insert it; the loser gets the winner's
        job back and must delete its own. A claim whose job is outside the window or was deleted
        is taken over by one taker only, too.
        """
        self._expire_claims(now)
        cid = claim_id(owner, key)
        for attempt in range(1, 6):  # each round means another request changed the claim under us
            try:
                self._claims.insert_one({"_id": cid, "job_id": job_id, "created_at": now})
                return None
            except DuplicateKeyError:
                pass
            claim = self._claims.find_one({"_id": cid})
            if claim is None:
                continue  # released meanwhile (a rolled-back upload): try inserting again
            if claim["job_id"] == job_id:
                return None
            if _aware(claim["created_at"]) >= now - IDEMPOTENCY_WINDOW:
                holder = self._jobs.find_one({"_id": claim["job_id"]})
                if holder is not None:
                    return holder
            # A stale claim: FerretDB does not apply a filtered update atomically (two takers would both
            # match), so the takeover is decided by inserting a marker whose unique _id names this claim and
            # its stale job; one taker inserts it, the others come round again and find the winner's job.
            marker = f"{cid}:{claim['job_id']}"
            try:
                # created_at: the TTL index (or the purge) removes markers like claims.
                self._claims.insert_one({"_id": marker, "taken_at": now, "created_at": now})
            except DuplicateKeyError:
                self._forget_abandoned_marker(marker, now)
                time.sleep(TAKEOVER_WAIT_S * attempt)
                continue
            # Upsert: the stale job's own delete may have released the claim meanwhile.
            self._claims.update_one({"_id": cid}, {"$set": {"job_id": job_id, "created_at": now}}, upsert=True)
            # Markers only matter while a slow taker may still act on the same stale claim: drop old ones.
            self._claims.delete_many({"_id": {"$regex": f"^{cid}:"}, "taken_at": {"$lt": now - IDEMPOTENCY_WINDOW}})
            return None
        raise ServiceUnavailable("too many concurrent uploads with this Idempotency-Key, try again")

    def _forget_abandoned_marker(self, marker: str, now: datetime) -> None:
        """A marker whose taker died before moving the claim would lock the key for good: past
        TAKEOVER_ABANDONED_AFTER it is deleted (delete_one is atomic, so one request deletes it) and retried."""
        held = self._claims.find_one({"_id": marker})
        if held is not None and _aware(held["taken_at"]) < now - TAKEOVER_ABANDONED_AFTER:
            self._claims.delete_one({"_id": marker, "taken_at": held["taken_at"]})

    def release_idempotency_key(self, owner: str, key: str, job_id: str) -> None:
        """Unbind `key` if it still points at `job_id` (the job was rolled back or deleted)."""
        self._claims.delete_one({"_id": claim_id(owner, key), "job_id": job_id})

    def _expire_claims(self, now: datetime) -> None:
        """Claims older than the window go: by a TTL index where the server has them, else by a purge here.

        FerretDB 1.24 answers expireAfterSeconds with NotImplemented; there the claims would otherwise grow
        forever, so the first claim after CLAIM_PURGE_EVERY deletes the expired ones (one indexed query).
        """
        if self._claims_ttl is None:
            with self._indexes_lock:
                if self._claims_ttl is None:
                    self._claims_ttl = self._create_claims_ttl_index()
        if self._claims_ttl:
            return
        if self._claims_purged_at is not None and now - self._claims_purged_at < CLAIM_PURGE_EVERY:
            return
        self._claims_purged_at = now
        purged = self.purge_expired_claims(now)
        if purged:
            log.info("expired Idempotency-Key claims purged", extra={"claims": purged})

    def _create_claims_ttl_index(self) -> bool:
        try:
            self._claims.create_index([("created_at", pymongo.ASCENDING)], name="claims_ttl",
                                      expireAfterSeconds=int(IDEMPOTENCY_WINDOW.total_seconds()))
            return True
        except OperationFailure as exc:
            if exc.code != NOT_IMPLEMENTED:
                raise
            log.info("the database has no TTL indexes: expired Idempotency-Key claims are purged by the gateway")
            self._claims.create_index([("created_at", pymongo.ASCENDING)], name="claims_created_at")
            return False

    def purge_expired_claims(self, now: datetime) -> int:
        """Delete claims (and takeover markers) older than the window; how many went."""
        return self._claims.delete_many({"created_at": {"$lt": now - IDEMPOTENCY_WINDOW}}).deleted_count

    def _ensure_indexes(self) -> None:
        # Created on first use, not at start, so the app starts (and answers 503) while MongoDB is down.
        if self._indexes_ready:
            return
        with self._indexes_lock:
            if not self._indexes_ready:
                # GET /jobs: equality on owner, then the sort; also serves count_documents({"owner"}).
                self._jobs.create_index([("owner", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
                self._indexes_ready = True


def claim_id(owner: str, key: str) -> str:
    """The claim document's _id: fixed length whatever the email and key, and unique per pair."""
    return hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()


def new_job(
    *,
    job_id: str,
    owner: str,
    filename: str,
    video_fid: str,
    now: datetime,
    options: Options | None = None,
    idempotency_key: str | None = None,
) -> dict:
    """The document the gateway inserts for an accepted upload (layout fixed by docs/design.md)."""
    return {
        "_id": job_id,
        "owner": owner,
        "status": QUEUED,
        "filename": filename,
        "video_fid": video_fid,
        "mp3_fid": None,
        "error": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "notified_at": None,
        "options": (options or Options()).to_dict(),
        "progress": 0,
        "duration_s": None,
        "expires_at": None,
        "idempotency_key": idempotency_key,
    }


def job_view(job: dict) -> dict:
    """What a client may see of a job: no owner, no internal fids or counters."""
    options = job.get("options") or {}
    return {
        "job_id": job["_id"],
        "status": job["status"],
        "progress": _progress(job.get("progress")),
        "mp3_fid": job.get("mp3_fid"),
        "error": job.get("error"),
        "filename": job.get("filename"),
        "duration_s": job.get("duration_s"),
        # Jobs from before options existed have none: show every option unset (= the defaults).
        "options": {name: options.get(name) for name in OPTION_NAMES},
        "created_at": _iso(job.get("created_at")),
        "updated_at": _iso(job.get("updated_at")),
        "expires_at": _iso(job.get("expires_at")),
    }


def _progress(value: object) -> int:
    # Written by the converter as an int 0..100; anything else (absent, null) reads as not started.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, min(100, int(value)))


def _aware(value: datetime) -> datetime:
    # BSON dates are UTC; a client created without tz_aware hands them back naive.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
