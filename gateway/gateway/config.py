"""Gateway settings: every environment variable is read once, here, into a frozen dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mp3core import contract
from mp3core.settings import Env

# Every variable the gateway reads, including HOST/PORT which only gunicorn_conf uses; the manifest
# cross-check test compares this tuple with the ConfigMap.
ENV_VARS = (
    "HOST",
    "PORT",
    "MONGO_URI",
    "RABBITMQ_URL",
    "VIDEO_QUEUE",
    "AUTH_SVC_ADDRESS",
    "MAX_UPLOAD_MB",
    "PROXY_HOPS",
    "BODY_READ_TIMEOUT_S",
    "MAX_CONCURRENT_UPLOADS_PER_USER",
    "MAX_JOBS_IN_FLIGHT_PER_USER",
    "MAX_STORED_MB_PER_USER",
    "DEV_MODE",  # read only when a URI holds a dev-only placeholder
)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    # URIs may embed credentials: keep them out of repr() and so out of logs.
    mongo_uri: str = field(repr=False)
    rabbitmq_url: str = field(repr=False)
    video_queue: str
    auth_url: str
    max_upload_bytes: int
    # Trusted reverse proxies in front of us; X-Forwarded-For is believed for this many hops only.
    proxy_hops: int
    # A request body read that gets no byte for this long ends the request with 408 (slow clients).
    body_read_timeout_s: int
    # Uploads one user may stream at once (per gateway process; 429 with Retry-After past it).
    max_concurrent_uploads_per_user: int
    # Jobs queued or converting per user: past it an upload is refused with 429.
    max_jobs_in_flight_per_user: int
    # Videos and MP3s a user may keep in storage: past it an upload is refused with 413.
    max_stored_bytes_per_user: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `environ` (default os.environ); ConfigError names the first bad variable."""
        env = Env(environ)
        return cls(
            host=env.str("HOST", "127.0.0.1"),
            port=env.port("PORT", 8080),
            mongo_uri=env.mongo_uri(),
            rabbitmq_url=env.amqp_url(),
            video_queue=env.str("VIDEO_QUEUE", contract.VIDEO_QUEUE),
            # The deployment gives a bare host:port (a Kubernetes Service address); http:// is implied.
            auth_url=env.http_url("AUTH_SVC_ADDRESS", "127.0.0.1:5000"),
            max_upload_bytes=env.int("MAX_UPLOAD_MB", 2048, 1, 1024 * 1024) * MIB,
            proxy_hops=env.int("PROXY_HOPS", 0, 0, 10),
            body_read_timeout_s=env.int("BODY_READ_TIMEOUT_S", 30, 1, 3600),
            max_concurrent_uploads_per_user=env.int("MAX_CONCURRENT_UPLOADS_PER_USER", 3, 1, 1000),
            max_jobs_in_flight_per_user=env.int("MAX_JOBS_IN_FLIGHT_PER_USER", 20, 1, 1_000_000),
            max_stored_bytes_per_user=env.int("MAX_STORED_MB_PER_USER", 10 * 1024, 1, 1024 * 1024 * 1024) * MIB,
        )
