"""HTTP entrypoint: the gateway's public routes; adapters come from the app, logic from upload.py."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote
from uuid import uuid4

import pymongo.errors
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.http import parse_options_header, quote_header_value

from .auth_client import AuthReply
from .errors import BadRequest, NotFound, ServiceUnavailable, Unauthorized
from .jobs import job_view, new_job
from .openapi import OPENAPI
from .options import parse_options
from .upload import receive_upload, too_large

log = logging.getLogger("gateway")
bp = Blueprint("gateway", __name__)

FID_RE = re.compile(r"[0-9a-fA-F]{24}")
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
# RFC 2046 boundary: 1..70 "bchars", not ending in a space.
BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
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
class User:
    email: str
    admin: bool

    def may_see(self, owner: str | None) -> bool:
        return self.admin or (owner is not None and owner == self.email)


def _services():
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
    claims = _services().auth.validate(_bearer_token())
    return User(email=claims["email"], admin=claims.get("admin") is True)


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
    reply = _services().auth.login(header, request.remote_addr)
    return _relay(reply, ok_content_type="text/plain; charset=utf-8")


@bp.post("/users")
def create_user():
    token = _bearer_token()
    request.max_content_length = USERS_BODY_MAX  # werkzeug answers 413 past this
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with email and password")
    return _relay(_services().auth.create_user(token, body, client_addr=request.remote_addr))


@bp.post("/upload")
def upload():
    svc = _services()
    user = _current_user()  # before a single body byte is read: strangers cannot make us store
    key = _idempotency_key()
    if key is not None:
        # Also before the body: a client retrying a finished upload costs one lookup, not a re-upload.
        first = svc.jobs.find_idempotent(user.email, key, now=datetime.now(UTC))
        if first is not None:
            return _replay(svc, first)
    limit = svc.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    boundary = _multipart_boundary()

    job_id = uuid4().hex
    video = receive_upload(
        request.stream,
        boundary,
        storage=svc.storage,
        metadata={"owner": user.email, "job_id": job_id},
        max_body_bytes=limit,
        check_fields=parse_options,
    )
    options = parse_options(video.fields)  # already checked field by field; this builds the dict
    ids = {"job_id": job_id, "video_fid": video.video_fid}
    now = datetime.now(UTC)
    job = new_job(
        job_id=job_id,
        owner=user.email,
        filename=video.filename,
        video_fid=video.video_fid,
        now=now,
        options=options,
        idempotency_key=key,
    )
    try:
        svc.jobs.create(job)
        if key is not None:
            first = svc.jobs.claim_idempotency_key(user.email, key, job_id, now=now)
            if first is not None:
                # A concurrent upload with the same key got there first: one job per key, theirs.
                _discard(svc, job_id, video.video_fid)
                return _replay(svc, first)
    except BaseException:
        _discard(svc, job_id, video.video_fid)
        raise
    try:
        svc.publisher.publish(
            {
                "job_id": job_id,
                "video_fid": video.video_fid,
                "username": user.email,
                "filename": video.filename,
                "options": options,
            }
        )
    except BaseException:
        # Without a message nobody would ever convert this job: undo it so the client can retry.
        svc.metrics.publish_failures.inc()
        _discard(svc, job_id, video.video_fid, key=(user.email, key) if key is not None else None)
        raise
    svc.metrics.upload_bytes.inc(video.size)
    log.info("upload queued", extra={**ids, "bytes": video.size})
    return jsonify(job_id=job_id, status="queued"), 202


def _idempotency_key() -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(raw):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces)", field="Idempotency-Key"
        )
    return raw


def _replay(svc, job: dict):
    svc.metrics.idempotent_replays.inc()
    log.info("idempotent replay", extra={"job_id": job["_id"]})
    return jsonify(job_id=job["_id"], status=job["status"], idempotent_replay=True), 202


def _multipart_boundary() -> bytes:
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise BadRequest("the body must be multipart/form-data with one file part named 'file'")
    boundary = options.get("boundary", "")
    if not BOUNDARY_RE.fullmatch(boundary):
        raise BadRequest("the multipart boundary is missing or invalid")
    return boundary.encode("ascii")


def _discard(svc, job_id: str, video_fid: str, *, key: tuple[str, str] | None = None) -> None:
    """Best-effort rollback of a half-accepted upload; the original error is what the client gets."""
    try:
        svc.jobs.delete(job_id)  # idempotent: fine when the insert itself was what failed
        svc.storage.delete_video(video_fid)
        if key is not None:
            svc.jobs.release_idempotency_key(*key, job_id)
        log.info("upload rolled back", extra={"job_id": job_id, "video_fid": video_fid})
    except Exception:  # noqa: BLE001 - logged; an orphan is better than masking the real error
        log.exception("rollback of a failed upload failed", extra={"job_id": job_id, "video_fid": video_fid})


@bp.get("/jobs")
def list_jobs():
    user = _current_user()
    limit = _int_arg("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    offset = _int_arg("offset", default=0, low=0, high=MAX_OFFSET)
    # Admins list their own jobs here too: seeing everyone's is for GET /jobs/<id> lookups only.
    docs, total = _services().jobs.list_for_owner(user.email, limit=limit, offset=offset)
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
    # A malformed id cannot exist: answer 404 without a database round trip.
    job = _services().jobs.get(job_id) if JOB_ID_RE.fullmatch(job_id) else None
    # Someone else's job is "not found", not "forbidden": ids must not be probeable.
    if job is None or not user.may_see(job.get("owner")):
        raise NotFound("no such job")
    return jsonify(job_view(job))


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    svc = _services()
    user = _current_user()
    if not JOB_ID_RE.fullmatch(job_id):
        raise NotFound("no such job")
    # The job document goes first: it is the converter's signal to drop a queued job, or to delete
    # the MP3 it is making. Deleting the video first would make the conversion fail and mail the user.
    job = svc.jobs.take(job_id, owner=None if user.admin else user.email)
    if job is None:
        raise NotFound("no such job")
    ids = {"job_id": job_id, "video_fid": job.get("video_fid"), "mp3_fid": job.get("mp3_fid")}
    try:
        if job.get("video_fid"):
            svc.storage.delete_video(job["video_fid"])
        if job.get("mp3_fid"):
            svc.storage.delete_mp3(job["mp3_fid"])
        if job.get("idempotency_key"):
            svc.jobs.release_idempotency_key(job["owner"], job["idempotency_key"], job_id)
    except Exception:
        # The job is gone, so a retry would get 404: leave the fids in the log for a manual cleanup.
        log.exception("job deleted but its files could not all be deleted", extra=ids)
        raise
    log.info("job deleted", extra=ids)
    return Response(status=204)


@bp.get("/download")
def download():
    user = _current_user()
    fid = request.args.get("fid", "")
    if not FID_RE.fullmatch(fid):
        raise BadRequest("fid must be 24 hexadecimal characters")
    mp3 = _services().storage.open_mp3(fid)
    if not user.may_see(mp3.owner):
        mp3.close()
        raise NotFound("no such file")
    response = Response(mp3.chunks(), mimetype="audio/mpeg", direct_passthrough=True)
    response.content_length = mp3.length
    response.headers["Content-Disposition"] = attachment(mp3.filename)
    log.info("download started", extra={"mp3_fid": fid, "bytes": mp3.length})
    return response


def attachment(filename: str) -> str:
    """Content-Disposition for `filename`, safe for quotes, non-ASCII and control characters."""
    name = "".join(ch for ch in filename if ch.isprintable()) or "audio.mp3"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        # RFC 6266: an ASCII fallback for old clients plus the exact UTF-8 name in filename*.
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii") or "audio.mp3"
        encoded = quote(name, safe="!#$&+^`|~")
        return f"attachment; filename={quote_header_value(fallback, allow_token=False)}; filename*=UTF-8''{encoded}"
    return f"attachment; filename={quote_header_value(name, allow_token=False)}"


@bp.get("/healthz")
def healthz():
    # Liveness only: a MongoDB outage must not make Kubernetes restart healthy gateway pods.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        _services().storage.ping()
    except pymongo.errors.PyMongoError as exc:
        log.warning("not ready: MongoDB ping failed: %r", exc)
        raise ServiceUnavailable("MongoDB is unreachable") from None
    return jsonify(status="ok")


@bp.get("/metrics")
def metrics():
    return _services().metrics.exposition()


@bp.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)
