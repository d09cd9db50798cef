"""The Flask services' shared error mapping and request metrics, on a tiny app."""

from __future__ import annotations

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from mp3core import errors
from mp3core.http import HttpMetrics, register_error_handler


class DatabaseDown(Exception):
    pass


@pytest.fixture
def client():
    app = Flask(__name__)
    metrics = HttpMetrics.create("demo", CollectorRegistry())

    @app.get("/fail/<kind>")
    def fail(kind: str):
        raise {"bad": errors.BadRequest("bitrate must be one of 64, 128", field="bitrate"),
               "auth": errors.Unauthorized("invalid or expired token"),
               "slow": errors.TooManyRequests(30),
               "down": DatabaseDown("connection refused"),
               "bug": ZeroDivisionError("oops")}[kind]

    @app.get("/metrics")
    def expose():
        return metrics.exposition()

    register_error_handler(app, unavailable=(DatabaseDown,))
    metrics.install(app)
    app.testing = False  # errors must go through the handler, as in production
    return app.test_client()


@pytest.mark.parametrize(("path", "status", "body", "headers"), [
    ("/fail/bad", 400, {"error": "bitrate must be one of 64, 128", "field": "bitrate"}, {}),
    ("/fail/auth", 401, {"error": "invalid or expired token"}, {"WWW-Authenticate": 'Bearer realm="mp3converter"'}),
    ("/fail/slow", 429, {"error": "too many requests, try again later"}, {"Retry-After": "30"}),
    ("/fail/down", 503, {"error": "a backing service is unavailable, try again later"}, {"Retry-After": "5"}),
    ("/fail/bug", 500, {"error": "internal server error"}, {}),
    ("/nowhere", 404, None, {}),
])
def test_every_failure_is_json(client, path, status, body, headers):
    response = client.get(path)
    assert response.status_code == status and response.is_json
    assert set(response.get_json()) <= {"error", "field"} and response.get_json()["error"]
    if body is not None:
        assert response.get_json() == body
    for name, value in headers.items():
        assert response.headers[name] == value


def test_method_not_allowed_keeps_its_allow_header(client):
    response = client.post("/metrics")
    assert response.status_code == 405 and response.is_json and "GET" in response.headers["Allow"]


def test_requests_are_counted_by_route_template(client):
    client.get("/fail/bad")
    client.get("/fail/auth")
    client.get("/no/such/path/12345")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'demo_http_requests_total{endpoint="/fail/<kind>",method="GET",status="400"} 1.0' in text
    assert 'demo_http_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0' in text
    assert "12345" not in text and "demo_http_request_duration_seconds_bucket" in text
