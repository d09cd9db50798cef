"""The Jobs adapter over in-memory collections: paging queries, atomic delete, Idempotency-Key claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from mp3core.errors import ServiceUnavailable

from gateway.jobs import IDEMPOTENCY_WINDOW, Jobs, claim_id

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALICE = "alice@example.com"


def matches(doc: dict, query: dict) -> bool:
    return all(doc.get(k) == v for k, v in query.items())


class Cursor:
    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs
        self.calls: list[tuple] = []

    def sort(self, keys):
        self.calls.append(("sort", keys))
        for field, direction in reversed(keys):  # stable sorts, least significant key first
            self.docs.sort(key=lambda d: d[field], reverse=direction == pymongo.DESCENDING)
        return self

    def skip(self, n):
        self.calls.append(("skip", n))
        self.docs = self.docs[n:]
        return self

    def limit(self, n):
        self.calls.append(("limit", n))
        self.docs = self.docs[:n]
        return self

    def __iter__(self):
        return iter(self.docs)


class MemoryCollection:
    """Just enough of pymongo's Collection, with _id uniqueness like a real server."""

    def __init__(self) -> None:
        self.docs: dict[object, dict] = {}
        self.indexes: list[list] = []
        self.cursors: list[Cursor] = []
        self.hooks: dict[str, list] = {}  # method name -> callables run before it (to play races)

    def _hook(self, name: str) -> None:
        for hook in self.hooks.get(name, []):
            hook()

    def insert_one(self, doc: dict):
        self._hook("insert_one")
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000 duplicate key error", 11000)
        self.docs[doc["_id"]] = dict(doc)

    def find_one(self, query: dict):
        self._hook("find_one")
        return next((dict(d) for d in self.docs.values() if matches(d, query)), None)

    def find(self, query: dict) -> Cursor:
        cursor = Cursor([dict(d) for d in self.docs.values() if matches(d, query)])
        self.cursors.append(cursor)
        return cursor

    def count_documents(self, query: dict) -> int:
        return sum(1 for d in self.docs.values() if matches(d, query))

    def update_one(self, query: dict, update: dict):
        self._hook("update_one")
        for doc in self.docs.values():
            if matches(doc, query):
                doc.update(update["$set"])
                return SimpleNamespace(matched_count=1)
        return SimpleNamespace(matched_count=0)

    def delete_one(self, query: dict) -> None:
        for key, doc in list(self.docs.items()):
            if matches(doc, query):
                del self.docs[key]
                return

    def find_one_and_delete(self, query: dict):
        for key, doc in list(self.docs.items()):
            if matches(doc, query):
                return self.docs.pop(key)
        return None

    def aggregate(self, pipeline: list):
        assert pipeline == [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        groups: dict = {}
        for doc in self.docs.values():
            groups[doc.get("status")] = groups.get(doc.get("status"), 0) + 1
        return [{"_id": status, "n": n} for status, n in groups.items()]

    def create_index(self, keys) -> None:
        self.indexes.append(keys)


class MemoryDb(dict):
    def __missing__(self, name):
        self[name] = MemoryCollection()
        return self[name]


@pytest.fixture
def db():
    return MemoryDb()


@pytest.fixture
def jobs(db):
    return Jobs(db)


def job(job_id: str, owner: str = ALICE, minutes: int = 0, **fields) -> dict:
    return {"_id": job_id, "owner": owner, "status": "queued", "created_at": NOW + timedelta(minutes=minutes), **fields}


# ---------------------------------------------------------------- listing, deleting, counting


def test_list_for_owner_sorts_newest_first_pages_and_counts(db, jobs):
    for n in range(5):
        jobs.create(job(f"{n:032x}", minutes=n))
    jobs.create(job("b" * 32, owner="bob@example.com", minutes=9))

    page, total = jobs.list_for_owner(ALICE, limit=2, offset=1)

    assert [d["_id"] for d in page] == [f"{3:032x}", f"{2:032x}"]
    assert total == 5
    [cursor] = db["jobs"].cursors
    assert cursor.calls == [
        ("sort", [("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]),
        ("skip", 1),
        ("limit", 2),
    ]


def test_list_breaks_created_at_ties_by_id(jobs):
    for job_id in ("a" * 32, "c" * 32, "b" * 32):
        jobs.create(job(job_id))
    page, _ = jobs.list_for_owner(ALICE, limit=10, offset=0)
    assert [d["_id"][0] for d in page] == ["c", "b", "a"]


def test_owner_created_at_index_is_created_once(db, jobs):
    jobs.list_for_owner(ALICE, limit=1, offset=0)
    jobs.list_for_owner(ALICE, limit=1, offset=0)
    assert db["jobs"].indexes == [[("owner", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)]]


def test_take_deletes_only_the_owners_job_unless_admin(jobs, db):
    jobs.create(job("a" * 32))
    assert jobs.take("a" * 32, owner="bob@example.com") is None
    assert "a" * 32 in db["jobs"].docs
    assert jobs.take("a" * 32, owner=ALICE)["_id"] == "a" * 32
    assert db["jobs"].docs == {}
    jobs.create(job("c" * 32))
    assert jobs.take("c" * 32, owner=None)["_id"] == "c" * 32  # an admin
    assert jobs.take("c" * 32, owner=None) is None


def test_count_by_status(jobs):
    for n, status in enumerate(["queued", "done", "done", "failed"]):
        jobs.create(job(f"{n:032x}", status=status))
    assert jobs.count_by_status() == {"queued": 1, "done": 2, "failed": 1}


# ---------------------------------------------------------------- Idempotency-Key claims


def test_first_claim_binds_the_key(db, jobs):
    jobs.create(job("a" * 32))
    assert jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW) is None
    assert db["idempotency_keys"].docs == {claim_id(ALICE, "k"): {"_id": claim_id(ALICE, "k"), "job_id": "a" * 32, "created_at": NOW}}
    assert jobs.find_idempotent(ALICE, "k", now=NOW + timedelta(hours=1))["_id"] == "a" * 32


def test_second_claim_within_the_window_gets_the_first_job(db, jobs):
    jobs.create(job("a" * 32))
    jobs.create(job("b" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)

    holder = jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=NOW + timedelta(seconds=1))

    assert holder["_id"] == "a" * 32
    assert db["idempotency_keys"].docs[claim_id(ALICE, "k")]["job_id"] == "a" * 32


def test_claiming_again_for_the_same_job_is_a_no_op(jobs):
    jobs.create(job("a" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    assert jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW) is None


def test_other_owner_or_key_is_another_claim(jobs):
    jobs.create(job("a" * 32))
    jobs.create(job("b" * 32, owner="bob@example.com"))
    jobs.create(job("c" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    assert jobs.claim_idempotency_key("bob@example.com", "k", "b" * 32, now=NOW) is None
    assert jobs.claim_idempotency_key(ALICE, "k2", "c" * 32, now=NOW) is None


@pytest.mark.parametrize("why", ["expired", "job-deleted"])
def test_stale_claim_is_taken_over(db, jobs, why):
    jobs.create(job("a" * 32))
    jobs.create(job("b" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    later = NOW + IDEMPOTENCY_WINDOW + timedelta(seconds=1) if why == "expired" else NOW + timedelta(minutes=1)
    if why == "job-deleted":
        jobs.delete("a" * 32)

    assert jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=later) is None
    assert db["idempotency_keys"].docs[claim_id(ALICE, "k")] == {"_id": claim_id(ALICE, "k"), "job_id": "b" * 32, "created_at": later}


def test_takeover_lost_to_a_concurrent_request_yields_to_it(db, jobs):
    for c in "abc":
        jobs.create(job(c * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    jobs.delete("a" * 32)
    claims = db["idempotency_keys"]

    def other_request_takes_it_first():
        claims.hooks["update_one"] = []
        claims.docs[claim_id(ALICE, "k")].update(job_id="c" * 32, created_at=NOW)

    claims.hooks["update_one"] = [other_request_takes_it_first]

    holder = jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=NOW + timedelta(seconds=1))

    assert holder["_id"] == "c" * 32
    assert claims.docs[claim_id(ALICE, "k")]["job_id"] == "c" * 32


def test_claim_released_between_insert_and_read_is_retried(db, jobs):
    jobs.create(job("a" * 32))
    jobs.create(job("b" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    claims = db["idempotency_keys"]

    def holder_rolls_back():
        claims.hooks["find_one"] = []
        jobs.release_idempotency_key(ALICE, "k", "a" * 32)

    claims.hooks["find_one"] = [holder_rolls_back]

    assert jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=NOW) is None
    assert claims.docs[claim_id(ALICE, "k")]["job_id"] == "b" * 32


def test_endless_contention_gives_up_with_503(db, jobs):
    jobs.create(job("b" * 32))
    claims = db["idempotency_keys"]
    cid = claim_id(ALICE, "k")
    claims.docs[cid] = {"_id": cid, "job_id": "gone-0", "created_at": NOW}
    takeovers = iter(range(1, 100))

    def someone_else_takes_it_over_first():
        claims.docs[cid]["job_id"] = f"gone-{next(takeovers)}"  # a deleted job's id, new every time

    claims.hooks["update_one"] = [someone_else_takes_it_over_first]
    with pytest.raises(ServiceUnavailable):
        jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=NOW)
    assert next(takeovers) == 6  # five rounds, then it gave up


def test_release_only_unbinds_the_named_job(db, jobs):
    jobs.create(job("a" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    jobs.release_idempotency_key(ALICE, "k", "b" * 32)
    assert claim_id(ALICE, "k") in db["idempotency_keys"].docs
    jobs.release_idempotency_key(ALICE, "k", "a" * 32)
    assert db["idempotency_keys"].docs == {}


@pytest.mark.parametrize(
    ("age", "found"),
    [(timedelta(0), True), (IDEMPOTENCY_WINDOW - timedelta(seconds=1), True), (IDEMPOTENCY_WINDOW + timedelta(seconds=1), False)],
    ids=["fresh", "just-inside", "just-outside"],
)
def test_find_idempotent_honours_the_window(jobs, age, found):
    jobs.create(job("a" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    assert (jobs.find_idempotent(ALICE, "k", now=NOW + age) is not None) is found


def test_find_idempotent_reads_naive_dates_as_utc(db, jobs):
    jobs.create(job("a" * 32))
    db["idempotency_keys"].docs[claim_id(ALICE, "k")] = {
        "_id": claim_id(ALICE, "k"),
        "job_id": "a" * 32,
        "created_at": NOW.replace(tzinfo=None),  # as a client without tz_aware returns it
    }
    assert jobs.find_idempotent(ALICE, "k", now=NOW)["_id"] == "a" * 32


def test_find_idempotent_unknown_key_or_deleted_job_is_none(jobs):
    assert jobs.find_idempotent(ALICE, "k", now=NOW) is None
    jobs.create(job("a" * 32))
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    jobs.delete("a" * 32)
    assert jobs.find_idempotent(ALICE, "k", now=NOW) is None


def test_claim_id_is_fixed_length_and_distinct_per_pair():
    ids = {claim_id(owner, key) for owner in (ALICE, "bob@example.com") for key in ("k", "k2", "x" * 255)}
    assert len(ids) == 6
    assert {len(i) for i in ids} == {64}
