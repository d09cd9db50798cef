"""Notification settings: environment variables read once into a frozen dataclass; bad values fail fast."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mp3core.contract import MP3_QUEUE
from mp3core.settings import ConfigError, ConsumerSettings, Env

# Every variable this service reads; the ConfigMap/Secret and the README's table list the same names.
ENV_VARS = ConsumerSettings.ENV_VARS + ("MP3_QUEUE", "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD",
                                        "SMTP_FROM", "SMTP_STARTTLS", "PUBLIC_URL",
                                        "SMTP_RETRY_SECONDS", "NOTIFY_GIVE_UP_SECONDS")


@dataclass(frozen=True)
class Settings(ConsumerSettings):
    mp3_queue: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str = field(repr=False)  # a credential: kept out of repr() and so out of logs
    smtp_from: str
    smtp_starttls: bool
    public_url: str
    smtp_retry_s: int
    notify_give_up_s: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(environ)
        smtp_from = env.str("SMTP_FROM", "mp3converter@localhost")
        if "@" not in smtp_from or any(c in smtp_from for c in "\r\n"):
            raise ConfigError(f"SMTP_FROM={smtp_from!r} is not an email address")
        return cls(
            **ConsumerSettings.read(env, metrics_port=9102, shutdown_grace_s=25),
            mp3_queue=env.str("MP3_QUEUE", MP3_QUEUE),
            smtp_host=env.str("SMTP_HOST", "127.0.0.1"),
            smtp_port=env.port("SMTP_PORT", 1025),
            smtp_user=env.str("SMTP_USER", ""),
            smtp_password=env.secret("SMTP_PASSWORD", default=""),  # empty: no SMTP login
            smtp_from=smtp_from,
            smtp_starttls=env.bool("SMTP_STARTTLS", False),
            # Shown to users in the email: a bare host:port is a mistake here, not a shorthand.
            public_url=env.http_url("PUBLIC_URL", "http://localhost:8080", bare_host_ok=False),
            # SMTP unavailable: how long one delivery retries in place before the message goes to the back of
            # the queue (so the mails behind it get their turn), and how long after its first failed delivery
            # an email is given up (job marked, message dead-lettered): a mail a day late is no longer news.
            smtp_retry_s=env.int("SMTP_RETRY_SECONDS", 120, 1, 3600),
            notify_give_up_s=env.int("NOTIFY_GIVE_UP_SECONDS", 86400, 60, 30 * 86400),
        )
