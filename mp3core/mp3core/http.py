"""What both Flask services do the same way: one error-to-HTTP mapping and one set of request metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException

from .errors import AppError, ServiceUnavailable

log = logging.getLogger(__name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_response(message: str, status: int, headers: dict[str, str] | None = None,
                   field: str | None = None) -> Response:
    """The one error body: {"error": message} (plus "field" when one field is at fault)."""
    response = jsonify(error=message) if field is None else jsonify(error=message, field=field)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handler(app: Flask, *, unavailable: tuple[type[BaseException], ...] = ()) -> None:
    """Every failure as JSON: AppError by its status, werkzeug's HTTP errors by theirs, the exception types in
    `unavailable` (a dependency that is down) as 503, anything else as 500 with the traceback logged."""

    def handle(exc: Exception) -> Response | HTTPException:
        if isinstance(exc, AppError):
            return error_response(exc.message, exc.status, exc.headers, exc.field)
        if isinstance(exc, HTTPException):
            if exc.code is None or exc.code < 400:
                return exc  # routing redirects (e.g. a missing trailing slash) are not errors
            # Keep headers such as Allow (405) but not werkzeug's HTML Content-Type.
            headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
            return error_response(exc.description or exc.name, exc.code, headers)
        if isinstance(exc, unavailable):
            log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
            down = ServiceUnavailable()
            return error_response(down.message, down.status, down.headers)
        log.exception("unexpected error", extra={"path": request.path})
        return error_response("internal server error", 500)

    # Registered for Exception so werkzeug's 404/405/413 land here too instead of as HTML pages.
    app.register_error_handler(Exception, handle)


@dataclass(frozen=True)
class HttpMetrics:
    """Requests by route template, method and status, and their latency, on the service's registry."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls, service: str, registry: CollectorRegistry) -> HttpMetrics:
        return cls(
            registry=registry,
            requests=Counter(f"{service}_http_requests_total",
                             "HTTP requests answered, by route template, method and status code.",
                             ["endpoint", "method", "status"], registry=registry),
            latency=Histogram(f"{service}_http_request_duration_seconds",
                              "Time until the response headers were ready (a streamed body is not included).",
                              ["endpoint"], registry=registry,
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)),
        )

    def install(self, app: Flask) -> None:
        """Times every request and counts it by route template (bounded label values)."""

        @app.before_request
        def _start_timer() -> None:
            g.metrics_start = time.perf_counter()

        @app.after_request
        def _record(response: Response) -> Response:
            # Unmatched URLs share one label so scanners cannot blow up the series count.
            endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            method = request.method if request.method in _METHODS else "OTHER"
            self.requests.labels(endpoint, method, str(response.status_code)).inc()
            start = g.get("metrics_start")
            if start is not None:
                self.latency.labels(endpoint).observe(time.perf_counter() - start)
            return response

    def exposition(self) -> Response:
        """The registry in Prometheus' text format, for the service's /metrics route."""
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
