"""Unit tests for notification.config: defaults, overrides, fail-fast on bad values, ENV_VARS completeness."""

from __future__ import annotations

import pytest

from notification.config import ENV_VARS, ConfigError, Settings


def test_defaults_suit_a_local_run():
    s = Settings.from_env({})
    assert (s.host, s.metrics_port, s.mp3_queue) == ("127.0.0.1", 9102, "mp3")
    assert (s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_password, s.smtp_from, s.smtp_starttls) == (
        "127.0.0.1", 1025, "", "", "mp3converter@localhost", False)
    assert s.public_url == "http://localhost:8080"
    assert (s.smtp_retry_s, s.notify_give_up_s) == (120, 86400)
    assert s.mongo_uri == "mongodb://127.0.0.1:27017/mp3converter"
    assert s.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_overrides():
    s = Settings.from_env({"SMTP_HOST": "mail", "SMTP_PORT": "587", "SMTP_USER": "u",
                           "SMTP_PASSWORD": " pw ", "SMTP_FROM": "noreply@example.com", "SMTP_STARTTLS": "TRUE",
                           "PUBLIC_URL": "https://mp3.example.com/", "MP3_QUEUE": "m", "METRICS_PORT": "9000",
                           "SMTP_RETRY_SECONDS": "1", "NOTIFY_GIVE_UP_SECONDS": "3600"})
    assert (s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_password, s.smtp_from, s.smtp_starttls) == (
        "mail", 587, "u", " pw ", "noreply@example.com", True)
    assert s.public_url == "https://mp3.example.com"  # no double slash in the curl command
    assert (s.mp3_queue, s.metrics_port) == ("m", 9000)
    assert (s.smtp_retry_s, s.notify_give_up_s) == (1, 3600)
    assert Settings.from_env({}).shutdown_grace_s == 25


def test_reads_exactly_env_vars():
    class Recorder(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    seen: set[str] = set()
    Settings.from_env(Recorder(SMTP_PASSWORD="dev-only-smtp-password", DEV_MODE="true"))
    assert seen == set(ENV_VARS)


def test_a_dev_placeholder_password_needs_dev_mode():
    with pytest.raises(ConfigError, match="SMTP_PASSWORD holds a development placeholder"):
        Settings.from_env({"SMTP_PASSWORD": "dev-only-smtp-password"})
    assert Settings.from_env({"SMTP_PASSWORD": "dev-only-smtp-password", "DEV_MODE": "true"}).smtp_password


def test_secrets_stay_out_of_repr():
    s = Settings.from_env({"SMTP_PASSWORD": "s3cret", "MONGO_URI": "mongodb://u:s3cret@db/x",
                           "RABBITMQ_URL": "amqp://u:s3cret@mq/"})
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(("env", "message"), [
    ({"SMTP_PORT": "smtp"}, "SMTP_PORT must be an integer, got 'smtp'"),
    ({"SMTP_PORT": "70000"}, "SMTP_PORT must be between 1 and 65535, got 70000"),
    ({"METRICS_PORT": "-1"}, "METRICS_PORT must be between 1 and 65535, got -1"),
    ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS must be true or false, got 'maybe'"),
    ({"SHUTDOWN_GRACE_SECONDS": "0"}, "SHUTDOWN_GRACE_SECONDS must be between 1 and 3600, got 0"),
    ({"SMTP_FROM": "nobody"}, "SMTP_FROM='nobody' is not an email address"),
    ({"PUBLIC_URL": "localhost:8080"}, "PUBLIC_URL='localhost:8080' is not an http(s) URL"),
    ({"MONGO_URI": "mongodb://db"}, "MONGO_URI must name the database in its path"),
    ({"RABBITMQ_URL": "redis://mq"}, "RABBITMQ_URL must start with amqp:// or amqps://"),
    ({"SMTP_RETRY_SECONDS": "-1"}, "SMTP_RETRY_SECONDS must be between 1 and 3600, got -1"),
    ({"NOTIFY_GIVE_UP_SECONDS": "0"}, "NOTIFY_GIVE_UP_SECONDS must be between 60 and 2592000, got 0"),
])
def test_bad_values_fail_fast_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
