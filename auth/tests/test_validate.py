"""POST /validate: good tokens give claims; every kind of bad token or header is a 401 JSON."""

import time
import warnings

import jwt
import pytest

from auth import tokens

SECRET = "unit-test-jwt-secret-0123456789abcdef"
OTHER_SECRET = "another-secret-that-is-long-enough-0000"
NOW = int(time.time())
GOOD = {"sub": "alice@example.com", "email": "alice@example.com", "admin": False, "iat": NOW, "exp": NOW + 600}


def signed(claims, key=SECRET, algorithm="HS256"):
    with warnings.catch_warnings():
        # The HS512 case reuses the 37-byte HS256 secret on purpose; PyJWT warns that it is short.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def unsigned(claims):
    # `alg: none` token: header.payload. with an empty signature.
    return jwt.encode(claims, None, algorithm="none")


def test_validate_ok_returns_the_claims(client, alice_token):
    response = client.post("/validate", headers={"Authorization": f"Bearer {alice_token}"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == body["sub"] == "alice@example.com"
    assert body["admin"] is False
    assert body["exp"] - body["iat"] == 1800


def test_validate_accepts_a_lowercase_scheme(client, alice_token):
    response = client.post("/validate", headers={"Authorization": f"bearer {alice_token}"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic YWxpY2U6cHc=", "Authorization scheme must be Bearer"),
        ("Bearer", "malformed bearer token"),
        ("Bearer ", "malformed bearer token"),
        ("Bearer a b", "malformed bearer token"),
        ("Bearer garbage", "token is invalid"),
        ("Bearer a.b.c", "token is invalid"),
        ("Bearer " + signed({**GOOD, "iat": NOW - 7200, "exp": NOW - 3600}), "token has expired"),
        ("Bearer " + signed(GOOD, key=OTHER_SECRET), "token is invalid"),
        ("Bearer " + unsigned(GOOD), "token is invalid"),
        ("Bearer " + signed(GOOD, algorithm="HS512"), "token is invalid"),
        ("Bearer " + signed({k: v for k, v in GOOD.items() if k != "exp"}), "token is invalid"),
        ("Bearer " + signed({k: v for k, v in GOOD.items() if k != "iat"}), "token is invalid"),
        ("Bearer " + signed({k: v for k, v in GOOD.items() if k != "email"}), "token is invalid"),
        ("Bearer " + signed({**GOOD, "email": 42}), "token claims are malformed"),
        ("Bearer " + signed({**GOOD, "admin": "true"}), "token claims are malformed"),
    ],
    ids=[
        "no-header", "empty", "basic", "scheme-only", "empty-token", "two-tokens", "garbage", "not-json",
        "expired", "other-key", "alg-none", "other-alg", "no-exp", "no-iat", "no-email", "email-not-str",
        "admin-not-bool",
    ],
)
def test_validate_rejections_are_401_json(client, authorization, message):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.post("/validate", headers=headers)

    assert response.status_code == 401
    assert response.get_json() == {"error": message}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mp3converter"'


def test_issue_sets_contract_claims():
    before = int(time.time())
    token = tokens.issue(email="bob@example.com", admin=True, secret=SECRET, lifetime_minutes=5)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert before <= claims["iat"] <= int(time.time())
    assert claims == {"sub": "bob@example.com", "email": "bob@example.com", "admin": True,
                      "iat": claims["iat"], "exp": claims["iat"] + 300}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_decode_round_trip():
    token = tokens.issue(email="bob@example.com", admin=False, secret=SECRET, lifetime_minutes=5)

    assert tokens.decode(token, SECRET)["email"] == "bob@example.com"
