"""notification's jobs adapter against real FerretDB."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.integration

from pymongo import MongoClient  # noqa: E402

from notification.jobs import Jobs  # noqa: E402

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_get_and_mark_notified_touch_only_notified_at(mongo_uri):
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    try:
        collection = client.get_default_database()["jobs"]
        job_id = uuid.uuid4().hex
        job = {"_id": job_id, "owner": "alice@example.com", "status": "done", "notified_at": None,
               "updated_at": datetime(2026, 5, 1, 11, 0, tzinfo=timezone.utc)}
        collection.insert_one(job)
        jobs = Jobs(collection, clock=lambda: NOW)
        jobs.mark_notified(job_id)
        assert jobs.get(job_id) == {**job, "notified_at": NOW}
        assert jobs.get(uuid.uuid4().hex) is None
    finally:
        client.close()
