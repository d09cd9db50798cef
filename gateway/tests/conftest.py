"""In-memory fakes of the gateway's adapters and fixtures that build an app around them."""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import pymongo.errors
import pytest

# With --import-mode=importlib pytest names this file "gateway.tests.conftest" and registers an
# empty namespace module "gateway" for the service folder, which would hide the real package
# gateway/gateway/ on sys.path. Drop that placeholder so `import gateway` finds the real one.
if getattr(sys.modules.get("gateway"), "__file__", "") is None:
    del sys.modules["gateway"]

from mp3core.errors import NotFound, ServiceUnavailable, Unauthorized  # noqa: E402

from gateway import create_app  # noqa: E402
from gateway.auth_client import AuthReply, User  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.jobs import IDEMPOTENCY_WINDOW  # noqa: E402
from gateway.storage import Mp3  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@example.com"
ADMIN = "admin@example.com"
TOKENS = {
    "alice-token": User(ALICE, admin=False),
    "bob-token": User(BOB, admin=False),
    "admin-token": User(ADMIN, admin=True),
}
# A minimal ISO-BMFF head: box size, 'ftyp', brand. Enough for the sniffer.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
BOUNDARY = "test-boundary-7MA4YWxkTrZu0gW"


# ---------------------------------------------------------------- storage


