"""Tiny HTTP server in a daemon thread: /healthz (consumer loop alive) and /metrics (Prometheus)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


def serve(host: str, port: int, healthy: Callable[[], bool],
          registry: CollectorRegistry = REGISTRY) -> ThreadingHTTPServer:
    """Starts serving on host:port in a daemon thread and returns the server (server_address has the port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            path = urlsplit(self.path).path
            if path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, "application/json",
                           json.dumps({"status": "ok" if ok else "unavailable"}).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "application/json", json.dumps({"error": "not found"}).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            # Probes hit this every few seconds; access lines would drown the job logs.
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
