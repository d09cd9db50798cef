"""Fakes for notification's adapters (jobs collection, mail sending), reached through fixtures.

(Test modules cannot import this file under --import-mode=importlib, hence fixtures for everything.)
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

# pytest's importlib mode imports this file as `notification.tests.conftest` and, on the way, registers the
# service *folder* as an empty namespace module `notification`, shadowing the real package on sys.path.
# Drop that stand-in so `import notification.x` finds the package (harmless when it is already the real one).
if getattr(sys.modules.get("notification"), "__file__", None) is None:
    sys.modules.pop("notification", None)

JOB_ID = "0123456789abcdef0123456789abcdef"
OWNER = "alice@example.com"


class FakeJobs:
    """In-memory stand-in for notification.jobs.Jobs."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.docs = {doc["_id"]: dict(doc) for doc in docs}
        self.calls: list[str] = []
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)  # tests move it forward

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def get(self, job_id):
        self.calls.append("get")
        doc = self.docs.get(job_id)
        return dict(doc) if doc else None

    def mark_notified(self, job_id):
        self.calls.append("mark_notified")
        self.docs[job_id]["notified_at"] = self.now

    def record_unavailable(self, job_id, error):
        self.calls.append("record_unavailable")
        doc = self.docs[job_id]
        doc["notify_first_failed_at"] = min(doc.get("notify_first_failed_at") or self.now, self.now)
        doc["notify_attempts"] = doc.get("notify_attempts", 0) + 1
        doc["notify_error"] = error
        return (self.now - doc["notify_first_failed_at"]).total_seconds()

    def mark_notify_failed(self, job_id, reason):
        self.calls.append("mark_notify_failed")
        self.docs[job_id].update(notify_failed_at=self.now, notify_error=reason)


class FakeSend:
    """Records mails; `errors` are raised by the next calls, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.attempts = 0
        self.errors: list[Exception] = []

    def __call__(self, to: str, subject: str, body: str) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((to, subject, body))


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs({"_id": JOB_ID, "owner": OWNER, "status": "done", "filename": "holiday.mp4",
                     "mp3_fid": "65a1b2c3d4e5f60718293a4b", "notified_at": None})


@pytest.fixture
def send() -> FakeSend:
    return FakeSend()
