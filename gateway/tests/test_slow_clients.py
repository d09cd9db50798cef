"""Slow and hostile clients: tokens before bodies, a per-read timeout, per-user limits, gunicorn's own errors."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from contextlib import ExitStack

import pytest
from mp3core.errors import TooManyRequests

from gateway.limits import UploadSlots
from gateway.worker import MESSAGES, json_error

MIB = 1024 * 1024


class StallingStream(io.RawIOBase):
    """A body that hands out `head` and then stalls, as a socket with a read timeout does."""

    def __init__(self, head: bytes) -> None:
        self._head = io.BytesIO(head)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece = self._head.read(size if size and size > 0 else -1)
        if not piece:
            raise TimeoutError("timed out")
        self.bytes_read += len(piece)
        return piece


# ---------------------------------------------------------------- POST /users: the token before the body


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [("bob-token", 403, "only admins may create users"), ("forged", 401, "invalid or expired token")],
    ids=["not-admin", "invalid-token"],
)
def test_users_checks_the_token_before_reading_a_body_byte(client, auth, helpers, token, status, error):
    stream = helpers.TrackingStream(b'{"email": "x@example.com", "password": "long-enough"}')
    response = client.post("/users", headers={"Authorization": f"Bearer {token}"},
                           environ_overrides={"wsgi.input": stream, "CONTENT_TYPE": "application/json",
                                              "CONTENT_LENGTH": "54"})
    assert response.status_code == status
    assert response.get_json() == {"error": error}
    assert stream.bytes_read == 0
    assert response.headers["Connection"] == "close"  # gunicorn must not drain the refused body
    assert [call[0] for call in auth.calls] == ["validate"]


# ---------------------------------------------------------------- per-read timeout


def test_a_body_that_stops_arriving_is_answered_408(post_upload, helpers, storage, jobs):
    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(100_000))])
    response, _ = post_upload(b"", environ={"wsgi.input": StallingStream(body[:50_000]),
                                            "CONTENT_LENGTH": str(len(body))})
    assert response.status_code == 408
    assert response.get_json() == {
        "error": "no part of the request body arrived for 30 s; send it without long pauses"}
    assert response.headers["Connection"] == "close"
    assert jobs.docs == {} and all(w.aborted for w in storage.opened)


def test_users_body_timeout_is_408_not_a_disconnect(client):
    response = client.post("/users", headers={"Authorization": "Bearer admin-token"},
                           environ_overrides={"wsgi.input": StallingStream(b'{"email"'),
                                              "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "60"})
    assert response.status_code == 408
    assert "no part of the request body arrived" in response.get_json()["error"]


class FakeSocket:
    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def settimeout(self, value: float) -> None:
        self.timeouts.append(value)


def test_the_read_timeout_is_set_on_gunicorns_socket(client, settings):
    sock = FakeSocket()
    assert client.get("/healthz", environ_overrides={"gunicorn.socket": sock}).status_code == 200
    assert sock.timeouts == [settings.body_read_timeout_s]


def test_a_successful_request_keeps_the_connection(client):
    assert "Connection" not in client.get("/healthz").headers


class GunicornResponse:
    """What gunicorn passes as start_response: a bound method of its Response, which can force_close()."""

    def __init__(self) -> None:
        self.closed = False
        self.status = None

    def force_close(self) -> None:
        self.closed = True

    def start_response(self, status, headers, exc_info=None):
        self.status = status


@pytest.mark.parametrize(("method", "path", "length", "closed"),
                         [("POST", "/upload", "10", True), ("GET", "/healthz", "", False),
                          ("POST", "/nowhere", "", False)],
                         ids=["refused-body", "ok", "refused-without-body"])
def test_gunicorn_is_told_to_close_after_refusing_a_body(app, method, path, length, closed):
    response = GunicornResponse()
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b"0123456789"), "CONTENT_LENGTH": length}
    b"".join(app.wsgi_app(environ, response.start_response))
    assert response.closed is closed


# ---------------------------------------------------------------- per-user limits


def free_slots(slots: UploadSlots, owner: str) -> int:
    """How many more uploads `owner` may start now, found by holding slots until one is refused."""
    with ExitStack() as held:
        for free in range(slots.per_user + 1):
            try:
                held.enter_context(slots.hold(owner))
            except TooManyRequests:
                return free
    raise AssertionError(f"more than {slots.per_user} slots for {owner}")


def test_concurrent_uploads_past_the_limit_get_429_with_retry_after(app, post_upload, helpers):
    slots = app.extensions["gateway"].quotas.slots
    holding = [slots.hold(helpers.ALICE) for _ in range(slots.per_user)]
    for slot in holding:
        slot.__enter__()
    try:
        response, stream = post_upload(helpers.multipart([("file", "clip.mp4", helpers.video_bytes())]))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "10"
        assert response.get_json() == {"error": "you already have 3 uploads in progress (the most allowed at once); "
                                                "wait for one to finish"}
        assert stream.bytes_read == 0
        # Another user is not affected.
        other, _ = post_upload(helpers.multipart([("file", "clip.mp4", helpers.video_bytes())]), token="bob-token")
        assert other.status_code == 202
    finally:
        for slot in holding:
            slot.__exit__(None, None, None)
    assert free_slots(slots, helpers.ALICE) == slots.per_user
    response, _ = post_upload(helpers.multipart([("file", "clip.mp4", helpers.video_bytes())]))
    assert response.status_code == 202


def test_upload_slots_are_released_when_an_upload_fails(app, post_upload, helpers):
    for _ in range(5):
        response, _ = post_upload(b"garbage")
        assert response.status_code == 400
    slots = app.extensions["gateway"].quotas.slots
    assert free_slots(slots, helpers.ALICE) == slots.per_user


def test_upload_slots_count_per_user_across_threads():
    slots = UploadSlots(2)
    entered, release = threading.Barrier(3), threading.Event()

    def hold():
        with slots.hold("a"):
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait()
    with pytest.raises(Exception) as caught:
        with slots.hold("a"):
            pass
    assert caught.value.status == 429
    with slots.hold("b"):
        assert free_slots(slots, "b") == 1
    release.set()
    for thread in threads:
        thread.join()
    assert free_slots(slots, "a") == 2


@pytest.fixture
def tight(settings):
    return dataclasses.replace(settings, max_jobs_in_flight_per_user=2, max_stored_bytes_per_user=10_000)


@pytest.fixture
def tight_client(tight, storage, jobs, publisher, auth):
    from gateway import create_app

    return create_app(tight, storage=storage, jobs=jobs, publisher=publisher, auth=auth).test_client()


def _upload(client, helpers, size=3000, token="alice-token"):
    body = helpers.multipart([("file", "clip.mp4", helpers.video_bytes(size))])
    stream = helpers.TrackingStream(body)
    response = client.post("/upload", headers={"Authorization": f"Bearer {token}"},
                           environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(len(body)),
                                              "CONTENT_TYPE": f"multipart/form-data; boundary={helpers.BOUNDARY}"})
    return response, stream


def test_jobs_in_flight_past_the_quota_get_429(tight_client, helpers, jobs):
    assert _upload(tight_client, helpers)[0].status_code == 202
    assert _upload(tight_client, helpers)[0].status_code == 202
    response, stream = _upload(tight_client, helpers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert response.get_json() == {"error": "you have 2 jobs queued or converting (the most allowed); "
                                            "wait for one to finish or delete one"}
    assert stream.bytes_read == 0
    assert _upload(tight_client, helpers, token="bob-token")[0].status_code == 202
    # A finished job no longer counts.
    next(iter(jobs.docs.values()))["status"] = "done"
    assert _upload(tight_client, helpers)[0].status_code == 202


QUOTA_413 = {"error": "this upload would exceed your storage quota of 10000 bytes; delete jobs you no longer need"}


def test_stored_bytes_past_the_quota_get_413_before_the_body(tight_client, helpers, storage, jobs):
    storage.add_mp3("f" * 24, filename="old.mp3", owner=helpers.ALICE, data=b"x" * 10_000)
    response, stream = _upload(tight_client, helpers, size=100)
    assert response.status_code == 413
    assert response.get_json() == QUOTA_413
    assert stream.bytes_read == 0 and jobs.docs == {}


def test_an_upload_that_would_pass_the_quota_is_cut_off_with_413(tight_client, helpers, storage, jobs):
    storage.add_mp3("f" * 24, filename="old.mp3", owner=helpers.ALICE, data=b"x" * 6_000)
    response, _ = _upload(tight_client, helpers, size=5_000)
    assert response.status_code == 413
    assert response.get_json() == QUOTA_413
    assert jobs.docs == {} and all(w.aborted for w in storage.opened)
    assert _upload(tight_client, helpers, size=2_000)[0].status_code == 202
    assert storage.bytes_stored(helpers.ALICE) > 6_000


def test_the_upload_size_limit_still_answers_with_its_own_message(client, helpers):
    response, _ = _upload(client, helpers, size=300 * 1024)
    assert response.status_code == 413
    assert response.get_json() == {"error": "the upload is larger than 262144 bytes"}


# ---------------------------------------------------------------- errors gunicorn answers itself


@pytest.mark.parametrize("status", sorted(MESSAGES))
def test_gunicorns_html_errors_become_json(status):
    html = b"<html><body>Invalid header '<script>'</body></html>"
    raw = (f"HTTP/1.1 {status} Some Reason\r\nConnection: close\r\nContent-Type: text/html\r\n"
           f"Content-Length: {len(html)}\r\n\r\n").encode() + html
    head, _, body = json_error(raw).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"HTTP/1.1 {status} Some Reason"
    assert "Content-Type: application/json" in lines and "Connection: close" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"error": MESSAGES[status]}
    assert b"script" not in body


def test_anything_else_is_passed_through():
    assert json_error(b"not a status line") == b"not a status line"
