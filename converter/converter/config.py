"""Converter settings: environment variables read once into a frozen dataclass; bad values fail fast."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from mp3core.contract import DELIVERY_LIMIT, MP3_QUEUE, VIDEO_QUEUE
from mp3core.settings import ConfigError, ConsumerSettings, Env

# Every variable this service reads; the ConfigMap and the README's table list the same names.
ENV_VARS = ConsumerSettings.ENV_VARS + ("VIDEO_QUEUE", "MP3_QUEUE", "MAX_ATTEMPTS", "WORK_DIR", "MP3_TTL_HOURS",
                                        "JOB_RETENTION_DAYS", "REAPER_INTERVAL_SECONDS", "MAX_DURATION_SECONDS",
                                        "FFMPEG_TIMEOUT_SECONDS", "FFMPEG_CPU_SECONDS", "FFMPEG_MEMORY_MB",
                                        "ORPHAN_GRACE_HOURS", "ORPHAN_SWEEP_INTERVAL_SECONDS")


@dataclass(frozen=True)
class Settings(ConsumerSettings):
    video_queue: str
    mp3_queue: str
    max_attempts: int
    work_dir: str
    mp3_ttl_hours: int            # how long a finished MP3 (and a failed job's video) is kept
    job_retention_days: int       # how long an expired or failed job is kept after its last update
    reaper_interval_s: int        # how often the retention reaper looks for expired files
    # What one ffmpeg run may take (convert.Limits, built from these in __main__).
    max_duration_s: int           # the longest audio converted
    ffmpeg_timeout_s: int         # wall-clock cap per run, whatever the file claims
    ffmpeg_cpu_s: int             # CPU time per run (RLIMIT_CPU)
    ffmpeg_memory_mb: int         # address space (RLIMIT_AS); ffmpeg's libraries alone map about 300 MB
    orphan_grace_h: int           # how old chunks without a file must be before the reaper deletes them
    orphan_sweep_s: int           # how often it looks for them (on FerretDB a look reads whole buckets)

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
            # Below the queue's delivery limit: a converter dying with the message that often makes the broker
            # dead-letter it, and the job would never be marked failed.
            max_attempts=env.int("MAX_ATTEMPTS", 3, 1, DELIVERY_LIMIT - 1),
            work_dir=work_dir,
            mp3_ttl_hours=env.int("MP3_TTL_HOURS", 24, 1, 24 * 366),
            job_retention_days=env.int("JOB_RETENTION_DAYS", 30, 1, 3660),
            reaper_interval_s=env.int("REAPER_INTERVAL_SECONDS", 300, 1, 86400),
            max_duration_s=env.int("MAX_DURATION_SECONDS", 4 * 3600, 1, 7 * 86400),
            ffmpeg_timeout_s=env.int("FFMPEG_TIMEOUT_SECONDS", 1800, 10, 7 * 86400),
            ffmpeg_cpu_s=env.int("FFMPEG_CPU_SECONDS", 900, 1, 7 * 86400),
            # Below about 300 MB ffmpeg cannot even map its shared libraries: every job would fail.
            ffmpeg_memory_mb=env.int("FFMPEG_MEMORY_MB", 512, 384, 64 * 1024),
            orphan_grace_h=env.int("ORPHAN_GRACE_HOURS", 24, 1, 24 * 366),
            orphan_sweep_s=env.int("ORPHAN_SWEEP_INTERVAL_SECONDS", 3600, 60, 7 * 86400),
        )
