"""Prometheus metrics on a registry owned by the app (so tests can build many apps)."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time until the response headers were ready (a streamed download's body is not included).",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "gateway_upload_bytes_total",
            "Bytes of video stored from accepted uploads.",
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "gateway_publish_failures_total",
            "Uploads whose job message could not be published (the upload was rolled back).",
            registry=self.registry,
        )

    def install(self, app: Flask) -> None:
        """Time every request and count it by route template (bounded label values)."""

        @app.before_request
        def _start_timer() -> None:
            g.metrics_start = time.perf_counter()

        @app.after_request
        def _record(response):
            # Unmatched URLs share one label so scanners cannot blow up the series count.
            endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            method = request.method if request.method in _METHODS else "OTHER"
            self.requests.labels(endpoint, method, str(response.status_code)).inc()
            start = g.get("metrics_start")
            if start is not None:
                self.latency.labels(endpoint).observe(time.perf_counter() - start)
            return response

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)
