"""HTTP entrypoint: the gateway's public routes, translating requests to use-case calls and back."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

import pymongo.errors
from flask import Blueprint, Response, current_app, jsonify, request
from mp3core.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from werkzeug.http import quote_header_value

from . import actions
from .auth_client import AuthClient, AuthReply, User
from .config import Settings
from .jobs import Jobs, job_view
from .limits import Quotas
from .metrics import Metrics
from .openapi import OPENAPI
from .publisher import Publisher
from .storage import Storage
from .upload import Body, accept_upload

log = logging.getLogger(__name__)
bp = Blueprint("gateway", __name__)

# Visible ASCII, no space (docs/design.md): safe in logs and as a header value.
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")
INT_ARG_RE = re.compile(r"[0-9]{1,9}")  # ASCII digits; the length cap keeps int() cheap
DEFAULT_PAGE = 20
MAX_PAGE = 100
# Deep offsets make MongoDB skip that many index entries; nobody pages this far by hand.
MAX_OFFSET = 1_000_000
USERS_BODY_MAX = 64 * 1024
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="mp3converter"'}


@dataclass(frozen=True)
class Deps:
    """What the routes need, built by create_app and kept in app.extensions["gateway"]."""

    settings: Settings
    storage: Storage
    jobs: Jobs
    publisher: Publisher
    auth: AuthClient
    metrics: Metrics
    quotas: Quotas


def deps() -> Deps:
    return current_app.extensions["gateway"]


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("missing Authorization header; send 'Bearer <token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthorized("malformed Authorization header; send 'Bearer <token>'")
    return token


def _current_user() -> User:
    return deps().auth.validate(_bearer_token())


def _relay(reply: AuthReply, *, ok_content_type: str | None = None) -> Response:
    """Pass auth's answer on: its success body as-is, its 4xx as our JSON error shape."""
    if 200 <= reply.status < 300:
        return Response(
            reply.body, reply.status, headers=reply.headers, content_type=ok_content_type or reply.content_type
        )
    if 400 <= reply.status < 500:
        response = jsonify(error=_error_message(reply.body) or "the request was refused")
        response.status_code = reply.status
        response.headers.update(reply.headers)
        return response
    log.warning("auth service answered %s unexpectedly", reply.status)
    raise ServiceUnavailable("the auth service is unavailable, try again later")


def _error_message(body: bytes) -> str | None:
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) and message else None


@bp.post("/login")
def login():
    header = request.headers.get("Authorization", "")
    if header.partition(" ")[0].lower() != "basic":
        raise Unauthorized("missing credentials; send HTTP Basic email:password", headers=BASIC_CHALLENGE)
    reply = deps().auth.login(header, request.remote_addr)
    return _relay(reply, ok_content_type="text/plain; charset=utf-8")


@bp.post("/users")
def create_user():
    token = _bearer_token()
    # The token is checked before a body byte is read: strangers cannot hold a connection with a slow body.
    if not _current_user().admin:
        raise Forbidden("only admins may create users")
    request.max_content_length = USERS_BODY_MAX  # werkzeug answers 413 past this
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with email and password")
    return _relay(deps().auth.create_user(token, body, client_addr=request.remote_addr))


@bp.delete("/users/<path:email>")
def delete_user(email: str):
    token = _bearer_token()
    if not _current_user().admin:
        raise Forbidden("only admins may delete users")
    return _relay(deps().auth.delete_user(token, email, client_addr=request.remote_addr))


@bp.post("/users/me/password")
def change_password():
    token = _bearer_token()
    _current_user()  # the token is checked before a body byte is read, as for every route with a body
    request.max_content_length = USERS_BODY_MAX  # werkzeug answers 413 past this
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with current_password and new_password")
    reply = deps().auth.change_password(token, body, client_addr=request.remote_addr)
    return _relay(reply, ok_content_type="text/plain; charset=utf-8")


