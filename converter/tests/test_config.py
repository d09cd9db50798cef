"""Unit tests for converter.config: defaults, overrides, fail-fast on bad values, ENV_VARS completeness."""

from __future__ import annotations

import tempfile

import pytest

from converter.config import ENV_VARS, ConfigError, Settings
from converter.convert import Limits


def test_defaults_suit_a_local_run():
    s = Settings.from_env({})
    assert (s.host, s.metrics_port, s.video_queue, s.mp3_queue, s.max_attempts) == (
        "127.0.0.1", 9101, "video", "mp3", 3)
    assert s.mongo_uri == "mongodb://127.0.0.1:27017/mp3converter"
    assert s.rabbitmq_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert s.work_dir == tempfile.gettempdir()
    assert (s.mp3_ttl_hours, s.reaper_interval_s, s.shutdown_grace_s) == (24, 300, 50)
    # 4 hours of audio; half an hour of wall clock and a quarter of CPU time per run; 512 MB address space.
    assert (s.max_duration_s, s.ffmpeg_timeout_s, s.ffmpeg_cpu_s, s.ffmpeg_memory_mb) == (14400, 1800, 900, 512)
    assert Limits() == Limits(max_duration_s=14400, timeout_s=1800, cpu_s=900, memory_mb=512)  # the same defaults
    assert (s.orphan_grace_h, s.orphan_sweep_s) == (24, 3600)
    assert s.job_retention_days == 30


def test_ffmpeg_limits_and_orphan_sweep_overrides():
    s = Settings.from_env({"MAX_DURATION_SECONDS": "60", "FFMPEG_TIMEOUT_SECONDS": "120", "FFMPEG_CPU_SECONDS": "30",
                           "FFMPEG_MEMORY_MB": "1024", "ORPHAN_GRACE_HOURS": "2",
                           "ORPHAN_SWEEP_INTERVAL_SECONDS": "600", "JOB_RETENTION_DAYS": "7"})
    assert (s.max_duration_s, s.ffmpeg_timeout_s, s.ffmpeg_cpu_s, s.ffmpeg_memory_mb) == (60, 120, 30, 1024)
    assert (s.orphan_grace_h, s.orphan_sweep_s, s.job_retention_days) == (2, 600, 7)


def test_overrides(tmp_path):
    s = Settings.from_env({"HOST": "0.0.0.0", "METRICS_PORT": "9999", "MONGO_URI": "mongodb://db:27017/x",
                           "RABBITMQ_URL": "amqp://u:p@mq:5672/%2F", "VIDEO_QUEUE": "v", "MP3_QUEUE": "m",
                           "MAX_ATTEMPTS": "5", "WORK_DIR": str(tmp_path), "MP3_TTL_HOURS": "1",
                           "REAPER_INTERVAL_SECONDS": "30", "SHUTDOWN_GRACE_SECONDS": "20"})
    assert (s.host, s.metrics_port, s.mongo_uri, s.rabbitmq_url, s.video_queue, s.mp3_queue, s.max_attempts,
            s.work_dir, s.mp3_ttl_hours, s.reaper_interval_s, s.shutdown_grace_s) == (
        "0.0.0.0", 9999, "mongodb://db:27017/x", "amqp://u:p@mq:5672/%2F", "v", "m", 5, str(tmp_path), 1, 30, 20)


def test_reads_exactly_env_vars():
    class Recorder(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

    seen: set[str] = set()
    Settings.from_env(Recorder(RABBITMQ_URL="amqp://app:dev-only-placeholder@mq:5672/%2F", DEV_MODE="true"))
    assert seen == set(ENV_VARS)


def test_credentials_stay_out_of_repr():
    s = Settings.from_env({"MONGO_URI": "mongodb://u:s3cret@db/x", "RABBITMQ_URL": "amqp://u:s3cret@mq/"})
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(("env", "message"), [
    ({"METRICS_PORT": "http"}, "METRICS_PORT must be an integer, got 'http'"),
    ({"METRICS_PORT": "0"}, "METRICS_PORT must be between 1 and 65535, got 0"),
    ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS must be between 1 and 9, got 0"),
    ({"MAX_ATTEMPTS": "10"}, "MAX_ATTEMPTS must be between 1 and 9, got 10"),  # the queue's delivery limit
    ({"MAX_ATTEMPTS": "2.5"}, "MAX_ATTEMPTS must be an integer, got '2.5'"),
    ({"MONGO_URI": "postgres://db/x"}, "MONGO_URI must start with mongodb:// or mongodb+srv://"),
    ({"MONGO_URI": "mongodb://db:27017"}, "MONGO_URI must name the database in its path"),
    ({"RABBITMQ_URL": "http://mq"}, "RABBITMQ_URL must start with amqp:// or amqps://"),
    ({"WORK_DIR": "/does/not/exist"}, "WORK_DIR='/does/not/exist' is not a directory"),
    ({"MP3_TTL_HOURS": "0"}, "MP3_TTL_HOURS must be between 1 and 8784, got 0"),
    ({"JOB_RETENTION_DAYS": "0"}, "JOB_RETENTION_DAYS must be between 1 and 3660, got 0"),
    ({"REAPER_INTERVAL_SECONDS": "5m"}, "REAPER_INTERVAL_SECONDS must be an integer, got '5m'"),
    ({"SHUTDOWN_GRACE_SECONDS": "0"}, "SHUTDOWN_GRACE_SECONDS must be between 1 and 3600, got 0"),
    ({"MAX_DURATION_SECONDS": "0"}, "MAX_DURATION_SECONDS must be between 1 and 604800, got 0"),
    ({"FFMPEG_TIMEOUT_SECONDS": "1h"}, "FFMPEG_TIMEOUT_SECONDS must be an integer, got '1h'"),
    ({"FFMPEG_CPU_SECONDS": "0"}, "FFMPEG_CPU_SECONDS must be between 1 and 604800, got 0"),
    ({"FFMPEG_MEMORY_MB": "300"}, "FFMPEG_MEMORY_MB must be between 384 and 65536, got 300"),
    ({"ORPHAN_GRACE_HOURS": "0"}, "ORPHAN_GRACE_HOURS must be between 1 and 8784, got 0"),
    ({"ORPHAN_SWEEP_INTERVAL_SECONDS": "10"}, "ORPHAN_SWEEP_INTERVAL_SECONDS must be between 60 and 604800, got 10"),
])
def test_bad_values_fail_fast_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
