"""Per-user limits on uploads: concurrent uploads in this process, jobs in flight, bytes stored."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mp3core.errors import PayloadTooLarge, TooManyRequests

MIB = 1024 * 1024
# Seconds a client is told to wait: an upload slot frees when an upload ends, a job slot when a conversion does.
UPLOAD_RETRY_AFTER_S = 10
JOB_RETRY_AFTER_S = 30


class UploadSlots:
    """How many uploads each user is streaming in this process; one more than `per_user` is refused.

    In-process on purpose: the gateway runs one worker process per pod, so the limit holds per pod (a user
    can have `per_user` times the replica count at most) without a database round trip per upload.
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._active: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        with self._lock:
            if self._active[owner] >= self.per_user:
                raise TooManyRequests(UPLOAD_RETRY_AFTER_S, f"you already have {self.per_user} uploads in "
                                      "progress (the most allowed at once); wait for one to finish")
            self._active[owner] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[owner] -= 1
                if self._active[owner] <= 0:
                    del self._active[owner]


@dataclass(frozen=True)
class Quotas:
    """The per-user limits an upload is checked against (from Settings)."""

    slots: UploadSlots
    max_jobs_in_flight: int
    max_stored_bytes: int


def jobs_in_flight_exceeded(limit: int) -> TooManyRequests:
    return TooManyRequests(JOB_RETRY_AFTER_S, f"you have {limit} jobs queued or converting (the most allowed); "
                           "wait for one to finish or delete one")


def storage_quota_exceeded(limit: int) -> PayloadTooLarge:
    size = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
    return PayloadTooLarge(f"this upload would exceed your storage quota of {size}; delete jobs you no longer need")
