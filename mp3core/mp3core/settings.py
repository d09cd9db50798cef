"""Environment variables read once into a service's Settings: one reader, one set of parsers and messages.

Each service's config.py builds its frozen Settings in `Settings.from_env(environ)` with an `Env`, giving
every default there and nowhere else; a bad or missing value is a ConfigError, one line naming the variable,
and `load` turns it into a one-line exit at start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# Marks a value as a development placeholder: refused unless DEV_MODE is on (docs: README, Security).
DEV_PLACEHOLDER = "dev-only"


class ConfigError(ValueError):
    """A variable is missing or unparsable; the message is one line naming it."""


class Env:
    """Typed reads of one environment; an unset or empty variable means "use the default"."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name, "")
        return value if value.strip() else None

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value.strip()

    def optional(self, name: str) -> str | None:
        value = self.raw(name)
        return None if value is None else value.strip()

    def secret(self, name: str, default: str | None = None) -> str:
        """A credential, not stripped (a password may start or end with a space). Without a default it is
        required. A development placeholder (containing "dev-only") is refused unless DEV_MODE=true."""
        value = self.raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            value = default
        return self._not_a_placeholder(name, value)

    def _not_a_placeholder(self, name: str, value: str) -> str:
        # DEV_MODE is read only here, so a service that meets no placeholder does not read it.
        if DEV_PLACEHOLDER in value and not self.bool("DEV_MODE", False):
            raise ConfigError(f"{name} holds a development placeholder; set a real value (or DEV_MODE=true)")
        return value

    def int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw.strip()!r}"[:200]) from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.int(name, default, 1, 65535)

    def bool(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw.strip()!r}"[:200])

    def mongo_uri(self, default: str = "mongodb://127.0.0.1:27017/mp3converter") -> str:
        uri = self.str("MONGO_URI", default)
        if urlsplit(uri).scheme not in ("mongodb", "mongodb+srv"):
            raise ConfigError("MONGO_URI must start with mongodb:// or mongodb+srv://")
        # mongodb://user:pw@h1,h2/dbname?opts -> "dbname"; parsed by hand so no DNS lookup happens here.
        database = uri.split("://", 1)[1].partition("/")[2].split("?", 1)[0]
        if not database:
            raise ConfigError("MONGO_URI must name the database in its path, e.g. mongodb://host:27017/mp3converter")
        return self._not_a_placeholder("MONGO_URI", uri)  # it carries the database password

    def amqp_url(self, default: str = "amqp://guest:guest@127.0.0.1:5672/%2F") -> str:
        # The default is RabbitMQ's own guest account, which the broker accepts from loopback only. Several
        # URLs, comma-separated, name the nodes of one cluster (mp3core.broker.Brokers fails over between them).
        value = self.str("RABBITMQ_URL", default)
        split_amqp_urls(value)
        return self._not_a_placeholder("RABBITMQ_URL", value)  # it carries the broker password

    def http_url(self, name: str, default: str, *, bare_host_ok: bool = True) -> str:
        """An http(s) base URL without a trailing slash; with bare_host_ok, host:port (a Kubernetes Service
        address) means http://host:port."""
        value = self.str(name, default)
        url = value if "://" in value or not bare_host_ok else f"http://{value}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name}={value!r} is not an http(s) URL or host:port"[:200])
        return url.rstrip("/")


def split_amqp_urls(value: str) -> list[str]:
    """RABBITMQ_URL's URLs: one, or several separated by commas, each amqp:// or amqps://."""
    urls = [part.strip() for part in value.split(",")]
    if any(not url for url in urls):
        raise ConfigError("RABBITMQ_URL must be one amqp:// URL, or several separated by commas, none empty")
    if any(urlsplit(url).scheme not in ("amqp", "amqps") for url in urls):
        raise ConfigError("RABBITMQ_URL must start with amqp:// or amqps://")  # every URL of a list too
    return urls


@dataclass(frozen=True)
class ConsumerSettings:
    """What every queue consumer reads (converter and notification extend it with their own fields)."""

    ENV_VARS = ("HOST", "METRICS_PORT", "MONGO_URI", "RABBITMQ_URL", "SHUTDOWN_GRACE_SECONDS", "DEV_MODE")

    host: str
    metrics_port: int  # the health and metrics endpoint
    # URIs may embed credentials: keep them out of repr() and so out of logs.
    mongo_uri: str = field(repr=False)
    rabbitmq_url: str = field(repr=False)
    shutdown_grace_s: int  # how long a stop waits for the job in progress (below the pod's grace period)

    @staticmethod
    def read(env: Env, *, metrics_port: int, shutdown_grace_s: int) -> dict[str, Any]:
        """The shared fields from env, with the service's own defaults, as keyword arguments for its Settings."""
        return {
            "host": env.str("HOST", "127.0.0.1"),
            "metrics_port": env.port("METRICS_PORT", metrics_port),
            "mongo_uri": env.mongo_uri(),
            "rabbitmq_url": env.amqp_url(),
            "shutdown_grace_s": env.int("SHUTDOWN_GRACE_SECONDS", shutdown_grace_s, 1, 3600),
        }


def load(service: str, from_env: Callable[[], T]) -> T:
    """Settings at start: a ConfigError exits with one line (no traceback) naming the service and the variable."""
    try:
        return from_env()
    except ConfigError as exc:
        sys.exit(f"{service}: configuration error: {exc}")
