"""Unit tests for the JSON log format and the /healthz + /metrics server."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from mp3core import health, logs


def _format(**extra) -> dict:
    record = logging.LogRecord("converter.handler", logging.INFO, __file__, 1, "converted %s", ("ok",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(logs.JsonFormatter().format(record))


def test_log_line_is_json_with_message_and_level():
    entry = _format()
    assert entry["msg"] == "converted ok" and entry["level"] == "INFO" and entry["logger"] == "converter.handler"
    assert "job_id" not in entry and entry["ts"].endswith("+00:00")


def test_log_line_inside_job_context_carries_job_id_and_extras():
    with logs.job_context("0123456789abcdef0123456789abcdef"):
        entry = _format(mp3_fid="65a1b2c3d4e5f60718293a4b")
    assert entry["job_id"] == "0123456789abcdef0123456789abcdef"
    assert entry["mp3_fid"] == "65a1b2c3d4e5f60718293a4b"
    assert "job_id" not in _format()  # context is reset on exit


def test_exceptions_are_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc"]


@pytest.fixture
def server():
    state = {"healthy": True}
    registry = CollectorRegistry()
    Counter("converter_demo_total", "demo", registry=registry).inc()
    srv = health.serve("127.0.0.1", 0, lambda: state["healthy"], registry)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base, state
    srv.shutdown()
    srv.server_close()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_healthz_follows_the_consumer(server):
    base, state = server
    assert _get(base + "/healthz") == (200, "application/json", '{"status": "ok"}')
    state["healthy"] = False
    assert _get(base + "/healthz") == (503, "application/json", '{"status": "unavailable"}')


def test_metrics_are_prometheus_text(server):
    base, _ = server
    status, content_type, body = _get(base + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert "converter_demo_total 1.0" in body


def test_unknown_path_is_json_404(server):
    base, _ = server
    assert _get(base + "/nope") == (404, "application/json", '{"error": "not found"}')


def test_an_extra_cannot_replace_a_schema_field():
    # (`msg` itself cannot be an extra: logging refuses to overwrite a LogRecord attribute.)
    entry = _format(level="DEBUG", ts="yesterday", logger="other", detail="kept")
    assert (entry["msg"], entry["level"], entry["logger"]) == ("converted ok", "INFO", "converter.handler")
    assert entry["ts"] != "yesterday" and entry["detail"] == "kept"
