"""Fixtures and in-memory fakes for the auth unit tests (no MySQL, no network)."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import sys
import unicodedata

import MySQLdb
import pytest

# With --import-mode=importlib pytest names this file "auth.tests.conftest" (its path from the rootdir)
# and registers an empty namespace module "auth" for the service folder, which would hide the real
# package auth/auth/ on sys.path. Drop that placeholder so `import auth` finds the real one.
if getattr(sys.modules.get("auth"), "__file__", "") is None:
    del sys.modules["auth"]

from auth import create_app, passwords, throttle as throttle_logic  # noqa: E402
from auth.accounts import User  # noqa: E402
from auth.config import Settings  # noqa: E402
from auth.errors import UserExists  # noqa: E402

SECRET = "unit-test-jwt-secret-0123456789abcdef"
# What a unit test's Settings are read from; the placeholders need DEV_MODE, as in a local run.
ENV = {"DEV_MODE": "true", "MYSQL_PASSWORD": "dev-only-unit-test-db-password", "JWT_SECRET": SECRET}
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"
ALICE_EMAIL = "alice@example.com"
ALICE_PASSWORD = "alice-password-1"


def collation_key(email: str) -> str:
    """Roughly MySQL's utf8mb4_unicode_ci: case, accents, compatibility forms and ignorable characters
    (zero-width space, joiners) make no difference. The fake finds rows the way the real column does."""
    decomposed = unicodedata.normalize("NFKD", email)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Cf")).casefold()


class FakeUsers:
    """Users in a dict keyed by stored email, found as MySQL's collation finds them; `down = True` makes
    every call fail like an unreachable MySQL."""

    def __init__(self) -> None:
        self.rows: dict[str, User] = {}
        self.down = False
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.down:
            raise MySQLdb.OperationalError(2003, "Can't connect to MySQL server")

    def add(self, email: str, password_hash: str, admin: bool = False) -> User:
        self.rows[email] = User(next(self._ids), email, password_hash, admin, 0)
        return self.rows[email]

    def ping(self) -> None:
        self._check()

    def get_by_email(self, email: str) -> User | None:
        self._check()
        return next((u for u in self.rows.values() if collation_key(u.email) == collation_key(email)), None)

    def create(self, email: str, password_hash: str, *, admin: bool) -> User:
        self._check()
        if self.get_by_email(email) is not None:  # the UNIQUE index compares under the collation too
            raise UserExists()
        return self.add(email, password_hash, admin)

    def _by_id(self, user_id: int) -> User | None:
        return next((u for u in self.rows.values() if u.id == user_id), None)

    def get_by_id(self, user_id: int) -> User | None:
        self._check()
        return self._by_id(user_id)

    def update_password_hash(self, user_id: int, password_hash: str) -> None:
        self._check()
        old = self._by_id(user_id)
        self.rows[old.email] = dataclasses.replace(old, password_hash=password_hash)

    def change_password(self, user_id: int, password_hash: str) -> int | None:
        self._check()
        old = self._by_id(user_id)
        if old is None:
            return None
        self.rows[old.email] = dataclasses.replace(old, password_hash=password_hash, token_version=old.token_version + 1)
        return old.token_version + 1

    def delete(self, user_id: int) -> bool:
        self._check()
        user = self._by_id(user_id)
        if user is None:
            return False
        del self.rows[user.email]
        return True


class FakeThrottle:
    """Same fixed-window rule as MySQLThrottle (shared pure function), counters in a dict."""

    def __init__(self, *, max_per_user: int = 3, max_per_address: int = 5, window_seconds: int = 60) -> None:
        self.limits = {"user": max_per_user, "address": max_per_address}
        self.window = window_seconds
        self.now = 1_000_000.0  # tests move the clock by assigning to it
        self.counters: dict[tuple[str, str], tuple[int, int]] = {}

    def retry_after(self, *, user: str, address: str) -> int:
        keys = [("user", user), ("address", address)]
        counters = [(*self.counters[k], self.limits[k[0]]) for k in keys if k in self.counters]
        return throttle_logic.retry_after(counters, self.now, self.window)

    def record_failure(self, *, user: str, address: str) -> None:
        current = throttle_logic.window_start(self.now, self.window)
        for key in (("user", user), ("address", address)):
            start, failures = self.counters.get(key, (current, 0))
            self.counters[key] = (current, failures + 1 if start == current else 1)

    def reset_user(self, user: str) -> None:
        self.counters.pop(("user", user), None)

    def purge_expired(self) -> None:
        current = throttle_logic.window_start(self.now, self.window)
        self.counters = {k: v for k, v in self.counters.items() if v[0] >= current}


def _make_settings(**overrides) -> Settings:
    return dataclasses.replace(Settings.from_env(ENV), **overrides)


def basic(email: str, password: str) -> dict[str, str]:
    raw = f"{email}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


# Test modules cannot import conftest (importlib import mode), so helpers are handed out as fixtures.
@pytest.fixture
def make_settings():
    return _make_settings


@pytest.fixture
def users() -> FakeUsers:
    fake = FakeUsers()
    fake.add(ALICE_EMAIL, passwords.hash_password(ALICE_PASSWORD))
    return fake


@pytest.fixture
def throttle() -> FakeThrottle:
    return FakeThrottle()


@pytest.fixture
def app(users, throttle):
    app = create_app(
        _make_settings(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD), users=users, throttle=throttle
    )
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_token(client) -> str:
    response = client.post("/login", headers=basic(ADMIN_EMAIL, ADMIN_PASSWORD))
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def alice_token(client) -> str:
    response = client.post("/login", headers=basic(ALICE_EMAIL, ALICE_PASSWORD))
    assert response.status_code == 200
    return response.get_data(as_text=True)