@bp.post("/upload")
def upload():
    d = deps()
    user = _current_user()  # before a single body byte is read: strangers cannot make us store
    body = Body(request.stream, request.headers.get("Content-Type", ""), request.content_length)
    accepted = accept_upload(user.email, _idempotency_key(), body, max_bytes=d.settings.max_upload_bytes,
                             quotas=d.quotas, storage=d.storage, jobs=d.jobs, publisher=d.publisher, metrics=d.metrics)
    if accepted.replay:
        return jsonify(job_id=accepted.job_id, status=accepted.status, idempotent_replay=True), 202
    return jsonify(job_id=accepted.job_id, status=accepted.status), 202


def _idempotency_key() -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(raw):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)", field="Idempotency-Key"
        )
    return raw


@bp.get("/jobs")
def list_jobs():
    user = _current_user()
    limit = _int_arg("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    offset = _int_arg("offset", default=0, low=0, high=MAX_OFFSET)
    # Admins list their own jobs here too: seeing everyone's is for GET /jobs/<id> lookups only.
    docs, total = deps().jobs.list_for_owner(user.email, limit=limit, offset=offset)
    return jsonify(jobs=[job_view(doc) for doc in docs], limit=limit, offset=offset, total=total)


def _int_arg(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not INT_ARG_RE.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    user = _current_user()
    return jsonify(job_view(actions.find_job(job_id, user, jobs=deps().jobs)))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    d = deps()
    actions.delete_job(job_id, _current_user(), jobs=d.jobs, storage=d.storage)
    return Response(status=204)


@bp.get("/download")
def download():
    user = _current_user()
    mp3 = actions.open_download(request.args.get("fid", ""), user, storage=deps().storage)
    response = Response(mp3.chunks(), mimetype="audio/mpeg", direct_passthrough=True)
    response.content_length = mp3.length
    response.headers["Content-Disposition"] = attachment(mp3.filename)
    return response


def attachment(filename: str) -> str:
    """Content-Disposition for `filename`, safe for quotes, non-ASCII and control characters."""
    name = "".join(ch for ch in filename if ch.isprintable()) or "audio.mp3"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        # RFC 6266: an ASCII fallback for old clients plus the exact UTF-8 name in filename*.
        fallback = ascii_fallback(name)
        encoded = quote(name, safe="!#$&+^`|~")
        return f"attachment; filename={quote_header_value(fallback, allow_token=False)}; filename*=UTF-8''{encoded}"
    return f"attachment; filename={quote_header_value(name, allow_token=False)}"


def ascii_fallback(name: str) -> str:
    """`name` in ASCII for the plain filename= parameter, sanitised *after* normalising.

    Compatibility normalisation turns some harmless characters into dangerous ones (the two-dot leader
    and full-width solidus of '‥／' become '../'), so separators and a leading dot are dealt with in
    what normalisation produced, not in what the user sent.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(ch for ch in ascii_name if ch.isprintable())
    ascii_name = ascii_name.replace("/", "_").replace("\\", "_").strip()
    # Nothing before the extension ("日本.mp3" -> ".mp3") would make a hidden file, or a "..": name it.
    if not ascii_name or ascii_name.startswith("."):
        ascii_name = "audio" + ascii_name if ascii_name not in ("", ".", "..") else "audio.mp3"
    return ascii_name


@bp.get("/healthz")
def healthz():
    # Liveness only: a MongoDB outage must not make Kubernetes restart healthy gateway pods.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        deps().storage.ping()
    except pymongo.errors.PyMongoError as exc:
        log.warning("not ready: MongoDB ping failed: %r", exc)
        raise ServiceUnavailable("MongoDB is unreachable") from None
    return jsonify(status="ok")


@bp.get("/metrics")
def metrics():
    return deps().metrics.http.exposition()


@bp.get("/openapi.json")
def openapi():
    # In the document's own order (jsonify would sort the keys): the web page lists the options in this order.
    return Response(json.dumps(OPENAPI), mimetype="application/json")
