"""The one settings reader: defaults, parsers, one-line errors, and dev placeholders refused outside dev mode."""

from __future__ import annotations

import pytest

from mp3core.settings import ConfigError, Env, load


def test_unset_or_blank_means_the_default():
    env = Env({"A": "  ", "B": ""})
    assert (env.str("A", "x"), env.int("B", 3, 1, 9), env.bool("C", True), env.optional("A")) == ("x", 3, True, None)


def test_values_are_parsed_and_stripped():
    env = Env({"S": " v ", "I": " 7 ", "T": "Yes", "F": "off", "P": "8080", "PW": " p w "})
    assert (env.str("S", ""), env.int("I", 0, 1, 9), env.bool("T", False), env.bool("F", True)) == ("v", 7, True, False)
    assert env.port("P", 1) == 8080
    assert env.secret("PW") == " p w "  # a password may start or end with a space


@pytest.mark.parametrize(("environ", "read", "message"), [
    ({"N": "x"}, lambda e: e.int("N", 1, 1, 9), "N must be an integer, got 'x'"),
    ({"N": "10"}, lambda e: e.int("N", 1, 1, 9), "N must be between 1 and 9, got 10"),
    ({"P": "0"}, lambda e: e.port("P", 80), "P must be between 1 and 65535, got 0"),
    ({"B": "maybe"}, lambda e: e.bool("B", False), "B must be true or false, got 'maybe'"),
    ({}, lambda e: e.secret("JWT_SECRET"), "JWT_SECRET is required but not set"),
    ({"MONGO_URI": "postgres://db/x"}, lambda e: e.mongo_uri(), "MONGO_URI must start with mongodb://"),
    ({"MONGO_URI": "mongodb://u:pw@db:27017/?tls=true"}, lambda e: e.mongo_uri(), "MONGO_URI must name the database"),
    ({"RABBITMQ_URL": "http://mq"}, lambda e: e.amqp_url(), "RABBITMQ_URL must start with amqp:// or amqps://"),
    ({"U": "ftp://x"}, lambda e: e.http_url("U", "http://a"), "U='ftp://x' is not an http(s) URL"),
    ({"U": "host:1"}, lambda e: e.http_url("U", "http://a", bare_host_ok=False), "U='host:1' is not an http(s) URL"),
])
def test_bad_values_are_one_line_naming_the_variable(environ, read, message):
    with pytest.raises(ConfigError) as caught:
        read(Env(environ))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert "pw" not in str(caught.value)  # a credential in a URI is never echoed


def test_urls():
    env = Env({"MONGO_URI": "mongodb://u:p@a,b/db?replicaSet=rs0", "A": "auth:5000", "B": "https://x/"})
    assert env.mongo_uri().endswith("/db?replicaSet=rs0")
    assert (env.http_url("A", ""), env.http_url("B", "")) == ("http://auth:5000", "https://x")
    assert Env({}).amqp_url() == "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_a_dev_placeholder_secret_is_refused_unless_dev_mode():
    placeholder = {"JWT_SECRET": "dev-only-placeholder-jwt-secret-0123456789"}
    with pytest.raises(ConfigError, match="JWT_SECRET holds a development placeholder"):
        Env(placeholder).secret("JWT_SECRET")
    assert Env({**placeholder, "DEV_MODE": "true"}).secret("JWT_SECRET") == placeholder["JWT_SECRET"]
    assert Env({"JWT_SECRET": "a real secret"}).secret("JWT_SECRET") == "a real secret"


def test_load_exits_with_one_line(capsys):
    def bad():
        raise ConfigError("PORT must be an integer, got 'x'")

    with pytest.raises(SystemExit) as caught:
        load("gateway", bad)
    assert caught.value.code == "gateway: configuration error: PORT must be an integer, got 'x'"
    assert load("gateway", lambda: 42) == 42


@pytest.mark.parametrize(("name", "value", "read"), [
    ("RABBITMQ_URL", "amqp://app:dev-only-placeholder-rabbitmq@mq:5672/%2F", lambda e: e.amqp_url()),
    ("MONGO_URI", "mongodb://app:pw@db:27017/x?appName=dev-only-placeholder", lambda e: e.mongo_uri()),
])
def test_a_dev_placeholder_in_a_uri_is_refused_unless_dev_mode(name, value, read):
    with pytest.raises(ConfigError, match=f"{name} holds a development placeholder"):
        read(Env({name: value}))
    assert read(Env({name: value, "DEV_MODE": "true"})) == value
