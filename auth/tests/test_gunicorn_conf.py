"""gunicorn_conf: bind from HOST/PORT, process model, and config validation in the master."""

import importlib

import pytest

from auth import gunicorn_conf
from auth.config import ENV_VARS

GOOD_ENV = {
    "MYSQL_PASSWORD": "unit-test-db-password",  # dev-only placeholder
    "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef",  # dev-only placeholder
}


@pytest.fixture
def load(monkeypatch):
    def _load(**env):
        for name in ("HOST", "PORT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(gunicorn_conf)

    yield _load
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


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


def test_log_config_uses_the_json_formatter(load):
    conf = load()

    assert conf.logconfig_dict["formatters"]["json"]["()"] == "auth.logs.JsonFormatter"
    assert conf.logconfig_dict["handlers"]["stdout"]["stream"] == "ext://sys.stdout"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_on_starting_rejects_bad_configuration_with_one_line(clean_env):
    clean_env.setenv("MYSQL_PASSWORD", "x")

    with pytest.raises(RuntimeError, match=r"^auth configuration error: JWT_SECRET is required but not set$"):
        gunicorn_conf.on_starting(server=None)


def test_on_starting_accepts_good_configuration(clean_env):
    for name, value in GOOD_ENV.items():
        clean_env.setenv(name, value)

    assert gunicorn_conf.on_starting(server=None) is None
