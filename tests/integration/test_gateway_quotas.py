"""The gateway's per-user quota queries and the Idempotency-Key expiry against FerretDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import gridfs
import pytest

from gateway.jobs import CLAIM_PURGE_EVERY, IDEMPOTENCY_WINDOW, Jobs, claim_id, new_job
from gateway.storage import Storage

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALICE, BOB = "alice@example.com", "bob@example.com"


def test_jobs_in_flight_count_queued_and_converting_of_the_owner_only(mongo_db):
    jobs = Jobs(mongo_db)
    for n, (owner, status) in enumerate([(ALICE, "queued"), (ALICE, "converting"), (ALICE, "done"),
                                         (ALICE, "failed"), (ALICE, "expired"), (BOB, "queued")]):
        doc = new_job(job_id=f"{n:032x}", owner=owner, filename="a.mp4", video_fid=f"{n:024x}", now=NOW)
        jobs.create({**doc, "status": status})
    assert jobs.count_in_flight(ALICE) == 2
    assert jobs.count_in_flight(BOB) == 1
    assert jobs.count_in_flight("carol@example.com") == 0


def test_bytes_stored_sum_committed_videos_and_mp3s_of_the_owner(mongo_db):
    storage = Storage(mongo_db)
    for size in (1000, 2500):
        writer = storage.open_video_upload("a.mp4", {"owner": ALICE, "job_id": "j"})
        writer.write(b"v" * size)
        writer.close()
    unfinished = storage.open_video_upload("b.mp4", {"owner": ALICE, "job_id": "k"})
    unfinished.write(b"v" * 300_000)  # chunks without a files document yet: not counted
    mp3s = gridfs.GridFSBucket(mongo_db, bucket_name="mp3s")
    mp3s.upload_from_stream("a.mp3", b"m" * 700, metadata={"owner": ALICE})
    mp3s.upload_from_stream("b.mp3", b"m" * 999, metadata={"owner": BOB})
    assert storage.bytes_stored(ALICE) == 1000 + 2500 + 700
    assert storage.bytes_stored(BOB) == 999
    assert storage.bytes_stored("carol@example.com") == 0
    unfinished.abort()


def test_idempotency_keys_expire_even_without_ttl_index_support(mongo_db):
    """FerretDB 1.24 refuses expireAfterSeconds; the gateway then purges expired claims itself."""
    jobs = Jobs(mongo_db)
    claims = mongo_db["idempotency_keys"]
    old = NOW - IDEMPOTENCY_WINDOW - timedelta(minutes=1)
    claims.insert_one({"_id": claim_id(ALICE, "old"), "job_id": "j0", "created_at": old})
    claims.insert_one({"_id": f"{claim_id(ALICE, 'old')}:j0", "taken_at": old, "created_at": old})  # a marker
    jobs.create(new_job(job_id=f"{1:032x}", owner=ALICE, filename="a.mp4", video_fid=f"{1:024x}", now=NOW))

    assert jobs.claim_idempotency_key(ALICE, "new", f"{1:032x}", now=NOW) is None

    ttl = [ix for ix in claims.list_indexes() if "expireAfterSeconds" in ix]
    if ttl:  # a server with TTL indexes (MongoDB): it expires the claims itself
        assert ttl[0]["expireAfterSeconds"] == IDEMPOTENCY_WINDOW.total_seconds()
    else:
        assert [doc["_id"] for doc in claims.find()] == [claim_id(ALICE, "new")]
    # The purge runs at most once per CLAIM_PURGE_EVERY.
    claims.insert_one({"_id": claim_id(BOB, "old"), "job_id": "j9", "created_at": old})
    jobs.claim_idempotency_key(ALICE, "other", f"{1:032x}", now=NOW + timedelta(minutes=1))
    assert claims.count_documents({"_id": claim_id(BOB, "old")}) == 1
    if not ttl:
        jobs.claim_idempotency_key(ALICE, "third", f"{1:032x}", now=NOW + CLAIM_PURGE_EVERY)
        assert claims.count_documents({"_id": claim_id(BOB, "old")}) == 0
