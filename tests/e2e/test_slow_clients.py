"""Slow and hostile clients against a real gateway (gunicorn's gevent worker): nobody is starved, the slow
are cut off with a clear status, and what gunicorn refuses itself is answered in JSON."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import ExitStack, closing

import pytest
import requests

from tests.e2e.conftest import bearer
from tests.support import local_address, raw_upload_head

pytestmark = pytest.mark.timeout(300)

BOUNDARY = "slow-client-boundary"


def _connect(url: str, timeout: float = 10) -> socket.socket:
    return socket.create_connection(local_address(url), timeout=timeout)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


class Trickle:
    """Sends one byte on every socket each `interval` seconds from one thread until stopped."""

    def __init__(self, socks: list[socket.socket], interval: float) -> None:
        self.socks, self.interval = socks, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for sock in self.socks:
                try:
                    sock.send(b"a")
                except OSError:
                    pass

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- refused by gunicorn itself


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GET /" + b"a" * 10_240 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
         "the request line is too long (at most 4094 bytes)"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 16_384 + b"\r\n\r\n", 431,
         "a request header is too large (at most 8190 bytes) or there are too many (at most 100)"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431,
         "a request header is too large (at most 8190 bytes) or there are too many (at most 100)"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400, "malformed HTTP request"),
    ],
    ids=["10kb-request-line", "16kb-header", "150-headers", "bad-header-name"],
)
def test_requests_gunicorn_refuses_get_a_json_error(stack, request_bytes, status, error):
    with closing(_connect(stack.url)) as sock:
        sock.sendall(request_bytes)
        got, headers, body = _response(sock)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": error}


# ---------------------------------------------------------------- tokens before bodies


@pytest.mark.parametrize("path", ["/users", "/upload"])
def test_a_bad_token_is_refused_before_the_body_arrives(stack, path):
    host, port = local_address(stack.url)
    with closing(_connect(stack.url, timeout=5)) as sock:
        # A syntactically fine token and a promised body that never comes: the answer must not wait for it.
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer not.a.token\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode())
        started = time.monotonic()
        status, headers, body = _response(sock)
    assert time.monotonic() - started < 3
    assert status == 401
    assert json.loads(body) == {"error": "invalid or expired token"}
    assert headers["connection"] == "close"


# ---------------------------------------------------------------- trickling headers


def test_headers_that_trickle_are_cut_off(stack):
    with closing(_connect(stack.url, timeout=30)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 20:
            try:
                sock.send(b"a")
            except OSError:
                closed = True
                break
            sock.settimeout(1)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
    assert closed, "the gateway kept a connection whose headers never ended"
    assert time.monotonic() - started < 10  # gunicorn_conf.keepalive (5 s) plus scheduling


# ---------------------------------------------------------------- many slow clients at once


SLOW = 48  # per kind; the benchmark (bench/bench_slow_clients.py) runs 256 of each


def test_slow_clients_starve_nobody_and_are_cut_off(fresh_stack, clip):
    stack = fresh_stack
    stack.restart("gateway", BODY_READ_TIMEOUT_S="4", MAX_CONCURRENT_UPLOADS_PER_USER=str(SLOW))
    admin = stack.login(*stack.admin)
    _, _, slow_token = stack.create_user(admin)
    _, _, other_token = stack.create_user(admin)

    with ExitStack() as opened:
        bodies = [opened.enter_context(closing(_connect(stack.url))) for _ in range(SLOW)]
        for sock in bodies:
            sock.sendall(raw_upload_head(stack.url, slow_token, BOUNDARY, 10_000_000))
        headers = [opened.enter_context(closing(_connect(stack.url))) for _ in range(SLOW)]
        for sock in headers:
            sock.sendall(b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with Trickle(bodies + headers, interval=1.0):
            time.sleep(2)
            # One more upload than the limit allows: 429 at once, Retry-After, nothing read.
            with closing(_connect(stack.url)) as extra:
                extra.sendall(raw_upload_head(stack.url, slow_token, BOUNDARY, 10_000_000))
                status, got_headers, body = _response(extra)
            assert status == 429, body
            assert got_headers["retry-after"] == "10"
            assert "uploads in progress" in json.loads(body)["error"]

            # Health checks and another user's whole flow go on.
            for _ in range(10):
                started = time.monotonic()
                assert requests.get(f"{stack.url}/healthz", timeout=5).status_code == 200
                assert time.monotonic() - started < 1
            response = stack.upload(other_token, clip)
            assert response.status_code == 202, response.text
            job = stack.wait_job(other_token, response.json()["job_id"])
            assert job["status"] == "done", job
            download = requests.get(f"{stack.url}/download", params={"fid": job["mp3_fid"]},
                                    headers=bearer(other_token), timeout=30)
            assert download.status_code == 200 and download.content[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")

        # The trickle stopped: every body connection is answered 408 once BODY_READ_TIMEOUT_S passes.
        started = time.monotonic()
        for sock in bodies[:5]:
            sock.settimeout(15)
            status, got_headers, body = _response(sock)
            assert status == 408
            assert json.loads(body) == {
                "error": "no part of the request body arrived for 4 s; send it without long pauses"}
            assert got_headers["connection"] == "close"
        assert time.monotonic() - started < 10
