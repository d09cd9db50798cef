"""In-memory fakes of the gateway's adapters and fixtures that build an app around them."""

from __future__ import annotations

import io
import itertools
import sys
import uuid
from dataclasses import dataclass, field

import pymongo.errors
import pytest

# With --import-mode=importlib pytest names this file "gateway.tests.conftest" and registers an
# empty namespace module "gateway" for the service folder, which would hide the real package
# gateway/gateway/ on sys.path. Drop that placeholder so `import gateway` finds the real one.
if getattr(sys.modules.get("gateway"), "__file__", "") is None:
    del sys.modules["gateway"]

from gateway import create_app  # noqa: E402
from gateway.auth_client import AuthReply  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.errors import NotFound, ServiceUnavailable, Unauthorized  # noqa: E402
from gateway.storage import Mp3  # noqa: E402

ALICE = "alice@example.com"
BOB = "bob@example.com"
ADMIN = "admin@example.com"
TOKENS = {
    "alice-token": {"sub": ALICE, "email": ALICE, "admin": False},
    "bob-token": {"sub": BOB, "email": BOB, "admin": False},
    "admin-token": {"sub": ADMIN, "email": ADMIN, "admin": True},
}
# A minimal ISO-BMFF head: box size, 'ftyp', brand. Enough for the sniffer.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
BOUNDARY = "test-boundary-7MA4YWxkTrZu0gW"


# ---------------------------------------------------------------- storage


class FakeWriter:
    """Mimics pymongo's GridIn: chunks are 'stored' on write; abort() removes them."""

    def __init__(self, storage: FakeStorage, fid: str, filename: str, metadata: dict) -> None:
        self._storage = storage
        self._id = fid
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
        self._storage.videos.pop(str(self._id), None)


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
        self._ids = itertools.count(1)

    def open_video_upload(self, filename: str, metadata: dict) -> FakeWriter:
        fid = f"{next(self._ids):024x}"
        writer = FakeWriter(self, fid, filename, metadata)
        self.videos[fid] = writer
        self.opened.append(writer)
        return writer

    def delete_video(self, fid: str) -> None:
        self.videos.pop(fid, None)

    def add_mp3(self, fid: str, *, filename: str, owner: str, data: bytes) -> None:
        self.mp3s[fid] = (filename, owner, data)

    def open_mp3(self, fid: str) -> Mp3:
        if fid not in self.mp3s:
            raise NotFound("no such file")
        filename, owner, data = self.mp3s[fid]
        grid_out = FakeGridOut(data)
        self.grid_outs.append(grid_out)
        return Mp3(fid=fid, filename=filename, length=len(data), owner=owner, grid_out=grid_out)

    def ping(self) -> None:
        if self.ping_error is not None:
            raise self.ping_error


# ---------------------------------------------------------------- jobs, publisher, auth


class FakeJobs:
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.create_error: Exception | None = None
        self.get_error: Exception | None = None

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

    def validate(self, token: str) -> dict:
        self.calls.append(("validate", token))
        self._check_up()
        if token not in self.tokens:
            raise Unauthorized("invalid or expired token")
        return self.tokens[token]

    def login(self, authorization_header: str, client_addr: str | None) -> AuthReply:
        self.calls.append(("login", authorization_header, client_addr))
        self._check_up()
        return self.reply

    def create_user(self, token: str, json: dict, client_addr: str | None = None) -> AuthReply:
        self.calls.append(("create_user", token, json, client_addr))
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
    return Settings(max_upload_bytes=256 * 1024)


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
    ):
        stream = TrackingStream(body, max_read=max_read)
        headers = {}
        if authorization is not None:
            headers["Authorization"] = authorization
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # Set in the environ, not headers: the test client would replace a multipart boundary.
        environ = {"wsgi.input": stream, "CONTENT_TYPE": content_type or ""}
        if chunked:
            # What gunicorn does for Transfer-Encoding: chunked: no length, stream ends by itself.
            environ["wsgi.input_terminated"] = True
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
            environ["CONTENT_LENGTH"] = ""
        else:
            environ["CONTENT_LENGTH"] = str(len(body))
        response = client.post("/upload", headers=headers, environ_overrides=environ)
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
