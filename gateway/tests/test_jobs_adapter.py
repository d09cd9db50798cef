"""The Idempotency-Key claim's retry loop under interleavings a real server cannot be made to produce on cue.

Everything else the Jobs adapter does runs against FerretDB in tests/integration/test_gateway_jobs.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymongo.errors import DuplicateKeyError

from gateway.jobs import Jobs, claim_id

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALICE = "alice@example.com"


class MemoryCollection:
    """Just enough of pymongo's Collection for the claim, with _id uniqueness like a real server."""

    def __init__(self) -> None:
        self.docs: dict[object, dict] = {}
        self.hooks: dict[str, list] = {}  # method name -> callables run before it (to play races)

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
