"""auth's Prometheus metrics: the shared HTTP request metrics plus login outcomes, on one registry per app."""

from __future__ import annotations

from dataclasses import dataclass

from mp3core.http import HttpMetrics
from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class Metrics:
    http: HttpMetrics
    logins: Counter


def create_metrics() -> Metrics:
    # A registry per app (not the global one) so several apps in one process do not collide.
    registry = CollectorRegistry()
    return Metrics(
        http=HttpMetrics.create("auth", registry),
        logins=Counter("auth_logins_total", "Login attempts by outcome.", ["outcome"], registry=registry),
    )
