"""POST /login and POST /users relay auth's answers; the client's address reaches auth."""

from __future__ import annotations

import dataclasses

import pytest

from gateway import create_app
from gateway.auth_client import AuthReply

BASIC = "Basic YWxpY2VAZXhhbXBsZS5jb206c2VjcmV0LXBhc3M="


def test_login_relays_the_jwt_as_text(client, auth):
    auth.reply = AuthReply(200, b"header.payload.signature", "text/html", {})
    response = client.post("/login", headers={"Authorization": BASIC}, environ_base={"REMOTE_ADDR": "203.0.113.7"})

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data() == b"header.payload.signature"
    assert auth.calls == [("login", BASIC, "203.0.113.7")]


@pytest.mark.parametrize(
    ("reply", "error", "headers"),
    [
        (
            AuthReply(401, b'{"error": "invalid credentials"}', "application/json", {"WWW-Authenticate": 'Basic realm="mp3converter"'}),
            "invalid credentials",
            {"WWW-Authenticate": 'Basic realm="mp3converter"'},
        ),
        (
            AuthReply(429, b'{"error": "too many attempts, retry later"}', "application/json", {"Retry-After": "30"}),
            "too many attempts, retry later",
            {"Retry-After": "30"},
        ),
        (AuthReply(400, b"<html>bad</html>", "text/html", {}), "the request was refused", {}),
    ],
    ids=["bad-credentials", "rate-limited", "non-json-error"],
)
def test_login_relays_auth_errors_as_json(client, auth, reply, error, headers):
    auth.reply = reply
    response = client.post("/login", headers={"Authorization": BASIC})

    assert response.status_code == reply.status
    assert response.get_json() == {"error": error}
    for name, value in headers.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer abc", "Basicabc"],
    ids=["missing", "bearer", "no-space"],
)
def test_login_without_basic_credentials_is_401_without_calling_auth(client, auth, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/login", headers=headers)

    assert response.status_code == 401
    assert response.get_json() == {"error": "missing credentials; send HTTP Basic email:password"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="mp3converter"'
    assert auth.calls == []


@pytest.mark.parametrize(
    ("setup", "status", "error"),
    [
        ("down", 503, "the auth service is unavailable, try again later"),
        ("redirect", 503, "the auth service is unavailable, try again later"),
    ],
)
def test_login_when_auth_fails_is_503(client, auth, setup, status, error):
    if setup == "down":
        auth.down = True
    else:
        auth.reply = AuthReply(302, b"", "text/plain", {})
    response = client.post("/login", headers={"Authorization": BASIC})
    assert response.status_code == status
    assert response.get_json() == {"error": error}
    assert response.headers["Retry-After"] == "5"


def test_client_address_behind_one_proxy_comes_from_x_forwarded_for(settings, storage, jobs, publisher, auth):
    app = create_app(dataclasses.replace(settings, proxy_hops=1), storage=storage, jobs=jobs, publisher=publisher, auth=auth)
    response = app.test_client().post(
        "/login",
        headers={"Authorization": BASIC, "X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.5"},  # the ingress controller's pod address
    )
    assert response.status_code == 200
    # Only the hop the trusted proxy appended counts; the client-supplied first entry is ignored.
    assert auth.calls == [("login", BASIC, "203.0.113.9")]


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client, auth):
    client.post(
        "/login",
        headers={"Authorization": BASIC, "X-Forwarded-For": "198.51.100.1"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert auth.calls == [("login", BASIC, "203.0.113.7")]


NEW_USER = {"email": "carol@example.com", "password": "carol-password", "admin": False}


def test_create_user_relays_201(client, auth):
    auth.reply = AuthReply(201, b'{"email": "carol@example.com", "admin": false}', "application/json", {})
    response = client.post("/users", json=NEW_USER, headers={"Authorization": "Bearer admin-token"})

    assert response.status_code == 201
    assert response.get_json() == {"email": "carol@example.com", "admin": False}
    assert auth.calls[0] == ("validate", "admin-token")  # before the body is read
    assert auth.calls[1][:3] == ("create_user", "admin-token", NEW_USER)


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "password must be 8 to 1024 characters"), (401, "invalid or expired token"), (403, "admin only"), (409, "user exists")],
)
def test_create_user_relays_auth_errors(client, auth, status, error):
    auth.reply = AuthReply(status, f'{{"error": "{error}"}}'.encode(), "application/json", {})
    response = client.post("/users", json=NEW_USER, headers={"Authorization": "Bearer admin-token"})
    assert response.status_code == status
    assert response.get_json() == {"error": error}


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"json": NEW_USER}, 401, "missing Authorization header; send 'Bearer <token>'"),
        (
            {"json": NEW_USER, "headers": {"Authorization": "Basic abc"}},
            401,
            "malformed Authorization header; send 'Bearer <token>'",
        ),
        (
            {"data": b"{not json", "content_type": "application/json", "headers": {"Authorization": "Bearer admin-token"}},
            400,
            "the body must be a JSON object with email and password",
        ),
        (
            {"json": ["a", "list"], "headers": {"Authorization": "Bearer admin-token"}},
            400,
            "the body must be a JSON object with email and password",
        ),
        (
            {"data": b"email=x", "content_type": "application/x-www-form-urlencoded", "headers": {"Authorization": "Bearer admin-token"}},
            400,
            "the body must be a JSON object with email and password",
        ),
    ],
    ids=["no-token", "basic-token", "invalid-json", "json-list", "form-body"],
)
def test_create_user_bad_requests_are_answered_without_auth(client, auth, kwargs, status, error):
    response = client.post("/users", **kwargs)
    assert response.status_code == status
    assert response.get_json() == {"error": error}
    assert [call for call in auth.calls if call[0] == "create_user"] == []


