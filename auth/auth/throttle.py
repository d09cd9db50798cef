"""Login rate limit per user and per client address: fixed-window failure counters in MySQL."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from MySQLdb.connections import Connection

USER = "user"
ADDRESS = "address"
MAX_SUBJECT_LENGTH = 255  # column width; longer keys are truncated, which only merges junk keys


def window_start(now: float, window_seconds: int) -> int:
    return int(now // window_seconds) * window_seconds


def retry_after(counters: Iterable[tuple[int, int, int]], now: float, window_seconds: int) -> int:
    """Seconds until every blocked counter's window ends; 0 when none is blocked.

    Each counter is (window_start, failures, limit). A counter from an older window is expired.
    """
    current = window_start(now, window_seconds)
    wait = 0
    for start, failures, limit in counters:
        if start == current and failures >= limit:
            # Rounded up and at least 1 so a client honouring Retry-After lands in the next window.
            wait = max(wait, max(1, math.ceil(start + window_seconds - now)))
    return wait


class MySQLThrottle:
    """Counters in MySQL, on the connection `connection()` returns, so every replica sees the same limits.

    Check-then-verify is not atomic: concurrent attempts may overshoot a limit by the number of
    in-flight requests, which is acceptable for a brute-force brake. Locking a user out for at most
    one window is the price of per-user limits (an attacker can trigger it); the window bounds it.
    """

    def __init__(
        self,
        connection: Callable[[], Connection],
        *,
        max_per_user: int,
        max_per_address: int,
        window_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connection = connection
        self._limits = {USER: max_per_user, ADDRESS: max_per_address}
        self._window = window_seconds
        self._clock = clock

    def retry_after(self, *, user: str, address: str) -> int:
        with self._connection().cursor() as cur:
            cur.execute(
                "SELECT scope, window_start, failures FROM login_failure "
                "WHERE (scope = %s AND subject = %s) OR (scope = %s AND subject = %s)",
                (USER, user[:MAX_SUBJECT_LENGTH], ADDRESS, address[:MAX_SUBJECT_LENGTH]),
            )
            rows = cur.fetchall()
        return retry_after(
            ((int(start), int(failures), self._limits[scope]) for scope, start, failures in rows),
            self._clock(),
            self._window,
        )

    def record_failure(self, *, user: str, address: str) -> None:
        current = window_start(self._clock(), self._window)
        with self._connection().cursor() as cur:
            for scope, subject in ((USER, user), (ADDRESS, address)):
                # One atomic upsert per key. MySQL evaluates the SET list left to right, so
                # `failures` must be computed before `window_start` is moved to the new window.
                cur.execute(
                    "INSERT INTO login_failure (scope, subject, window_start, failures) "
                    "VALUES (%s, %s, %s, 1) "
                    "ON DUPLICATE KEY UPDATE "
                    "failures = IF(window_start = VALUES(window_start), failures + 1, 1), "
                    "window_start = VALUES(window_start)",
                    (scope, subject[:MAX_SUBJECT_LENGTH], current),
                )

    def reset_user(self, user: str) -> None:
        with self._connection().cursor() as cur:
            cur.execute(
                "DELETE FROM login_failure WHERE scope = %s AND subject = %s",
                (USER, user[:MAX_SUBJECT_LENGTH]),
            )

    def purge_expired(self) -> None:
        """Drop counters from past windows so the table does not grow with every address ever seen."""
        current = window_start(self._clock(), self._window)
        with self._connection().cursor() as cur:
            cur.execute("DELETE FROM login_failure WHERE window_start < %s", (current,))
