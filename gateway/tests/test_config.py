"""Settings.from_env: defaults, overrides, fail-fast on bad values, and ENV_VARS completeness."""

from __future__ import annotations

import importlib
import sys

import pytest
from mp3core.settings import ConfigError

from gateway.config import ENV_VARS, MIB, Settings


def test_defaults_suit_a_local_run():
    assert Settings.from_env({}) == Settings(
        host="127.0.0.1",
        port=8080,
        mongo_uri="mongodb://127.0.0.1:27017/mp3converter",
        rabbitmq_url="amqp://guest:guest@127.0.0.1:5672/%2F",
        video_queue="video",
        auth_url="http://127.0.0.1:5000",
        max_upload_bytes=2048 * MIB,
        proxy_hops=0,
        body_read_timeout_s=30,
        max_concurrent_uploads_per_user=3,
        max_jobs_in_flight_per_user=20,
        max_stored_bytes_per_user=10 * 1024 * MIB,
    )


def test_every_variable_is_read():
    env = {
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "MONGO_URI": "mongodb://user:pw@mongo-0.mongo,mongo-1.mongo/converter?replicaSet=rs0",
        "RABBITMQ_URL": "amqp://u:p@rabbitmq:5672/%2F",
        "VIDEO_QUEUE": "videos2",
        "AUTH_SVC_ADDRESS": "auth:5000",
        "MAX_UPLOAD_MB": "10",
        "PROXY_HOPS": "1",
        "BODY_READ_TIMEOUT_S": "12",
        "MAX_CONCURRENT_UPLOADS_PER_USER": "4",
        "MAX_JOBS_IN_FLIGHT_PER_USER": "7",
        "MAX_STORED_MB_PER_USER": "100",
        "DEV_MODE": "false",
    }
    assert set(env) == set(ENV_VARS)
    settings = Settings.from_env(env)
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        mongo_uri=env["MONGO_URI"],
        rabbitmq_url=env["RABBITMQ_URL"],
        video_queue="videos2",
        auth_url="http://auth:5000",
        max_upload_bytes=10 * MIB,
        proxy_hops=1,
        body_read_timeout_s=12,
        max_concurrent_uploads_per_user=4,
        max_jobs_in_flight_per_user=7,
        max_stored_bytes_per_user=100 * MIB,
    )


class RecordingEnv(dict):
    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)


def test_env_vars_lists_exactly_what_is_read():
    env = RecordingEnv()
    env.update(RABBITMQ_URL="amqp://app:dev-only-placeholder@mq:5672/%2F", DEV_MODE="true")  # DEV_MODE is read
    Settings.from_env(env)
    assert env.asked == set(ENV_VARS)


@pytest.mark.parametrize(
    ("address", "url"),
    [("auth:5000", "http://auth:5000"), ("https://auth.example:8443/", "https://auth.example:8443"), ("10.0.0.1:5000", "http://10.0.0.1:5000")],
)
def test_auth_address_gets_a_scheme(address, url):
    assert Settings.from_env({"AUTH_SVC_ADDRESS": address}).auth_url == url