class FakeWriter:
    """Mimics pymongo's GridIn: chunks are 'stored' on write; abort() removes them."""

    def __init__(self, storage: FakeStorage, fid: str, filename: str, metadata: dict) -> None:
        self._storage = storage
        self.file_id = fid
        self.filename = filename
        self.metadata = metadata
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        if self._storage.fail_writes_after is not None and len(self.data) + len(data) > self._storage.fail_writes_after:
            raise pymongo.errors.AutoReconnect("connection lost while writing a chunk")
        self.data += data
        self._storage.bytes_written += len(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self._storage.videos.pop(str(self.file_id), None)


class FakeGridOut:
    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.read_sizes: list[int] = []
        self.closed = False

    def read(self, size: int) -> bytes:
        self.read_sizes.append(size)
        return self._stream.read(size)

    def close(self) -> None:
        self.closed = True


class FakeStorage:
    def __init__(self) -> None:
        self.videos: dict[str, FakeWriter] = {}  # fid -> writer (partial or complete)
        self.mp3s: dict[str, tuple[str, str, bytes]] = {}  # fid -> (filename, owner, data)
        self.opened: list[FakeWriter] = []
        self.grid_outs: list[FakeGridOut] = []
        self.bytes_written = 0
        self.fail_writes_after: int | None = None
        self.ping_error: Exception | None = None
        self.delete_error: Exception | None = None
        self.deleted_videos: list[str] = []
        self.deleted_mp3s: list[str] = []
        self._ids = itertools.count(1)

    def open_video_upload(self, filename: str, metadata: dict) -> FakeWriter:
        fid = f"{next(self._ids):024x}"
        writer = FakeWriter(self, fid, filename, metadata)
        self.videos[fid] = writer
        self.opened.append(writer)
        return writer

    def delete_video(self, fid: str) -> None:
        if self.delete_error is not None:
            raise self.delete_error
        self.deleted_videos.append(fid)
        self.videos.pop(fid, None)

    def delete_mp3(self, fid: str) -> None:
        if self.delete_error is not None:
            raise self.delete_error
        self.deleted_mp3s.append(fid)
        self.mp3s.pop(fid, None)

    def add_mp3(self, fid: str, *, filename: str, owner: str, data: bytes) -> None:
        self.mp3s[fid] = (filename, owner, data)

    def open_mp3(self, fid: str) -> Mp3:
        if fid not in self.mp3s:
            raise NotFound("no such file")
        filename, owner, data = self.mp3s[fid]
        grid_out = FakeGridOut(data)
        self.grid_outs.append(grid_out)
        return Mp3(fid=fid, filename=filename, length=len(data), owner=owner, reader=grid_out)

    def ping(self) -> None:
        if self.ping_error is not None:
            raise self.ping_error

    def bytes_stored(self, owner: str) -> int:
        videos = sum(len(w.data) for w in self.videos.values() if w.closed and w.metadata.get("owner") == owner)
        return videos + sum(len(data) for _, who, data in self.mp3s.values() if who == owner)


# ---------------------------------------------------------------- jobs, publisher, auth


class FakeJobs:
    """The jobs collection and the Idempotency-Key claims as dicts, with the real adapter's semantics."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.claims: dict[tuple[str, str], tuple[str, datetime]] = {}  # (owner, key) -> (job_id, created_at)
        self.create_error: Exception | None = None
        self.get_error: Exception | None = None
        self.take_error: Exception | None = None
        self.count_error: Exception | None = None
        self.count_calls = 0
        self.lookups: list[tuple[str, str]] = []
        # True plays a concurrent duplicate: its claim exists but was not there yet at lookup time.
        self.lookup_misses = False

    def create(self, job: dict) -> None:
        if self.create_error is not None:
            raise self.create_error
        assert job["_id"] not in self.docs
        self.docs[job["_id"]] = dict(job)

    def get(self, job_id: str) -> dict | None:
        if self.get_error is not None:
            raise self.get_error
        return self.docs.get(job_id)

    def delete(self, job_id: str) -> None:
        self.docs.pop(job_id, None)

    def take(self, job_id: str, *, owner: str | None) -> dict | None:
        if self.take_error is not None:
            raise self.take_error
        doc = self.docs.get(job_id)
        if doc is None or (owner is not None and doc["owner"] != owner):
            return None
        return self.docs.pop(job_id)

    def list_for_owner(self, owner: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
        if self.get_error is not None:
            raise self.get_error
        mine = [d for d in self.docs.values() if d["owner"] == owner]
        mine.sort(key=lambda d: (d["created_at"], d["_id"]), reverse=True)
        return [dict(d) for d in mine[offset : offset + limit]], len(mine)

    def count_in_flight(self, owner: str) -> int:
        return sum(1 for d in self.docs.values() if d["owner"] == owner and d["status"] in ("queued", "converting"))

    def count_by_status(self) -> dict[str, int]:
        self.count_calls += 1
        if self.count_error is not None:
            raise self.count_error
        return dict(collections.Counter(d["status"] for d in self.docs.values()))

    def find_idempotent(self, owner: str, key: str, *, now: datetime) -> dict | None:
        self.lookups.append((owner, key))
        claim = self.claims.get((owner, key))
        if self.lookup_misses or claim is None or claim[1] < now - IDEMPOTENCY_WINDOW:
            return None
        return self.docs.get(claim[0])

    def claim_idempotency_key(self, owner: str, key: str, job_id: str, *, now: datetime) -> dict | None:
        claim = self.claims.get((owner, key))
        if claim is not None and claim[0] != job_id and claim[1] >= now - IDEMPOTENCY_WINDOW and claim[0] in self.docs:
            return self.docs[claim[0]]
        self.claims[(owner, key)] = (job_id, now)
        return None

    def release_idempotency_key(self, owner: str, key: str, job_id: str) -> None:
        if self.claims.get((owner, key), (None,))[0] == job_id:
            del self.claims[(owner, key)]


class FakePublisher:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.error: Exception | None = None

    def publish(self, message: dict) -> None:
        if self.error is not None:
            raise self.error
        self.messages.append(message)


@dataclass
class FakeAuth:
    tokens: dict = field(default_factory=lambda: dict(TOKENS))
    down: bool = False
    reply: AuthReply = field(default_factory=lambda: AuthReply(200, b"jwt-for-alice", "text/plain", {}))
    calls: list = field(default_factory=list)

    def _check_up(self) -> None:
        if self.down:
            raise ServiceUnavailable("the auth service is unavailable, try again later")

    def validate(self, token: str) -> User:
        self.calls.append(("validate", token))
        self._check_up()
        if token not in self.tokens:
            raise Unauthorized("invalid or expired token")
        return self.tokens[token]

    def login(self, authorization_header: str, client_addr: str | None) -> AuthReply:
        return self._relayed("login", authorization_header, client_addr)

    def create_user(self, token: str, json: dict, client_addr: str | None = None) -> AuthReply:
        return self._relayed("create_user", token, json, client_addr)

    def delete_user(self, token: str, email: str, client_addr: str | None = None) -> AuthReply:
        return self._relayed("delete_user", token, email, client_addr)

    def change_password(self, token: str, json: dict, client_addr: str | None = None) -> AuthReply:
        return self._relayed("change_password", token, json, client_addr)

    def _relayed(self, *call: object) -> AuthReply:
        """Records a relayed call and answers `reply` (auth's answer, passed on as-is)."""
        self.calls.append(call)
        self._check_up()
        return self.reply


# ---------------------------------------------------------------- request bodies


class TrackingStream(io.RawIOBase):
    """A wsgi.input that records how much was read, optionally handing out tiny pieces."""

    def __init__(self, data: bytes, max_read: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._max_read = max_read
        self.bytes_read = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self._max_read is not None and (size is None or size < 0 or size > self._max_read):
            size = self._max_read
        piece = self._data.read(size)
        self.bytes_read += len(piece)
        return piece

    def readinto(self, buffer) -> int:
        piece = self.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


def multipart(parts, boundary: str = BOUNDARY) -> bytes:
    """Encode [(name, filename or None, data), ...] as multipart/form-data with CRLF line breaks."""
    out = bytearray()
    for name, filename, data in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out)


def video_bytes(size: int = 4096) -> bytes:
    """MP4-looking bytes whose body is full of CR, LF and '-' to tempt a sloppy parser."""
    filler = b"\r\n--\r\n-\r-\n" + uuid.UUID(int=7).bytes
    body = (filler * (size // len(filler) + 1))[: max(0, size - len(MP4_HEAD))]
    return MP4_HEAD + body


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def jobs() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def auth() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(Settings.from_env({}), max_upload_bytes=256 * 1024)


@pytest.fixture
def app(settings, storage, jobs, publisher, auth):
    app = create_app(settings, storage=storage, jobs=jobs, publisher=publisher, auth=auth)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def post_upload(client):
    """POST /upload with a raw body; returns (response, the TrackingStream that fed it)."""

    def post(
        body: bytes,
        *,
        token: str | None = "alice-token",
        content_type: str | None = f"multipart/form-data; boundary={BOUNDARY}",
        chunked: bool = False,
        max_read: int | None = None,
        authorization: str | None = None,
        headers: dict[str, str] | None = None,
        environ: dict[str, str] | None = None,
    ):
        stream = TrackingStream(body, max_read=max_read)
        headers = dict(headers or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # Set in the environ, not headers: the test client would replace a multipart boundary.
        overrides = {"wsgi.input": stream, "CONTENT_TYPE": content_type or ""}
        if chunked:
            # What gunicorn does for Transfer-Encoding: chunked: no length, stream ends by itself.
            overrides["wsgi.input_terminated"] = True
            overrides["HTTP_TRANSFER_ENCODING"] = "chunked"
            overrides["CONTENT_LENGTH"] = ""
        else:
            overrides["CONTENT_LENGTH"] = str(len(body))
        # Raw environ entries last: they can carry header values the test client would refuse.
        response = client.post("/upload", headers=headers, environ_overrides={**overrides, **(environ or {})})
        return response, stream

    return post


@pytest.fixture
def helpers():
    """Body builders for tests (test modules cannot import conftest under importlib mode)."""

    class Helpers:
        BOUNDARY = BOUNDARY
        MP4_HEAD = MP4_HEAD
        ALICE = ALICE
        BOB = BOB
        ADMIN = ADMIN
        multipart = staticmethod(multipart)
        video_bytes = staticmethod(video_bytes)
        TrackingStream = TrackingStream

    return Helpers
