"""Converter settings: environment variables read once into a frozen dataclass; bad values fail fast."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Every variable this service reads; the ConfigMap and the README's table list the same names.
ENV_VARS = ("HOST", "METRICS_PORT", "MONGO_URI", "RABBITMQ_URL", "VIDEO_QUEUE", "MP3_QUEUE",
            "MAX_ATTEMPTS", "WORK_DIR", "MP3_TTL_HOURS", "REAPER_INTERVAL_SECONDS")


class ConfigError(ValueError):
    """A variable is missing or unparsable; the message is one line naming it."""


@dataclass(frozen=True)
class Settings:
    host: str
    metrics_port: int
    # URIs may embed credentials: keep them out of repr() and so out of logs.
    mongo_uri: str = field(repr=False)
    rabbitmq_url: str = field(repr=False)
    video_queue: str
    mp3_queue: str
    max_attempts: int
    work_dir: str
    mp3_ttl_hours: int            # how long a finished MP3 (and a failed job's video) is kept
    reaper_interval_s: int        # how often the retention reaper looks for expired files

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        work_dir = get("WORK_DIR", tempfile.gettempdir())
        if not os.path.isdir(work_dir):
            raise ConfigError(f"WORK_DIR={work_dir!r} is not a directory")
        return cls(
            host=get("HOST", "127.0.0.1"),
            metrics_port=_int("METRICS_PORT", get("METRICS_PORT", "9101"), 1, 65535),
            mongo_uri=_mongo_uri(get("MONGO_URI", "mongodb://127.0.0.1:27017/mp3converter")),
            rabbitmq_url=_amqp_url(get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")),
            video_queue=get("VIDEO_QUEUE", "video"),
            mp3_queue=get("MP3_QUEUE", "mp3"),
            max_attempts=_int("MAX_ATTEMPTS", get("MAX_ATTEMPTS", "3"), 1, 100),
            work_dir=work_dir,
            mp3_ttl_hours=_int("MP3_TTL_HOURS", get("MP3_TTL_HOURS", "24"), 1, 24 * 366),
            reaper_interval_s=_int("REAPER_INTERVAL_SECONDS", get("REAPER_INTERVAL_SECONDS", "300"), 1, 86400),
        )


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


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
