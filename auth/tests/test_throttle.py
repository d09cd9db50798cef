"""Login rate limiting: 429 + Retry-After without verifying, per user and per address, window reset."""

import base64

import pytest

from auth import passwords, throttle as throttle_logic


def basic(email: str, password: str, address: str | None = None) -> dict[str, str]:
    headers = {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}
    if address is not None:
        headers["X-Forwarded-For"] = address
    return headers


def fail(client, email="alice@example.com", address="198.51.100.7"):
    response = client.post("/login", headers=basic(email, "wrong-password", address))
    assert response.status_code == 401
    return response


def test_user_over_limit_gets_429_with_retry_after_even_with_the_right_password(client, throttle, monkeypatch):
    for _ in range(3):  # FakeThrottle: 3 failures per user per 60 s window
        fail(client)
    throttle.now += 10  # window started at 1_000_000 - (1_000_000 % 60) = 999_960

    def must_not_verify(*args):
        raise AssertionError("password verified while throttled")

    monkeypatch.setattr(passwords, "verify", must_not_verify)
    response = client.post("/login", headers=basic("alice@example.com", "alice-password-1", "198.51.100.7"))

    assert response.status_code == 429
    assert response.get_json() == {"error": "too many failed logins, try again later"}
    window_end = throttle_logic.window_start(1_000_000, 60) + 60
    assert response.headers["Retry-After"] == str(window_end - int(throttle.now))


def test_user_limit_applies_from_any_address(client):
    for i in range(3):
        fail(client, address=f"203.0.113.{i}")

    response = client.post("/login", headers=basic("alice@example.com", "alice-password-1", "203.0.113.99"))

    assert response.status_code == 429


def test_limit_lifts_when_the_window_ends(client, throttle):
    for _ in range(3):
        fail(client)
    assert client.post("/login", headers=basic("alice@example.com", "alice-password-1")).status_code == 429

    throttle.now += 60

    assert client.post("/login", headers=basic("alice@example.com", "alice-password-1")).status_code == 200


def test_address_over_limit_blocks_other_users_from_that_address_only(client):
    for i in range(5):  # FakeThrottle: 5 failures per address
        fail(client, email=f"user{i}@example.com", address="192.0.2.1")

    blocked = client.post("/login", headers=basic("alice@example.com", "alice-password-1", "192.0.2.1"))
    other = client.post("/login", headers=basic("alice@example.com", "alice-password-1", "192.0.2.2"))

    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert other.status_code == 200


def test_success_resets_the_user_counter_but_not_the_address(client, throttle):
    fail(client)
    fail(client)

    ok = client.post("/login", headers=basic("alice@example.com", "alice-password-1", "198.51.100.7"))

    assert ok.status_code == 200
    assert ("user", "alice@example.com") not in throttle.counters
    assert throttle.counters[("address", "198.51.100.7")][1] == 2


def test_unknown_users_are_counted_too(client, throttle):
    for _ in range(3):
        fail(client, email="nobody@example.com")

    response = client.post("/login", headers=basic("nobody@example.com", "x", "198.51.100.7"))

    assert response.status_code == 429


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("10.9.9.9, 203.0.113.5", "203.0.113.5"),  # the gateway appends: the last entry is trusted
        ("spoofed, 10.0.0.1 ,  203.0.113.5 ", "203.0.113.5"),
        (None, "127.0.0.1"),  # werkzeug test client's remote_addr
        ("", "127.0.0.1"),
    ],
)
def test_client_address_is_the_last_forwarded_entry(client, throttle, forwarded, expected):
    fail(client, address=forwarded)

    assert ("address", expected) in throttle.counters


@pytest.mark.parametrize(
    ("counters", "now", "expected"),
    [
        ([], 1000.0, 0),
        ([(960, 2, 3)], 1000.0, 0),  # under the limit
        ([(960, 3, 3)], 1000.0, 20),  # at the limit: blocked until 960 + 60
        ([(960, 3, 3)], 1019.5, 1),  # rounded up
        ([(900, 99, 3)], 1000.0, 0),  # an old window has expired
        ([(960, 3, 3), (960, 1, 50)], 1000.0, 20),
        ([(960, 9, 3), (960, 50, 50)], 1010.0, 10),
    ],
)
def test_retry_after_rule(counters, now, expected):
    assert throttle_logic.retry_after(counters, now, 60) == expected


def test_window_start_is_aligned():
    assert throttle_logic.window_start(1019.9, 60) == 960
    assert throttle_logic.window_start(1020.0, 60) == 1020
