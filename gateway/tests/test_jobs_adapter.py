"""The Idempotency-Key claim's retry loop under interleavings a real server cannot be made to produce on cue.

Everything else the Jobs adapter does runs against FerretDB in tests/integration/test_gateway_jobs.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.results import DeleteResult

from gateway.jobs import CLAIM_PURGE_EVERY, IDEMPOTENCY_WINDOW, Jobs, claim_id

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALICE = "alice@example.com"


class MemoryCollection:
    """Just enough of pymongo's Collection for the claim, with _id uniqueness like a real server."""

    def __init__(self) -> None:
        self.docs: dict[object, dict] = {}
        self.hooks: dict[str, list] = {}  # method name -> callables run before it (to play races)
        self.indexes: list[tuple[list, dict]] = []
        self.ttl = True  # False plays FerretDB 1.x, which refuses expireAfterSeconds

    def create_index(self, keys: list, **options) -> None:
        if "expireAfterSeconds" in options and not self.ttl:
            raise OperationFailure('Index option "expireAfterSeconds" is not implemented yet', 238)
        self.indexes.append((keys, options))

    def delete_many(self, query: dict) -> DeleteResult:
        def matches(doc: dict) -> bool:
            for name, cond in query.items():
                if "$lt" in cond and not (name in doc and doc[name] < cond["$lt"]):
                    return False
                if "$regex" in cond and not re.match(cond["$regex"], str(doc.get(name))):
                    return False
            return True

        gone = [key for key, doc in self.docs.items() if matches(doc)]
        for key in gone:
            del self.docs[key]
        return DeleteResult({"n": len(gone)}, acknowledged=True)

    def insert_one(self, doc: dict) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000 duplicate key error", 11000)
        self.docs[doc["_id"]] = dict(doc)

    def find_one(self, query: dict) -> dict | None:
        for hook in self.hooks.get("find_one", []):
            hook()
        return next((dict(d) for d in self.docs.values() if all(d.get(k) == v for k, v in query.items())), None)

    def update_one(self, query: dict, update: dict, upsert: bool = False) -> None:
        self.docs[query["_id"]].update(update["$set"])

    def delete_one(self, query: dict) -> None:
        if all(self.docs.get(query["_id"], {}).get(k) == v for k, v in query.items()):
            self.docs.pop(query["_id"], None)


class MemoryDb(dict):
    def __missing__(self, name: str) -> MemoryCollection:
        self[name] = MemoryCollection()
        return self[name]


@pytest.fixture
def db() -> MemoryDb:
    return MemoryDb()


@pytest.fixture
def jobs(db) -> Jobs:
    return Jobs(db)


def test_claim_released_between_insert_and_read_is_retried(db, jobs):
    jobs.create({"_id": "a" * 32})
    jobs.claim_idempotency_key(ALICE, "k", "a" * 32, now=NOW)
    claims = db["idempotency_keys"]

    def holder_rolls_back():
        claims.hooks["find_one"] = []
        jobs.release_idempotency_key(ALICE, "k", "a" * 32)

    claims.hooks["find_one"] = [holder_rolls_back]

    assert jobs.claim_idempotency_key(ALICE, "k", "b" * 32, now=NOW) is None
    assert claims.docs[claim_id(ALICE, "k")]["job_id"] == "b" * 32


def test_claim_id_is_fixed_length_and_distinct_per_pair():
    ids = {claim_id(owner, key) for owner in (ALICE, "bob@example.com") for key in ("k", "k2", "x" * 255)}
    assert len(ids) == 6
    assert {len(i) for i in ids} == {64}


def test_claims_get_a_ttl_index_of_the_window_where_the_server_has_them(db, jobs):
    jobs.claim_idempotency_key(ALICE, "k1", "job-1", now=NOW)
    assert (["created_at", 1] in [list(k) for k in db["idempotency_keys"].indexes[0][0]])
    assert db["idempotency_keys"].indexes[0][1]["expireAfterSeconds"] == IDEMPOTENCY_WINDOW.total_seconds()


def test_without_ttl_indexes_expired_claims_are_purged_at_most_hourly(db, jobs):
    claims = db["idempotency_keys"]
    claims.ttl = False  # FerretDB 1.24: expireAfterSeconds is NotImplemented
    old = NOW - IDEMPOTENCY_WINDOW - timedelta(seconds=1)
    claims.insert_one({"_id": claim_id(ALICE, "old"), "job_id": "job-0", "created_at": old})
    claims.insert_one({"_id": claim_id(ALICE, "fresh"), "job_id": "job-9", "created_at": NOW})

    jobs.claim_idempotency_key(ALICE, "k1", "job-1", now=NOW)
    assert set(claims.docs) == {claim_id(ALICE, "fresh"), claim_id(ALICE, "k1")}
    assert [opts for _, opts in claims.indexes] == [{"name": "claims_created_at"}]  # the purge's index

    claims.insert_one({"_id": claim_id(ALICE, "old2"), "job_id": "job-2", "created_at": old})
    jobs.claim_idempotency_key(ALICE, "k2", "job-3", now=NOW + timedelta(minutes=5))
    assert claim_id(ALICE, "old2") in claims.docs  # not again within the hour
    jobs.claim_idempotency_key(ALICE, "k3", "job-4", now=NOW + CLAIM_PURGE_EVERY)
    assert claim_id(ALICE, "old2") not in claims.docs


def test_other_index_errors_are_not_taken_for_missing_ttl_support(db, jobs):
    def refuse(*_args, **_kwargs):
        raise OperationFailure("not authorized", 13)

    db["idempotency_keys"].create_index = refuse
    with pytest.raises(OperationFailure):
        jobs.claim_idempotency_key(ALICE, "k1", "job-1", now=NOW)
