"""Unit tests for how the converter's adapters treat MongoDB failures (their queries run against FerretDB in
tests/integration/test_converter_adapters.py)."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from converter import jobs as jobs_module


@pytest.fixture
def instant_retries(monkeypatch):
    """tenacity would really sleep between retries; record the waits instead."""
    waits: list[float] = []
    for fn in (jobs_module.Jobs.get, jobs_module.Jobs.start_attempt):
        monkeypatch.setattr(fn.retry, "sleep", waits.append)
    return waits


def test_mongodb_outage_is_retried_with_backoff(instant_retries):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def find_one(self, query):
            self.calls += 1
            if self.calls < 3:
                raise AutoReconnect("connection refused")
            return {"_id": query["_id"]}

    collection = Flaky()
    assert jobs_module.Jobs(collection).get("j") == {"_id": "j"}
    assert collection.calls == 3 and instant_retries == [1, 2]


def test_other_database_errors_are_not_retried(instant_retries):
    class Broken:
        def find_one_and_update(self, *a, **kw):
            raise OperationFailure("not authorized")

    with pytest.raises(OperationFailure):
        jobs_module.Jobs(Broken()).start_attempt("j")
    assert instant_retries == []


def test_progress_write_is_not_retried():
    # Retrying would make ffmpeg wait on its progress pipe for minutes; the handler pauses its writes instead.
    class Down:
        def __init__(self):
            self.calls = 0

        def update_one(self, *a):
            self.calls += 1
            raise AutoReconnect("connection refused")

    collection = Down()
    with pytest.raises(AutoReconnect):
        jobs_module.Jobs(collection).set_progress("j", 10)
    assert collection.calls == 1
