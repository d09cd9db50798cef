"""Gateway settings: every environment variable is read once, here, into a frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Every variable the gateway reads, including HOST/PORT which only gunicorn_conf uses.
ENV_VARS = (
    "HOST",
    "PORT",
    "MONGO_URI",
    "RABBITMQ_URL",
    "VIDEO_QUEUE",
    "AUTH_SVC_ADDRESS",
    "MAX_UPLOAD_MB",
    "PROXY_HOPS",
)

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A missing or unparsable environment variable; the service exits with this one-line message."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    mongo_uri: str = "mongodb://127.0.0.1:27017/mp3converter"
    # Dev-only placeholder credentials (RabbitMQ's default guest account, loopback only).
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    video_queue: str = "video"
    auth_url: str = "http://127.0.0.1:5000"
    max_upload_bytes: int = 2048 * MIB
    # Trusted reverse proxies in front of us; X-Forwarded-For is believed for this many hops only.
    proxy_hops: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            value = environ.get(name, "").strip()
            return value or default

        mongo_uri = get("MONGO_URI", cls.mongo_uri)
        if not _uri_database(mongo_uri):
            raise ConfigError(f"MONGO_URI must name a database in its path, got {_redact(mongo_uri)!r}")
        return cls(
            host=get("HOST", cls.host),
            port=_int(environ, "PORT", cls.port, low=1, high=65535),
            mongo_uri=mongo_uri,
            rabbitmq_url=get("RABBITMQ_URL", cls.rabbitmq_url),
            video_queue=get("VIDEO_QUEUE", cls.video_queue),
            auth_url=_auth_url(get("AUTH_SVC_ADDRESS", "127.0.0.1:5000")),
            max_upload_bytes=_int(environ, "MAX_UPLOAD_MB", 2048, low=1, high=1024 * 1024) * MIB,
            proxy_hops=_int(environ, "PROXY_HOPS", cls.proxy_hops, low=0, high=10),
        )


def _int(environ: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _auth_url(address: str) -> str:
    # The contract gives a bare host:port (a Kubernetes Service address); http:// is implied.
    url = address if "://" in address else f"http://{address}"
    return url.rstrip("/")


def _uri_database(uri: str) -> str:
    # mongodb://user:pw@h1,h2/dbname?opts -> "dbname"; parsed by hand so no DNS lookup happens here.
    rest = uri.split("://", 1)[-1]
    _, _, path = rest.partition("/")
    return path.split("?", 1)[0]


def _redact(uri: str) -> str:
    # Never echo a password into logs or the exit message.
    scheme, sep, rest = uri.partition("://")
    creds, at, hosts = rest.rpartition("@")
    return f"{scheme}{sep}***@{hosts}" if at else uri
