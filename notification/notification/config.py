"""Notification settings: environment variables read once into a frozen dataclass; bad values fail fast."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Every variable this service reads; the ConfigMap/Secret and the README's table list the same names.
ENV_VARS = ("HOST", "METRICS_PORT", "MONGO_URI", "RABBITMQ_URL", "MP3_QUEUE", "SMTP_HOST", "SMTP_PORT",
            "SMTP_USER", "SMTP_PASSWORD", "SMTP_FROM", "SMTP_STARTTLS", "PUBLIC_URL")

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A variable is missing or unparsable; the message is one line naming it."""


@dataclass(frozen=True)
class Settings:
    host: str
    metrics_port: int
    # URIs and the SMTP password may be credentials: keep them out of repr() and so out of logs.
    mongo_uri: str = field(repr=False)
    rabbitmq_url: str = field(repr=False)
    mp3_queue: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str = field(repr=False)
    smtp_from: str
    smtp_starttls: bool
    public_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        return cls(
            host=get("HOST", "127.0.0.1"),
            metrics_port=_int("METRICS_PORT", get("METRICS_PORT", "9102")),
            mongo_uri=_mongo_uri(get("MONGO_URI", "mongodb://127.0.0.1:27017/mp3converter")),
            rabbitmq_url=_amqp_url(get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")),
            mp3_queue=get("MP3_QUEUE", "mp3"),
            smtp_host=get("SMTP_HOST", "127.0.0.1"),
            smtp_port=_int("SMTP_PORT", get("SMTP_PORT", "1025")),
            smtp_user=get("SMTP_USER", ""),
            # Not stripped: a password may legitimately start or end with a space.
            smtp_password=environ.get("SMTP_PASSWORD", ""),
            smtp_from=_address("SMTP_FROM", get("SMTP_FROM", "mp3converter@localhost")),
            smtp_starttls=_bool("SMTP_STARTTLS", get("SMTP_STARTTLS", "false")),
            public_url=_public_url(get("PUBLIC_URL", "http://localhost:8080")),
        )


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}={value} is not a port number (1..65535)")
    return value


def _bool(name: str, raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false)")


def _address(name: str, raw: str) -> str:
    if "@" not in raw or any(c in raw for c in "\r\n"):
        raise ConfigError(f"{name}={raw!r} is not an email address")
    return raw


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"PUBLIC_URL={url!r} is not an http(s) URL")
    return url.rstrip("/")


def _mongo_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigError("MONGO_URI must start with mongodb:// or mongodb+srv://")
    if not parts.path.strip("/"):
        raise ConfigError("MONGO_URI must name the database in its path, e.g. mongodb://host:27017/mp3converter")
    return uri


def _amqp_url(url: str) -> str:
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise ConfigError("RABBITMQ_URL must start with amqp:// or amqps://")
    return url
