"""Prometheus instruments, registered in a registry owned by one app instance."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    logins: Counter


def create_metrics() -> Metrics:
    # A registry per app (not the global one) so several apps in one test process do not collide.
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        requests=Counter(
            "auth_http_requests_total",
            "HTTP requests by endpoint and status.",
            ["endpoint", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "auth_http_request_duration_seconds", "HTTP request latency by endpoint.", ["endpoint"], registry=registry
        ),
        logins=Counter("auth_logins_total", "Login attempts by outcome.", ["outcome"], registry=registry),
    )
