"""Unit test for notification.jobs: an outage is retried (its queries run against FerretDB in tests/integration)."""

from __future__ import annotations

from datetime import datetime, timezone

from pymongo.errors import AutoReconnect

from notification import jobs as jobs_module

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Collection:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.updates: list[tuple] = []

    def update_one(self, query, update):
        if self.failures:
            self.failures -= 1
            raise AutoReconnect("connection refused")
        self.updates.append((query, update))


def test_mongodb_outage_is_retried(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(jobs_module.Jobs.mark_notified.retry, "sleep", waits.append)
    collection = Collection(failures=2)
    jobs_module.Jobs(collection, clock=lambda: NOW).mark_notified("j")
    assert waits == [1, 2] and len(collection.updates) == 1
