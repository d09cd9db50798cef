"""Converter settings: environment variables read once into a frozen dataclass; bad values fail fast."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from mp3core.contract import MP3_QUEUE, VIDEO_QUEUE
from mp3core.settings import ConfigError, ConsumerSettings, Env

# Every variable this service reads; the ConfigMap and the README's table list the same names.
ENV_VARS = ConsumerSettings.ENV_VARS + ("VIDEO_QUEUE", "MP3_QUEUE", "MAX_ATTEMPTS", "WORK_DIR", "MP3_TTL_HOURS",
                                        "REAPER_INTERVAL_SECONDS")


@dataclass(frozen=True)
class Settings(ConsumerSettings):
    video_queue: str
    mp3_queue: str
    max_attempts: int
    work_dir: str
    mp3_ttl_hours: int            # how long a finished MP3 (and a failed job's video) is kept
    reaper_interval_s: int        # how often the retention reaper looks for expired files

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        work_dir = env.str("WORK_DIR", tempfile.gettempdir())
        if not os.path.isdir(work_dir):
            raise ConfigError(f"WORK_DIR={work_dir!r} is not a directory")
        return cls(
            **ConsumerSettings.read(env, metrics_port=9101, shutdown_grace_s=50),
            video_queue=env.str("VIDEO_QUEUE", VIDEO_QUEUE),
            mp3_queue=env.str("MP3_QUEUE", MP3_QUEUE),
            max_attempts=env.int("MAX_ATTEMPTS", 3, 1, 100),
            work_dir=work_dir,
            mp3_ttl_hours=env.int("MP3_TTL_HOURS", 24, 1, 24 * 366),
            reaper_interval_s=env.int("REAPER_INTERVAL_SECONDS", 300, 1, 86400),
        )
