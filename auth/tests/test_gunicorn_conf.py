"""gunicorn_conf: bind from Settings, process model, shared log config, config validated at load."""

import importlib
import sys

import pytest
from mp3core.logs import GUNICORN_LOGCONFIG

import auth
from auth.config import ENV_VARS

GOOD_ENV = {"MYSQL_PASSWORD": "unit-test-db-password", "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef"}


@pytest.fixture
def load(monkeypatch):
    """Imports gunicorn_conf afresh in an environment holding only GOOD_ENV plus `env`, as gunicorn would."""

    def _load(**env):
        for name in ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**GOOD_ENV, **env}.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop("auth.gunicorn_conf", None)
        return importlib.import_module("auth.gunicorn_conf")

    yield _load
    sys.modules.pop("auth.gunicorn_conf", None)


@pytest.mark.parametrize(
    ("env", "bind"),
    [
        ({}, "127.0.0.1:5000"),
        ({"HOST": "0.0.0.0", "PORT": "8000"}, "0.0.0.0:8000"),
        ({"HOST": "::"}, "[::]:5000"),
    ],
)
def test_bind_comes_from_host_and_port(load, env, bind):
    assert load(**env).bind == bind


def test_process_model(load):
    conf = load()

    assert (conf.workers, conf.worker_class, conf.threads) == (1, "gthread", 4)
    assert (conf.timeout, conf.graceful_timeout, conf.accesslog) == (30, 20, "-")
    assert conf.control_socket_disable is True


def test_startup_retry_bound_is_below_gunicorn_timeout(load):
    from auth import db

    # gunicorn kills a worker that has not booted within `timeout`; the retry must give up first.
    assert auth.STARTUP_RETRY_SECONDS + db.CONNECT_TIMEOUT < load().timeout


def test_logs_use_the_shared_json_config(load):
    assert load().logconfig_dict is GUNICORN_LOGCONFIG


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_SECRET": ""}, "auth: configuration error: JWT_SECRET is required but not set"),
        ({"PORT": "http"}, "auth: configuration error: PORT must be an integer, got 'http'"),
    ],
)
def test_bad_configuration_exits_with_one_line(load, env, message):
    with pytest.raises(SystemExit) as excinfo:
        load(**env)

    assert excinfo.value.code == message
