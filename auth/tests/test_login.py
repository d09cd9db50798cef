"""POST /login: Basic parsing, credential checks, timing equalisation and rehash-on-login."""

import base64

import jwt
import pytest
from argon2 import PasswordHasher

from auth import passwords
from auth.accounts import User

SECRET = "unit-test-jwt-secret-0123456789abcdef"
CHALLENGE = 'Basic realm="mp3converter"'


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def raw_basic(payload: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(payload).decode()}


def test_login_ok_returns_plain_text_jwt_with_contract_claims(client):
    response = client.post("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    claims = jwt.decode(response.get_data(as_text=True), SECRET, algorithms=["HS256"])
    assert claims["sub"] == claims["email"] == "alice@example.com"
    assert claims["admin"] is False
    assert claims["exp"] - claims["iat"] == 30 * 60


def test_login_normalises_the_email(client):
    response = client.post("/login", headers=basic("  Alice@Example.COM ", "alice-password-1"))

    assert response.status_code == 200
    assert jwt.decode(response.get_data(as_text=True), SECRET, algorithms=["HS256"])["email"] == "alice@example.com"


def test_bootstrap_admin_gets_admin_claim(client):
    response = client.post("/login", headers=basic("admin@example.com", "admin-password-1"))

    assert response.status_code == 200
    assert jwt.decode(response.get_data(as_text=True), SECRET, algorithms=["HS256"])["admin"] is True


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": ""}, "missing Authorization header"),
        ({"Authorization": "Bearer abc.def.ghi"}, "Authorization scheme must be Basic"),
        ({"Authorization": "Digest username=alice"}, "Authorization scheme must be Basic"),
        ({"Authorization": "Basic !!!not-base64!!!"}, "Basic credentials are not valid base64"),
        ({"Authorization": "Basic YWxpY2U"}, "Basic credentials are not valid base64"),  # bad padding
        (raw_basic(b"alice@example.com\xff\xfe:pw"), "Basic credentials are not valid UTF-8"),
        (raw_basic(b"alice@example.com"), "Basic credentials must be email:password"),
        ({"Authorization": "Basic"}, "Basic credentials must be email:password"),
        (basic("alice@example.com", "wrong-password"), "invalid email or password"),
        (basic("alice@example.com", ""), "invalid email or password"),
        (basic("nobody@example.com", "alice-password-1"), "invalid email or password"),
        (basic("", "alice-password-1"), "invalid email or password"),
        (basic("' OR '1'='1", "x"), "invalid email or password"),
        (basic("alice@example.com' --", "x"), "invalid email or password"),
        (basic("x@example.com'; DROP TABLE user; --", "x"), "invalid email or password"),
    ],
    ids=[
        "no-header", "empty-header", "bearer", "digest", "bad-base64", "bad-padding", "non-utf8",
        "no-colon", "basic-without-payload", "wrong-password", "empty-password", "unknown-user",
        "empty-email", "sql-or", "sql-comment", "sql-drop",
    ],
)
def test_login_rejections_are_401_json(client, headers, message):
    response = client.post("/login", headers=headers)

    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": message}
    assert response.headers["WWW-Authenticate"] == CHALLENGE


def test_unknown_user_is_verified_against_the_dummy_hash(client, monkeypatch):
    seen = []
    real_verify = passwords.verify
    monkeypatch.setattr(passwords, "verify", lambda h, p: seen.append(h) or real_verify(h, p))

    response = client.post("/login", headers=basic("nobody@example.com", "some-password"))

    assert response.status_code == 401
    # The same argon2id work as a wrong password, so response time does not reveal which emails exist.
    assert seen == [passwords.dummy_hash()]


def test_wrong_password_is_verified_against_the_users_hash(client, users, monkeypatch):
    seen = []
    real_verify = passwords.verify
    monkeypatch.setattr(passwords, "verify", lambda h, p: seen.append(h) or real_verify(h, p))

    client.post("/login", headers=basic("alice@example.com", "wrong-password"))

    assert seen == [users.rows["alice@example.com"].password_hash]


def test_login_rehashes_a_hash_with_outdated_parameters(client, users):
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("bob-password-1")
    users.rows["bob@example.com"] = User("bob@example.com", old, False)

    response = client.post("/login", headers=basic("bob@example.com", "bob-password-1"))

    assert response.status_code == 200
    new = users.rows["bob@example.com"].password_hash
    assert new != old
    assert new.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(new, "bob-password-1")


def test_login_keeps_a_current_hash(client, users):
    before = users.rows["alice@example.com"].password_hash

    client.post("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert users.rows["alice@example.com"].password_hash == before


def test_corrupt_stored_hash_is_a_401_not_a_500(client, users):
    users.rows["carol@example.com"] = User("carol@example.com", "not-a-phc-string", False)

    response = client.post("/login", headers=basic("carol@example.com", "whatever-password"))

    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid email or password"}


def test_login_is_post_only(client):
    response = client.get("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert response.status_code == 405
    assert response.get_json() == {"error": "The method is not allowed for the requested URL."}
