"""The gateway's MongoDB adapters against FerretDB: every Jobs method, the Idempotency-Key claim, Storage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import gridfs
import pymongo
import pytest
from bson import ObjectId
from mp3core.errors import NotFound, ServiceUnavailable
from pymongo.database import Database

from gateway.jobs import IDEMPOTENCY_WINDOW, TAKEOVER_ABANDONED_AFTER, Jobs, claim_id, new_job
from gateway.storage import Storage

pytestmark = pytest.mark.integration

# Whole milliseconds: BSON dates keep no more, so documents read back compare equal.
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def jobs(mongo_db: Database) -> Jobs:
    return Jobs(mongo_db)


def job(n: int, owner: str = ALICE, *, minutes: int = 0, status: str = "queued") -> dict:
    doc = new_job(job_id=f"{n:032x}", owner=owner, filename=f"clip{n}.mp4", video_fid=f"{n:024x}",
                  now=NOW + timedelta(minutes=minutes))
    return {**doc, "status": status}


# ---------------------------------------------------------------- jobs


def test_create_get_delete(jobs):
    doc = job(1)
    jobs.create(doc)
    assert jobs.get(doc["_id"]) == doc
    assert jobs.get(f"{2:032x}") is None
    jobs.delete(doc["_id"])
    assert jobs.get(doc["_id"]) is None
    jobs.delete(doc["_id"])  # deleting what is gone is fine (a rollback may run after a failed insert)


def test_create_refuses_a_second_job_with_the_same_id(jobs):
    jobs.create(job(1))
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        jobs.create(job(1))


def test_take_deletes_only_the_owners_job_unless_admin(jobs):
    jobs.create(job(1))
    assert jobs.take(f"{1:032x}", owner=BOB) is None
    assert jobs.get(f"{1:032x}") is not None
    assert jobs.take(f"{1:032x}", owner=ALICE) == job(1)
    assert jobs.get(f"{1:032x}") is None
    jobs.create(job(2))
    assert jobs.take(f"{2:032x}", owner=None)["_id"] == f"{2:032x}"  # an admin
    assert jobs.take(f"{2:032x}", owner=None) is None


@pytest.mark.parametrize("round_", range(5))
def test_of_two_concurrent_takes_only_one_gets_the_job(mongo_db, round_):
    Jobs(mongo_db).create(job(round_))
    start = threading.Barrier(2)
    taken: list[dict | None] = []

    def take() -> None:
        start.wait(timeout=10)
        taken.append(Jobs(mongo_db).take(f"{round_:032x}", owner=ALICE))

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(taken, key=lambda d: d is not None) == [None, job(round_)]


def test_list_for_owner_pages_newest_first_and_counts(jobs):
    for n in (3, 1, 5, 2, 4):
        jobs.create(job(n, minutes=n))
    jobs.create(job(9, owner=BOB, minutes=9))

    pages = [jobs.list_for_owner(ALICE, limit=2, offset=offset) for offset in (0, 2, 4, 6)]

    assert [[d["_id"] for d in page] for page, _ in pages] == [
        [f"{5:032x}", f"{4:032x}"], [f"{3:032x}", f"{2:032x}"], [f"{1:032x}"], []]
    assert {total for _, total in pages} == {5}
    assert jobs.list_for_owner("nobody@example.com", limit=10, offset=0) == ([], 0)


def test_list_breaks_created_at_ties_by_id_so_pages_never_overlap(jobs):
    for n in (0xA, 0xC, 0xB):
        jobs.create(job(n))
    pages = [jobs.list_for_owner(ALICE, limit=1, offset=offset)[0] for offset in range(3)]
    assert [d["_id"] for page in pages for d in page] == [f"{0xC:032x}", f"{0xB:032x}", f"{0xA:032x}"]


def test_listing_creates_the_owner_created_at_index(mongo_db, jobs):
    jobs.list_for_owner(ALICE, limit=1, offset=0)
    keys = [index["key"] for index in mongo_db["jobs"].index_information().values()]
    assert [("owner", 1), ("created_at", -1)] in keys


def test_count_by_status(jobs):
    assert jobs.count_by_status() == {}
    for n, status in enumerate(["queued", "done", "done", "failed", "converting"]):
        jobs.create(job(n, status=status))
    assert jobs.count_by_status() == {"queued": 1, "done": 2, "failed": 1, "converting": 1}


# ---------------------------------------------------------------- Idempotency-Key claims


def test_first_claim_binds_the_key_and_a_second_gets_the_first_job(jobs):
    jobs.create(job(1))
    jobs.create(job(2))
    assert jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW) is None
    assert jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW) is None  # the same job again: a no-op

    holder = jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=NOW + timedelta(seconds=1))

    assert holder == job(1)
    assert jobs.find_idempotent(ALICE, "k", now=NOW + timedelta(hours=1)) == job(1)


def test_other_owner_or_key_is_another_claim(jobs):
    for n, owner in ((1, ALICE), (2, BOB), (3, ALICE)):
        jobs.create(job(n, owner))
    assert jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW) is None
    assert jobs.claim_idempotency_key(BOB, "k", f"{2:032x}", now=NOW) is None
    assert jobs.claim_idempotency_key(ALICE, "k2", f"{3:032x}", now=NOW) is None
    assert jobs.find_idempotent(BOB, "k", now=NOW)["_id"] == f"{2:032x}"


@pytest.mark.parametrize("why", ["expired", "job-deleted"])
def test_a_stale_claim_is_taken_over(jobs, why):
    jobs.create(job(1))
    jobs.create(job(2))
    jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW)
    later = NOW + IDEMPOTENCY_WINDOW + timedelta(seconds=1) if why == "expired" else NOW + timedelta(minutes=1)
    if why == "job-deleted":
        jobs.delete(f"{1:032x}")

    assert jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=later) is None
    assert jobs.find_idempotent(ALICE, "k", now=later)["_id"] == f"{2:032x}"


def test_a_takeover_whose_taker_died_does_not_lock_the_key(mongo_db, jobs):
    """A request that inserted its takeover marker and died before moving the claim: while the marker is
    fresh another taker backs off (503); once it is abandoned, the next upload takes the key over."""
    jobs.create(job(2))
    jobs.claim_idempotency_key(ALICE, "k", "0" * 32, now=NOW)  # its job no longer exists: a stale claim
    mongo_db["idempotency_keys"].insert_one({"_id": f"{claim_id(ALICE, 'k')}:{'0' * 32}", "taken_at": NOW})

    with pytest.raises(ServiceUnavailable):
        jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=NOW + timedelta(seconds=1))
    later = NOW + TAKEOVER_ABANDONED_AFTER + timedelta(seconds=1)
    assert jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=later) is None
    assert jobs.find_idempotent(ALICE, "k", now=later)["_id"] == f"{2:032x}"


def test_old_takeover_markers_are_dropped_by_the_next_takeover(mongo_db, jobs):
    cid = claim_id(ALICE, "k")
    mongo_db["idempotency_keys"].insert_one({"_id": f"{cid}:{'9' * 32}", "taken_at": NOW - IDEMPOTENCY_WINDOW * 2})
    jobs.create(job(2))
    jobs.claim_idempotency_key(ALICE, "k", "0" * 32, now=NOW)
    assert jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=NOW) is None
    markers = {doc["_id"] for doc in mongo_db["idempotency_keys"].find({"_id": {"$regex": f"^{cid}:"}})}
    assert markers == {f"{cid}:{'0' * 32}"}


@pytest.mark.parametrize(
    ("age", "found"),
    [(timedelta(0), True), (IDEMPOTENCY_WINDOW - timedelta(seconds=1), True),
     (IDEMPOTENCY_WINDOW + timedelta(seconds=1), False)],
    ids=["fresh", "just-inside", "just-outside"],
)
def test_find_idempotent_honours_the_window(jobs, age, found):
    jobs.create(job(1))
    jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW)
    assert (jobs.find_idempotent(ALICE, "k", now=NOW + age) is not None) is found


def test_find_idempotent_unknown_key_or_deleted_job_is_none(jobs):
    assert jobs.find_idempotent(ALICE, "k", now=NOW) is None
    jobs.create(job(1))
    jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW)
    jobs.delete(f"{1:032x}")
    assert jobs.find_idempotent(ALICE, "k", now=NOW) is None


def test_claims_read_by_a_client_without_tz_aware_are_utc(mongo_uri, jobs):
    jobs.create(job(1))
    jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW)
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)  # hands back naive datetimes
    try:
        naive = Jobs(client.get_default_database())
        assert naive.find_idempotent(ALICE, "k", now=NOW)["_id"] == f"{1:032x}"
        assert naive.find_idempotent(ALICE, "k", now=NOW + IDEMPOTENCY_WINDOW + timedelta(seconds=1)) is None
    finally:
        client.close()


def test_release_only_unbinds_the_named_job(jobs):
    jobs.create(job(1))
    jobs.claim_idempotency_key(ALICE, "k", f"{1:032x}", now=NOW)
    jobs.release_idempotency_key(ALICE, "k", f"{2:032x}")
    assert jobs.find_idempotent(ALICE, "k", now=NOW)["_id"] == f"{1:032x}"
    jobs.release_idempotency_key(ALICE, "k", f"{1:032x}")
    assert jobs.find_idempotent(ALICE, "k", now=NOW) is None
    jobs.create(job(2))
    assert jobs.claim_idempotency_key(ALICE, "k", f"{2:032x}", now=NOW) is None  # free for a new upload


@pytest.mark.parametrize("stale", [False, True], ids=["new-key", "stale-claim"])
@pytest.mark.parametrize("round_", range(5))
def test_two_concurrent_claims_with_one_key_keep_exactly_one_job(mongo_db, round_, stale):
    """Two uploads with the same key, each with its own freshly inserted job, claim at the same moment
    (for a new key: both insert; for a claim whose job was deleted: both take it over)."""
    ids = [f"{round_:016x}{n:016x}" for n in (1, 2)]
    if stale:
        Jobs(mongo_db).claim_idempotency_key(ALICE, f"key-{round_}", "0" * 32, now=NOW)  # its job never existed
    start = threading.Barrier(2)
    results: dict[str, object] = {}

    def claim(job_id: str) -> None:
        jobs = Jobs(mongo_db)  # one adapter per request thread, on the shared client, as in the gateway
        jobs.create({**job(0), "_id": job_id})
        start.wait(timeout=10)
        try:
            results[job_id] = jobs.claim_idempotency_key(ALICE, f"key-{round_}", job_id, now=NOW)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[job_id] = exc

    threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [job_id for job_id in ids if results[job_id] is None]
    assert len(winners) == 1, results
    (loser,) = set(ids) - set(winners)
    assert isinstance(results[loser], dict) and results[loser]["_id"] == winners[0]
    assert Jobs(mongo_db).find_idempotent(ALICE, f"key-{round_}", now=NOW)["_id"] == winners[0]


# ---------------------------------------------------------------- storage


@pytest.fixture
def storage(mongo_db: Database) -> Storage:
    return Storage(mongo_db)


def test_a_video_upload_is_plain_gridfs_with_the_spec_indexes(mongo_db, storage):
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2000
    writer = storage.open_video_upload("clip.mp4", {"owner": ALICE, "job_id": "j"})
    writer.write(data)
    writer.close()

    stream = gridfs.GridFSBucket(mongo_db, "videos").open_download_stream(writer._id)
    assert (stream.read(), stream.filename, stream.metadata) == (data, "clip.mp4", {"owner": ALICE, "job_id": "j"})
    keys = [index["key"] for index in mongo_db["videos.chunks"].index_information().values()]
    assert [("files_id", 1), ("n", 1)] in keys


def test_delete_video_and_mp3_remove_files_and_chunks(mongo_db, storage):
    video = gridfs.GridFSBucket(mongo_db, "videos").upload_from_stream("a.mp4", b"v" * 300_000)
    mp3 = gridfs.GridFSBucket(mongo_db, "mp3s").upload_from_stream("a.mp3", b"m" * 300_000)
    storage.delete_video(str(video))
    storage.delete_mp3(str(mp3))
    for bucket in ("videos", "mp3s"):
        assert mongo_db[f"{bucket}.files"].count_documents({}) == 0
        assert mongo_db[f"{bucket}.chunks"].count_documents({}) == 0
    storage.delete_video(str(video))  # already gone: fine
    storage.delete_mp3("not-an-object-id")  # malformed: logged, nothing to delete


def test_open_mp3_streams_the_file_with_its_owner(mongo_db, storage):
    data = bytes(range(256)) * 3000
    fid = gridfs.GridFSBucket(mongo_db, "mp3s").upload_from_stream("talk.mp3", data, metadata={"owner": ALICE})
    mp3 = storage.open_mp3(str(fid))
    assert (mp3.fid, mp3.filename, mp3.length, mp3.owner) == (str(fid), "talk.mp3", len(data), ALICE)
    assert b"".join(mp3.chunks()) == data


@pytest.mark.parametrize("fid", [str(ObjectId()), "f" * 24], ids=["unknown", "never-stored"])
def test_open_mp3_of_a_missing_file_is_not_found(storage, fid):
    with pytest.raises(NotFound):
        storage.open_mp3(fid)


def test_ping(storage):
    storage.ping()
