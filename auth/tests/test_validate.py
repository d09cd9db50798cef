"""POST /validate: good tokens give claims; every kind of bad, revoked or forged token or header is a 401 JSON."""

import re
import time
import warnings
from pathlib import Path

import jwt
import pytest
import yaml
from mp3core.settings import ConfigError

from auth import create_app, tokens
from auth.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "unit-test-jwt-secret-0123456789abcdef"
OTHER_SECRET = "another-secret-that-is-long-enough-0000"
NOW = int(time.time())
# Alice as the fake users fixture holds her (id 1, token version 0) and the default issuer/audience.
GOOD = {"iss": "mp3converter-auth", "aud": "mp3converter", "sub": "alice@example.com", "email": "alice@example.com",
        "admin": False, "uid": 1, "ver": 0, "iat": NOW, "exp": NOW + 600}
POLICY = tokens.TokenPolicy(secret=SECRET, lifetime_minutes=5, issuer="mp3converter-auth", audience="mp3converter")


def signed(claims, key=SECRET, algorithm="HS256"):
    with warnings.catch_warnings():
        # The HS512 case reuses the 37-byte HS256 secret on purpose; PyJWT warns that it is short.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def unsigned(claims):
    # `alg: none` token: header.payload. with an empty signature.
    return jwt.encode(claims, None, algorithm="none")


def without(claim):
    return {k: v for k, v in GOOD.items() if k != claim}


