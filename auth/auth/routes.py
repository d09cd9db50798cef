"""HTTP entrypoint: the auth blueprint (login, validate, users, password change, healthz, metrics) and header
parsing."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from flask import Blueprint, Request, Response, current_app, jsonify, request

from . import accounts
from .accounts import Throttle, Users
from .config import Settings
from .errors import Forbidden, InvalidCredentials, InvalidToken, TooManyAttempts
from .metrics import Metrics
from .tokens import TokenPolicy

bp = Blueprint("auth", __name__)


@dataclass(frozen=True)
class Deps:
    """What the routes need, built by create_app and kept in app.extensions["auth"]."""

    settings: Settings
    tokens: TokenPolicy
    users: Users
    throttle: Throttle
    metrics: Metrics


def deps() -> Deps:
    return current_app.extensions["auth"]


def parse_basic(header: str | None) -> tuple[str, str]:
    """Return (email, password) from a Basic Authorization header or raise InvalidCredentials."""
    if not header:
        raise InvalidCredentials("missing Authorization header")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidCredentials("Authorization scheme must be Basic")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCredentials("Basic credentials are not valid base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCredentials("Basic credentials are not valid UTF-8") from None
    email, colon, password = text.partition(":")
    if not colon:
        raise InvalidCredentials("Basic credentials must be email:password")
    return email, password


def parse_bearer(header: str | None) -> str:
    """Return the token from a Bearer Authorization header or raise InvalidToken."""
    if not header:
        raise InvalidToken("missing bearer token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise InvalidToken("Authorization scheme must be Bearer")
    if not token or " " in token:
        raise InvalidToken("malformed bearer token")
    return token


def client_address(req: Request) -> str:
    # auth is reachable only from the gateway (a NetworkPolicy enforces it), and the gateway appends
    # the peer it saw, so the LAST X-Forwarded-For entry is the one nobody else could forge.
    forwarded = req.headers.get("X-Forwarded-For", "")
    last = forwarded.split(",")[-1].strip()
    return last or req.remote_addr or "unknown"


@bp.post("/login")
def login() -> Response:
    d = deps()
    try:
        email, password = parse_basic(request.headers.get("Authorization"))
        token = accounts.login(
            email,
            password,
            client_address(request),
            users=d.users,
            throttle=d.throttle,
            policy=d.tokens,
        )
    except TooManyAttempts:
        d.metrics.logins.labels("throttled").inc()
        raise
    except InvalidCredentials:
        d.metrics.logins.labels("failure").inc()
        raise
    d.metrics.logins.labels("success").inc()
    return Response(token, status=200, mimetype="text/plain")


def authenticate(d: Deps) -> tuple[dict, accounts.User]:
    """The caller's verified claims and account, from the Bearer token (checked against MySQL)."""
    return accounts.authenticate(parse_bearer(request.headers.get("Authorization")), users=d.users, policy=d.tokens)


@bp.post("/validate")
def validate() -> Response:
    claims, _ = authenticate(deps())
    return jsonify(claims)


@bp.post("/users")
def create_user() -> tuple[Response, int]:
    d = deps()
    _, caller = authenticate(d)
    if not caller.is_admin:
        raise Forbidden()
    # force: callers need not set Content-Type; silent: bad JSON becomes None and a 400 below.
    email, password, admin = accounts.parse_new_user(request.get_json(force=True, silent=True))
    user = accounts.create_user(email, password, admin=admin, users=d.users)
    return jsonify(email=user.email, admin=user.is_admin), 201


@bp.delete("/users/<path:email>")
def delete_user(email: str) -> Response:
    d = deps()
    _, caller = authenticate(d)
    if not caller.is_admin:
        raise Forbidden()
    accounts.delete_user(email, caller=caller, users=d.users)
    return Response(status=204)


@bp.post("/users/me/password")
def change_password() -> Response:
    d = deps()
    _, caller = authenticate(d)
    current, new = accounts.parse_password_change(request.get_json(force=True, silent=True))
    token = accounts.change_password(
        caller, current, new, client_address(request), users=d.users, throttle=d.throttle, policy=d.tokens
    )
    # The same shape as /login: the caller's earlier tokens are now refused, so they get a fresh one.
    return Response(token, status=200, mimetype="text/plain")


@bp.get("/healthz")
def healthz() -> Response:
    deps().users.ping()  # MySQLdb.OperationalError -> 503 via the app's error handler
    return jsonify(status="ok")


@bp.get("/metrics")
def metrics() -> Response:
    return deps().metrics.http.exposition()