NO_DB = "MONGO_URI must name the database in its path, e.g. mongodb://host:27017/mp3converter"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be an integer, got 'http'"),
        ({"PORT": "0"}, "PORT must be between 1 and 65535, got 0"),
        ({"PORT": "70000"}, "PORT must be between 1 and 65535, got 70000"),
        ({"MAX_UPLOAD_MB": "2GB"}, "MAX_UPLOAD_MB must be an integer, got '2GB'"),
        ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB must be between 1 and 1048576, got 0"),
        ({"PROXY_HOPS": "-1"}, "PROXY_HOPS must be between 0 and 10, got -1"),
        ({"BODY_READ_TIMEOUT_S": "0"}, "BODY_READ_TIMEOUT_S must be between 1 and 3600, got 0"),
        ({"MAX_CONCURRENT_UPLOADS_PER_USER": "0"}, "MAX_CONCURRENT_UPLOADS_PER_USER must be between 1 and 1000, got 0"),
        ({"MAX_JOBS_IN_FLIGHT_PER_USER": "many"}, "MAX_JOBS_IN_FLIGHT_PER_USER must be an integer, got 'many'"),
        ({"MAX_STORED_MB_PER_USER": "0"}, "MAX_STORED_MB_PER_USER must be between 1 and 1073741824, got 0"),
        ({"MONGO_URI": "mongodb://127.0.0.1:27017"}, NO_DB),
        ({"MONGO_URI": "mongodb://user:secret@db:27017/?tls=true"}, NO_DB),
        ({"MONGO_URI": "postgres://user:secret@db/x"}, "MONGO_URI must start with mongodb:// or mongodb+srv://"),
        ({"RABBITMQ_URL": "http://user:secret@rabbitmq:5672/"}, "RABBITMQ_URL must start with amqp:// or amqps://"),
        ({"AUTH_SVC_ADDRESS": "ftp://auth:21"}, "AUTH_SVC_ADDRESS='ftp://auth:21' is not an http(s) URL or host:port"),
    ],
    ids=["port-text", "port-zero", "port-high", "upload-text", "upload-zero", "hops-negative", "read-timeout-zero",
         "uploads-zero", "in-flight-text", "stored-zero", "no-db",
         "no-db-with-password", "mongo-scheme", "amqp-scheme", "auth-scheme"],
)
def test_bad_values_fail_fast_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message
    assert "secret" not in str(caught.value)


def _load_gunicorn_conf(monkeypatch, env):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("gateway.gunicorn_conf", None)
    return importlib.import_module("gateway.gunicorn_conf")


def test_gunicorn_conf_binds_host_port_with_an_event_loop_worker(monkeypatch):
    conf = _load_gunicorn_conf(monkeypatch, {})
    assert conf.bind == "127.0.0.1:8080"
    assert (conf.worker_class, conf.workers) == ("gateway.worker.GatewayWorker", 1)
    assert conf.worker_connections >= 1000
    assert 0 < conf.keepalive <= 10  # also the deadline for a request's headers
    # The errors gunicorn answers itself quote these limits.
    from gateway.worker import MESSAGES

    assert f"at most {conf.limit_request_line} bytes" in MESSAGES[414]
    assert f"at most {conf.limit_request_field_size} bytes" in MESSAGES[431]
    assert f"at most {conf.limit_request_fields})" in MESSAGES[431]
    assert (conf.timeout, conf.graceful_timeout, conf.accesslog) == (120, 30, "-")

    conf = _load_gunicorn_conf(monkeypatch, {"HOST": "0.0.0.0", "PORT": "8081"})
    assert conf.bind == "0.0.0.0:8081"
    conf = _load_gunicorn_conf(monkeypatch, {"HOST": "::"})
    assert conf.bind == "[::]:8080"


def test_gunicorn_conf_exits_with_one_line_on_bad_config(monkeypatch):
    with pytest.raises(SystemExit) as caught:
        _load_gunicorn_conf(monkeypatch, {"PORT": "eighty"})
    assert caught.value.code == "gateway: configuration error: PORT must be an integer, got 'eighty'"
    sys.modules.pop("gateway.gunicorn_conf", None)


def test_credentials_stay_out_of_repr():
    settings = Settings.from_env({"MONGO_URI": "mongodb://u:s3cret@db/x", "RABBITMQ_URL": "amqp://u:s3cret@mq/"})
    assert "s3cret" not in repr(settings)


def test_gunicorns_master_imports_nothing_that_binds_ssl_before_gevent_patches_it():
    """pymongo and urllib3 import `ssl` names directly; imported in the master (before the gevent worker's
    monkey-patching) they would keep the unpatched ones, so TLS to MongoDB would block the event loop."""
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys, gateway.gunicorn_conf, gateway.worker; "
            "print(sorted({'pymongo', 'requests', 'urllib3', 'pika', 'flask'} & {m.split('.')[0] for m in sys.modules}))")
    gateway_dir = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], cwd=gateway_dir, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k not in ENV_VARS})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