def test_validate_ok_returns_the_claims(client, alice_token):
    response = client.post("/validate", headers={"Authorization": f"Bearer {alice_token}"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == body["sub"] == "alice@example.com"
    assert body["admin"] is False
    assert body["exp"] - body["iat"] == 1800
    assert (body["iss"], body["aud"], body["uid"], body["ver"]) == ("mp3converter-auth", "mp3converter", 1, 0)


def test_the_base_of_the_rejection_cases_is_itself_accepted(client):
    """Each case below changes one thing in GOOD, so that one thing is what gets it refused."""
    response = client.post("/validate", headers={"Authorization": "Bearer " + signed(GOOD)})

    assert response.status_code == 200


def test_validate_accepts_a_lowercase_scheme(client, alice_token):
    response = client.post("/validate", headers={"Authorization": f"bearer {alice_token}"})

    assert response.status_code == 200


REJECTIONS = {
    "no-header": (None, "missing bearer token"),
    "empty": ("", "missing bearer token"),
    "basic": ("Basic YWxpY2U6cHc=", "Authorization scheme must be Bearer"),
    "scheme-only": ("Bearer", "malformed bearer token"),
    "empty-token": ("Bearer ", "malformed bearer token"),
    "two-tokens": ("Bearer a b", "malformed bearer token"),
    "garbage": ("Bearer garbage", "token is invalid"),
    "not-json": ("Bearer a.b.c", "token is invalid"),
    "expired": ("Bearer " + signed({**GOOD, "iat": NOW - 7200, "exp": NOW - 3600}), "token has expired"),
    "other-key": ("Bearer " + signed(GOOD, key=OTHER_SECRET), "token is invalid"),
    "alg-none": ("Bearer " + unsigned(GOOD), "token is invalid"),
    "other-alg": ("Bearer " + signed(GOOD, algorithm="HS512"), "token is invalid"),
    "no-exp": ("Bearer " + signed(without("exp")), "token is invalid"),
    "no-iat": ("Bearer " + signed(without("iat")), "token is invalid"),
    "no-email": ("Bearer " + signed(without("email")), "token is invalid"),
    "no-iss": ("Bearer " + signed(without("iss")), "token is invalid"),
    "no-aud": ("Bearer " + signed(without("aud")), "token is invalid"),
    "no-uid": ("Bearer " + signed(without("uid")), "token is invalid"),
    "no-ver": ("Bearer " + signed(without("ver")), "token is invalid"),
    "other-issuer": ("Bearer " + signed({**GOOD, "iss": "someone-else"}), "token is invalid"),
    "other-audience": ("Bearer " + signed({**GOOD, "aud": "another-service"}), "token is invalid"),
    "email-not-str": ("Bearer " + signed({**GOOD, "email": 42}), "token claims are malformed"),
    "admin-not-bool": ("Bearer " + signed({**GOOD, "admin": "true"}), "token claims are malformed"),
    "uid-not-int": ("Bearer " + signed({**GOOD, "uid": "1"}), "token claims are malformed"),
    "ver-bool": ("Bearer " + signed({**GOOD, "ver": False}), "token claims are malformed"),
    # Valid signature, but living longer than the configured 30 minutes: not a token auth would issue.
    "lifetime-too-long": ("Bearer " + signed({**GOOD, "exp": NOW + 30 * 60 + 1}),
                          "token lifetime exceeds the configured maximum"),
    "lifetime-a-year": ("Bearer " + signed({**GOOD, "iat": NOW - 60, "exp": NOW + 365 * 86400}),
                        "token lifetime exceeds the configured maximum"),
    "unknown-user": ("Bearer " + signed({**GOOD, "uid": 999}), "token has been revoked"),
    "older-version": ("Bearer " + signed({**GOOD, "ver": 1}), "token has been revoked"),
    "uid-of-another-email": ("Bearer " + signed({**GOOD, "email": "mallory@example.com"}), "token has been revoked"),
    "admin-claim-not-the-users": ("Bearer " + signed({**GOOD, "admin": True}), "token has been revoked"),
}


@pytest.mark.parametrize(("authorization", "message"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_validate_rejections_are_401_json(client, authorization, message):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.post("/validate", headers=headers)

    assert response.status_code == 401
    assert response.get_json() == {"error": message}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mp3converter"'


def test_exactly_the_configured_lifetime_is_accepted(client):
    response = client.post("/validate", headers={"Authorization": "Bearer " + signed({**GOOD, "exp": NOW + 30 * 60})})

    assert response.status_code == 200


def test_a_token_of_a_deleted_user_is_refused(client, users, alice_token):
    del users.rows["alice@example.com"]

    response = client.post("/validate", headers={"Authorization": f"Bearer {alice_token}"})

    assert (response.status_code, response.get_json()) == (401, {"error": "token has been revoked"})


def test_issue_sets_contract_claims():
    before = int(time.time())
    token = tokens.issue(user_id=7, email="bob@example.com", admin=True, version=3, policy=POLICY)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="mp3converter")
    assert before <= claims["iat"] <= int(time.time())
    assert claims == {"iss": "mp3converter-auth", "aud": "mp3converter", "sub": "bob@example.com",
                      "email": "bob@example.com", "admin": True, "uid": 7, "ver": 3,
                      "iat": claims["iat"], "exp": claims["iat"] + 300}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_decode_round_trip():
    token = tokens.issue(user_id=7, email="bob@example.com", admin=False, version=0, policy=POLICY)

    assert tokens.decode(token, POLICY)["email"] == "bob@example.com"


def _shipped_placeholder_secrets() -> dict[str, str]:
    secret = yaml.safe_load((ROOT / "auth" / "manifests" / "secret.yaml").read_text())["stringData"]["JWT_SECRET"]
    local = re.search(r'"JWT_SECRET": "([^"]+)"', (ROOT / "scripts" / "run.py").read_text())
    assert local, "scripts/run.py no longer sets JWT_SECRET the way this test expects"
    return {"manifest": secret, "local-run": local.group(1)}


@pytest.mark.parametrize("placeholder", _shipped_placeholder_secrets().values(), ids=_shipped_placeholder_secrets().keys())
def test_a_token_forged_with_a_shipped_placeholder_secret_is_refused_outside_dev_mode(users, throttle, placeholder):
    # Outside dev mode auth does not start with the placeholder at all ...
    with pytest.raises(ConfigError, match="^JWT_SECRET holds a development placeholder"):
        Settings.from_env({"MYSQL_PASSWORD": "real-db-password", "JWT_SECRET": placeholder})
    # ... so it runs with a real secret, and a token signed with the placeholder is just a bad signature.
    app = create_app(Settings.from_env({"MYSQL_PASSWORD": "real-db-password", "JWT_SECRET": SECRET + "-real"}),
                     users=users, throttle=throttle)
    forged = signed({**GOOD, "admin": False}, key=placeholder)

    response = app.test_client().post("/validate", headers={"Authorization": f"Bearer {forged}"})

    assert (response.status_code, response.get_json()) == (401, {"error": "token is invalid"})
