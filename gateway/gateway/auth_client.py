"""HTTP adapter for the internal auth service: login, token validation, user creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote
from http.cookiejar import DefaultCookiePolicy

import requests
from mp3core.errors import ServiceUnavailable, Unauthorized
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

# (connect, read) seconds: auth is in-cluster, so anything slower means it is in trouble.
TIMEOUT = (3.05, 10)
# One pooled connection per gunicorn thread (gunicorn_conf.threads).
POOL_SIZE = 16
# Auth's response headers worth passing on to the client.
RELAYED_HEADERS = ("Retry-After", "WWW-Authenticate")


@dataclass(frozen=True)
class User:
    """The caller, as auth vouched for them."""

    email: str
    admin: bool

    def may_see(self, owner: str | None) -> bool:
        """Admins see every job and file; everyone else only their own."""
        return self.admin or (owner is not None and owner == self.email)


@dataclass(frozen=True)
class AuthReply:
    """Auth's answer to relay as-is: status, body bytes, content type and relayable headers."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class AuthClient:
    """auth's HTTP API over one pooled session shared by the worker's threads."""

    def __init__(self, base_url: str, *, session: requests.Session | None = None) -> None:
        self._base = base_url.rstrip("/")
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))
            # The session is shared by every user's requests: never keep a cookie one user's
            # answer set, and never route cluster-internal calls through an HTTP(S)_PROXY.
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            session.trust_env = False
        self._session = session

    def login(self, authorization_header: str, client_addr: str | None) -> AuthReply:
        """Forward the client's Basic credentials; auth rate-limits per X-Forwarded-For."""
        headers = {"Authorization": authorization_header}
        if client_addr:
            headers["X-Forwarded-For"] = client_addr
        return _reply(self._post("/login", headers=headers))

    def validate(self, token: str) -> User:
        """The user a valid token was issued to; Unauthorized when auth rejects it."""
        response = self._post("/validate", headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            raise Unauthorized("invalid or expired token")
        if response.status_code != 200:
            raise _unexpected(response)
        try:
            claims = response.json()
        except ValueError:
            raise _unexpected(response) from None
        if not isinstance(claims, dict) or not isinstance(claims.get("email"), str):
            raise _unexpected(response)
        return User(email=claims["email"], admin=claims.get("admin") is True)

    def create_user(self, token: str, json: dict, client_addr: str | None = None) -> AuthReply:
        return _reply(self._post("/users", headers=_headers(token, client_addr), json=json))

    def delete_user(self, token: str, email: str, client_addr: str | None = None) -> AuthReply:
        """Admins only (auth decides); the address travels percent-encoded as one path segment."""
        # Dots encoded too: the HTTP client would resolve a bare ".." segment (DELETE /users/.. -> DELETE /).
        segment = quote(email, safe="").replace(".", "%2E")
        return _reply(self._call("DELETE", "/users/" + segment, headers=_headers(token, client_addr)))

    def change_password(self, token: str, json: dict, client_addr: str | None = None) -> AuthReply:
        """The caller's own password; auth answers a fresh token and counts wrong current passwords."""
        return _reply(self._post("/users/me/password", headers=_headers(token, client_addr), json=json))

    def _post(self, path: str, **kwargs) -> requests.Response:
        return self._call("POST", path, **kwargs)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self._session.request(
                method, self._base + path, timeout=TIMEOUT, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            log.warning("auth service unreachable: %r", exc)
            raise ServiceUnavailable("the auth service is unavailable, try again later") from exc


def _headers(token: str, client_addr: str | None) -> dict[str, str]:
    # The client address lets auth rate-limit per client, as for /login.
    headers = {"Authorization": f"Bearer {token}"}
    if client_addr:
        headers["X-Forwarded-For"] = client_addr
    return headers


def _reply(response: requests.Response) -> AuthReply:
    # Auth's 5xx is its own failure, not the client's: report it as a dependency outage.
    if response.status_code >= 500:
        raise _unexpected(response)
    headers = {name: response.headers[name] for name in RELAYED_HEADERS if name in response.headers}
    return AuthReply(
        status=response.status_code,
        body=response.content,
        content_type=response.headers.get("Content-Type", "application/octet-stream"),
        headers=headers,
    )


def _unexpected(response: requests.Response) -> ServiceUnavailable:
    log.warning("auth service answered %s unexpectedly", response.status_code)
    return ServiceUnavailable("the auth service is unavailable, try again later")
