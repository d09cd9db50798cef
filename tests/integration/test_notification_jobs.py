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


def test_record_unavailable_counts_from_the_first_failed_delivery_and_mark_notify_failed(mongo_uri):
    from datetime import timedelta

    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    try:
        collection = client.get_default_database()["jobs"]
        job_id = uuid.uuid4().hex
        collection.insert_one({"_id": job_id, "owner": "alice@example.com", "status": "done", "notified_at": None})
        now = [NOW]
        jobs = Jobs(collection, clock=lambda: now[0])
        assert jobs.record_unavailable(job_id, "connection refused") == 0
        now[0] = NOW + timedelta(minutes=5)
        assert jobs.record_unavailable(job_id, "SMTP 451 try later") == 300
        jobs.mark_notify_failed(job_id, "given up")
        job = jobs.get(job_id)
        assert (job["notify_first_failed_at"], job["notify_attempts"]) == (NOW, 2)
        assert (job["notify_failed_at"], job["notify_error"], job["notified_at"]) == (now[0], "given up", None)
    finally:
        client.close()
