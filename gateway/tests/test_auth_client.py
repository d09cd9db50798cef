"""AuthClient: the HTTP calls it makes to auth and how it maps auth's answers and outages."""

from __future__ import annotations

import json as jsonlib
import urllib.request

import pytest
import requests

from gateway.auth_client import TIMEOUT, AuthClient, User
from mp3core.errors import ServiceUnavailable, Unauthorized


class FakeSession:
    """Stands in for requests.Session: records calls, answers from a queue."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls: list[dict] = []

    def request(self, method, url, **kwargs):
        self.calls.append({"method": method, "url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def response(status: int, body: bytes | dict = b"", headers: dict | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    if isinstance(body, dict):
        body = jsonlib.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    r._content = body
    r.headers.update(headers or {})
    return r


CLAIMS = {"sub": "a@example.com", "email": "a@example.com", "admin": False, "iat": 1, "exp": 2}


@pytest.mark.parametrize(
    ("admin", "user"),
    [(False, User("a@example.com", admin=False)), (True, User("a@example.com", admin=True)),
     ("yes", User("a@example.com", admin=False))],
    ids=["user", "admin", "admin-not-a-bool"],
)
def test_validate_posts_bearer_token_and_returns_the_user(admin, user):
    session = FakeSession(response(200, {**CLAIMS, "admin": admin}))
    assert AuthClient("http://auth:5000", session=session).validate("tok") == user
    [call] = session.calls
    assert call["method"] == "POST"
    assert call["url"] == "http://auth:5000/validate"
    assert call["headers"] == {"Authorization": "Bearer tok"}
    assert call["timeout"] == TIMEOUT
    assert call["allow_redirects"] is False


def test_validate_401_is_unauthorized():
    session = FakeSession(response(401, {"error": "token expired"}))
    with pytest.raises(Unauthorized) as caught:
        AuthClient("http://auth:5000", session=session).validate("tok")
    assert caught.value.message == "invalid or expired token"


@pytest.mark.parametrize(
    "answer",
    [
        requests.ConnectionError("refused"),
        requests.Timeout("slow"),
        response(500, {"error": "db down"}),
        response(503, {"error": "db down"}),
        response(200, b"not json"),
        response(200, {"sub": "x"}),  # no email claim
        response(404, b"<html>"),
    ],
    ids=["refused", "timeout", "500", "503", "non-json", "no-email", "404"],
)
def test_validate_when_auth_is_broken_is_503(answer):
    with pytest.raises(ServiceUnavailable) as caught:
        AuthClient("http://auth:5000", session=FakeSession(answer)).validate("tok")
    assert caught.value.status == 503
    assert caught.value.message == "the auth service is unavailable, try again later"


def test_login_forwards_basic_header_and_client_address_and_relays_headers():
    answer = response(429, {"error": "slow down"}, headers={"Retry-After": "30", "X-Internal": "no"})
    session = FakeSession(answer)
    reply = AuthClient("http://auth:5000/", session=session).login("Basic abc", "203.0.113.7")

    assert session.calls[0]["url"] == "http://auth:5000/login"
    assert session.calls[0]["headers"] == {"Authorization": "Basic abc", "X-Forwarded-For": "203.0.113.7"}
    assert reply.status == 429
    assert jsonlib.loads(reply.body) == {"error": "slow down"}
    assert reply.headers == {"Retry-After": "30"}  # only the headers worth relaying


def test_login_5xx_is_503():
    with pytest.raises(ServiceUnavailable):
        AuthClient("http://auth:5000", session=FakeSession(response(502, b"bad gateway"))).login("Basic abc", None)


def test_create_user_sends_json_with_token():
    session = FakeSession(response(201, {"email": "c@example.com", "admin": False}))
    reply = AuthClient("http://auth:5000", session=session).create_user("tok", {"email": "c@example.com"}, "198.51.100.2")

    assert reply.status == 201
    call = session.calls[0]
    assert call["url"] == "http://auth:5000/users"
    assert call["json"] == {"email": "c@example.com"}
    assert call["headers"] == {"Authorization": "Bearer tok", "X-Forwarded-For": "198.51.100.2"}


def test_default_session_keeps_no_cookies_and_ignores_proxy_env():
    client = AuthClient("http://auth:5000")
    session = client._session
    assert session.trust_env is False
    # A cookie set by one user's answer must never ride along on another user's request.
    jar = session.cookies
    cookie = requests.cookies.create_cookie("sid", "secret", domain="auth")
    assert jar.get_policy().set_ok(cookie, urllib.request.Request("http://auth:5000/login")) is False



@pytest.mark.parametrize(("email", "path"), [
    ("ann+x@example.com", "/users/ann%2Bx%40example.com"),
    ("..", "/users/.."),  # kept: a bare ".." in the URL would be resolved away
    ("../validate", "/users/..%2Fvalidate"),
])
def test_delete_user_sends_the_address_as_one_path_segment(email, path):
    session = FakeSession(response(204))
    AuthClient("http://auth:5000", session=session).delete_user("t", email)
    [call] = session.calls
    # What the HTTP client really sends (it decodes %2E back, but only after resolving dot segments).
    assert call["method"] == "DELETE" and requests.Request("DELETE", call["url"]).prepare().path_url == path
