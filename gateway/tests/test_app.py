"""The app as a whole: JSON errors everywhere, health/readiness, metrics, and the factory's wiring."""

from __future__ import annotations

import logging

import pymongo.errors
import pytest

from gateway import create_app
from gateway.auth_client import AuthClient
from gateway.config import Settings
from gateway.jobs import Jobs
from gateway.publisher import Publisher
from gateway.storage import Storage

JOB_ID = "0123456789abcdef0123456789abcdef"
ALICE = {"Authorization": "Bearer alice-token"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("GET", "/upload", 405),
        ("PATCH", "/jobs/" + JOB_ID, 405),
        ("DELETE", "/jobs", 405),
        ("PUT", "/login", 405),
    ],
)
def test_werkzeug_errors_are_json(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]
    if status == 405:
        assert "Allow" in response.headers


def test_unexpected_exception_is_json_500_without_traceback(client, jobs, caplog):
    jobs.get_error = RuntimeError("secret internal detail")
    with caplog.at_level(logging.ERROR, logger="gateway"):
        response = client.get(f"/jobs/{JOB_ID}", headers=ALICE)
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
    assert b"secret internal detail" not in response.get_data()
    assert b"Traceback" not in response.get_data()
    assert any(r.exc_info for r in caplog.records)  # but the log has the traceback


@pytest.mark.parametrize(
    "error",
    [
        pymongo.errors.ServerSelectionTimeoutError("no servers"),
        pymongo.errors.AutoReconnect("connection reset"),
        pymongo.errors.NetworkTimeout("timed out"),
    ],
    ids=["server-selection", "auto-reconnect", "network-timeout"],
)
def test_mongodb_down_is_503(client, jobs, error):
    jobs.get_error = error
    response = client.get(f"/jobs/{JOB_ID}", headers=ALICE)
    assert response.status_code == 503
    assert response.get_json() == {"error": "a backing service is unavailable, try again later"}


def test_healthz_is_cheap_and_ok_even_when_mongodb_is_down(client, storage):
    storage.ping_error = pymongo.errors.ServerSelectionTimeoutError("down")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_pings_mongodb(client, storage):
    assert client.get("/readyz").get_json() == {"status": "ok"}
    storage.ping_error = pymongo.errors.ServerSelectionTimeoutError("down")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"error": "MongoDB is unreachable"}


def test_metrics_count_requests_by_route_template(client):
    client.get(f"/jobs/{JOB_ID}", headers=ALICE)
    client.get("/jobs/ffffffffffffffffffffffffffffffff", headers=ALICE)
    client.get("/random/scanner/path")
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    # Both job ids share one series: the label is the route template, not the URL.
    assert 'gateway_http_requests_total{endpoint="/jobs/<job_id>",method="GET",status="404"} 2.0' in text
    assert 'gateway_http_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0' in text
    assert 'gateway_http_request_duration_seconds_count{endpoint="/jobs/<job_id>"} 2.0' in text
    assert "gateway_publish_failures_total 0.0" in text


def test_each_app_has_its_own_registry(settings, storage, jobs, publisher, auth):
    first = create_app(settings, storage=storage, jobs=jobs, publisher=publisher, auth=auth)
    second = create_app(settings, storage=storage, jobs=jobs, publisher=publisher, auth=auth)
    first.test_client().get("/healthz")
    text = second.test_client().get("/metrics").get_data(as_text=True)
    assert 'endpoint="/healthz"' not in text


def test_factory_builds_real_adapters_without_touching_the_network():
    # Port 9 on loopback: nothing listens, and nothing must be contacted while building the app.
    settings = Settings.from_env({"MONGO_URI": "mongodb://127.0.0.1:9/factorytest",
                                  "RABBITMQ_URL": "amqp://127.0.0.1:9/%2F", "AUTH_SVC_ADDRESS": "127.0.0.1:9"})
    app = create_app(settings)
    deps = app.extensions["gateway"]
    assert isinstance(deps.storage, Storage)
    assert isinstance(deps.jobs, Jobs)
    assert isinstance(deps.publisher, Publisher)
    assert isinstance(deps.auth, AuthClient)
    assert deps.settings is settings
    assert app.test_client().get("/healthz").status_code == 200