def test_create_user_body_over_64_kib_is_413(client, auth):
    body = {"email": "x@example.com", "password": "p" * (70 * 1024)}
    response = client.post("/users", json=body, headers={"Authorization": "Bearer admin-token"})
    assert response.status_code == 413
    assert set(response.get_json()) == {"error"}
    assert [call for call in auth.calls if call[0] == "create_user"] == []


def test_delete_user_relays_to_auth_for_admins_only(client, auth):
    auth.reply = AuthReply(204, b"", "text/plain", {})
    response = client.delete("/users/ann%2Bx@example.com", headers={"Authorization": "Bearer admin-token"},
                             environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert response.status_code == 204
    assert auth.calls[-1] == ("delete_user", "admin-token", "ann+x@example.com", "203.0.113.7")

    calls = len(auth.calls)
    response = client.delete("/users/bob@example.com", headers={"Authorization": "Bearer alice-token"})
    assert response.status_code == 403 and response.get_json() == {"error": "only admins may delete users"}
    assert not [c for c in auth.calls[calls:] if c[0] == "delete_user"]


def test_password_change_checks_the_token_before_reading_the_body(client, auth):
    response = client.post("/users/me/password", headers={"Authorization": "Bearer forged"},
                           json={"current_password": "x", "new_password": "y" * 8})
    assert response.status_code == 401 and not [c for c in auth.calls if c[0] == "change_password"]

    response = client.post("/users/me/password", headers={"Authorization": "Bearer alice-token"}, data=b"[1]",
                           content_type="application/json")
    assert response.status_code == 400 and "current_password" in response.get_json()["error"]


def test_password_change_relays_the_fresh_token_and_auth_errors(client, auth):
    body = {"current_password": "old password", "new_password": "new password"}
    auth.reply = AuthReply(200, b"fresh.jwt.token", "text/html", {})
    response = client.post("/users/me/password", headers={"Authorization": "Bearer alice-token"}, json=body)
    assert (response.status_code, response.mimetype, response.get_data()) == (200, "text/plain", b"fresh.jwt.token")
    assert auth.calls[-1][0:3] == ("change_password", "alice-token", body)

    auth.reply = AuthReply(429, b'{"error": "too many failed logins"}', "application/json", {"Retry-After": "60"})
    response = client.post("/users/me/password", headers={"Authorization": "Bearer alice-token"}, json=body)
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
