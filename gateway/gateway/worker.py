"""The gunicorn worker: gevent's, with the errors gunicorn answers before the app runs in our JSON shape."""

from __future__ import annotations

import json
import re

from gunicorn.workers.ggevent import GeventWorker

# What gunicorn refuses itself (request line, headers, framing) gets one fixed message per status:
# never an echo of the offending bytes.
MESSAGES = {
    400: "malformed HTTP request",
    403: "request forbidden",
    414: "the request line is too long (at most 4094 bytes)",
    417: "unsupported Expect header",
    431: "a request header is too large (at most 8190 bytes) or there are too many (at most 100)",
    500: "internal server error",
    501: "unsupported Transfer-Encoding",
}
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")


class GatewayWorker(GeventWorker):
    """gevent's worker; handle_error writes {"error": ...} instead of gunicorn's HTML page."""

    def handle_error(self, req, client, addr, exc):
        super().handle_error(req, _JsonErrors(client), addr, exc)


def json_error(raw: bytes) -> bytes:
    """gunicorn's HTML error response `raw` rewritten as the same status with a JSON body."""
    match = _STATUS_LINE.match(raw)
    if match is None:
        return raw
    status = int(match.group(1))
    body = json.dumps({"error": MESSAGES.get(status, "the request was refused")}).encode()
    head = (f"HTTP/1.1 {status} {match.group(2).decode('latin-1')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class _JsonErrors:
    """The client socket as gunicorn's error writer sees it: what it sends is rewritten by json_error."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(json_error(bytes(data)))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)
