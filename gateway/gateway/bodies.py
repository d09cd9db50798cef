"""Request bodies from slow or hostile clients: a per-read timeout, and no draining of a body we refused."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO

from mp3core.errors import AppError


class BodyReadTimeout(AppError):
    status = 408
    default_message = "the request body stopped arriving; send it without long pauses"


class TimedInput:
    """wsgi.input whose socket-level read timeout (TimeoutError) becomes BodyReadTimeout.

    Not an OSError on purpose: werkzeug's LimitedStream would report an OSError as a client disconnect.
    """

    def __init__(self, stream: IO[bytes], timeout_s: int) -> None:
        self._stream = stream
        self._timeout_s = timeout_s

    def read(self, *args) -> bytes:
        return self._guard(self._stream.read, *args)

    def readline(self, *args) -> bytes:
        return self._guard(self._stream.readline, *args)

    def readlines(self, *args) -> list[bytes]:
        return self._guard(self._stream.readlines, *args)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _guard(self, read: Callable, *args):
        try:
            return read(*args)
        except TimeoutError:
            raise BodyReadTimeout(f"no part of the request body arrived for {self._timeout_s} s; "
                                  "send it without long pauses") from None


class SlowClientGuard:
    """WSGI middleware: every recv() of a request's body waits at most `read_timeout_s` for a byte, and an
    error answered to a request that came with a body closes the connection.

    Closing matters because gunicorn would otherwise read (drain) the rest of a refused body, at the pace
    the client chooses, before the connection could serve its next request.
    """

    def __init__(self, app: Callable, read_timeout_s: int) -> None:
        self.app = app
        self.read_timeout_s = read_timeout_s

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            # gunicorn's socket blocks without limit; under gevent a timeout costs nothing while waiting.
            sock.settimeout(self.read_timeout_s)
        if "wsgi.input" in environ:
            environ["wsgi.input"] = TimedInput(environ["wsgi.input"], self.read_timeout_s)
        has_body = environ.get("CONTENT_LENGTH", "") not in ("", "0") or \
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()

        def start(status: str, headers: list[tuple[str, str]], exc_info=None):
            if has_body and status[:1] in ("4", "5"):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
                # gunicorn drops an application's Connection header (hop-by-hop); its response object,
                # whose method start_response is, closes the connection when told so directly.
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
