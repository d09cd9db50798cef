"""POST /login: Basic parsing, credential checks, timing equalisation and rehash-on-login."""

import base64

import jwt
import pytest
from argon2 import PasswordHasher

from auth import passwords

SECRET = "unit-test-jwt-secret-0123456789abcdef"
CHALLENGE = 'Basic realm="mp3converter"'


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def claims_of(response) -> dict:
    return jwt.decode(response.get_data(as_text=True), SECRET, algorithms=["HS256"], audience="mp3converter")


def raw_basic(payload: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(payload).decode()}


def test_login_ok_returns_plain_text_jwt_with_contract_claims(client):
    response = client.post("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    claims = claims_of(response)
    assert claims["sub"] == claims["email"] == "alice@example.com"
    assert claims["admin"] is False
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert (claims["iss"], claims["aud"], claims["uid"], claims["ver"]) == ("mp3converter-auth", "mp3converter", 1, 0)


def test_login_normalises_the_email(client):
    response = client.post("/login", headers=basic("  Alice@Example.COM ", "alice-password-1"))

    assert response.status_code == 200
    assert claims_of(response)["email"] == "alice@example.com"


def test_bootstrap_admin_gets_admin_claim(client):
    response = client.post("/login", headers=basic("admin@example.com", "admin-password-1"))

    assert response.status_code == 200
    assert claims_of(response)["admin"] is True


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
    users.add("bob@example.com", old)

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
    users.add("carol@example.com", "not-a-phc-string")

    response = client.post("/login", headers=basic("carol@example.com", "whatever-password"))

    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid email or password"}


def test_login_is_post_only(client):
    response = client.get("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert response.status_code == 405
    assert response.get_json() == {"error": "The method is not allowed for the requested URL."}


# The bypasses: MySQL's collation finds alice's row for each of these spellings, and the per-user
# counter used to be keyed on the bytes typed, so each spelling started a fresh count.
LOOK_ALIKES = {
    "upper-case": "Alice@example.com",
    "accent": "álice@example.com",
    "full-width": "ａlice@example.com",
    "zero-width-space": "alice\u200b@example.com",
}


@pytest.mark.parametrize("variant", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_a_look_alike_address_gets_no_fresh_counter(client, variant):
    for _ in range(3):  # FakeThrottle: 3 failures per user
        assert client.post("/login", headers=basic("alice@example.com", "wrong-password")).status_code == 401

    response = client.post("/login", headers=basic(variant, "alice-password-1"))

    if variant == LOOK_ALIKES["zero-width-space"]:
        # Not an address anyone can have: no account is looked up, so nothing can be won with it.
        assert (response.status_code, response.get_json()) == (401, {"error": "invalid email or password"})
    else:
        assert (response.status_code, response.get_json()) == (429, {"error": "too many failed logins, try again later"})


def test_failures_under_look_alike_spellings_count_against_the_account(client):
    for variant in ("Alice@example.com", "álice@example.com", "ａlice@example.com"):
        assert client.post("/login", headers=basic(variant, "wrong-password")).status_code == 401

    response = client.post("/login", headers=basic("alice@example.com", "alice-password-1"))

    assert response.status_code == 429
    assert response.get_json() == {"error": "too many failed logins, try again later"}


@pytest.mark.parametrize(
    ("variant", "status"),
    [("ALICE@EXAMPLE.COM", 200), ("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", 200), ("álice@example.com", 401),
     ("alice\u200b@example.com", 401), ("alice@example.com\u200e", 401)],
    ids=["upper-case", "full-width", "accent", "zero-width-space", "bidi-mark"],
)
def test_only_the_accounts_own_address_logs_in(client, variant, status):
    response = client.post("/login", headers=basic(variant, "alice-password-1"))

    assert response.status_code == status
    if status == 200:  # the same spelling after normalisation: the account's own address
        assert claims_of(response)["email"] == "alice@example.com"
    else:  # `álice@` is another address that the collation merely equates with alice's
        assert response.get_json() == {"error": "invalid email or password"}
