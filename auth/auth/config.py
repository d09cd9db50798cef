"""Service configuration: environment variables read once into a frozen Settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# Every variable this service reads, including HOST/PORT read by gunicorn_conf; the manifest
# cross-check test compares this tuple with the ConfigMap/Secret.
ENV_VARS: tuple[str, ...] = (
    "HOST",
    "PORT",
    "MYSQL_HOST",
    "MYSQL_PORT",
    "MYSQL_USER",
    "MYSQL_PASSWORD",
    "MYSQL_DB",
    "JWT_SECRET",
    "JWT_LIFETIME_MINUTES",
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "LOGIN_MAX_FAILURES_PER_USER",
    "LOGIN_MAX_FAILURES_PER_ADDRESS",
    "LOGIN_WINDOW_SECONDS",
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# HS256 is only as strong as its key; RFC 7518 3.2 asks for at least 256 bits.
MIN_JWT_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A missing or unparsable variable; the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    # Secrets are kept out of repr() so a logged Settings never leaks them.
    mysql_password: str = field(repr=False)
    jwt_secret: str = field(repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    mysql_host: str = "127.0.0.1"
    mysql_port: int = 3306
    mysql_user: str = "auth_user"
    mysql_db: str = "auth"
    jwt_lifetime_minutes: int = 30
    admin_email: str | None = None
    admin_password: str | None = field(default=None, repr=False)
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 50
    login_window_seconds: int = 900

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        # Local imports: config stays importable (ENV_VARS) without pulling in argon2/MySQLdb first.
        from .passwords import check_policy
        from .errors import InvalidInput
        from .users import validate_email

        def get(name: str) -> str | None:
            value = environ.get(name)
            # An empty value (e.g. an empty ConfigMap key) means "not set".
            return value if value else None

        def required(name: str) -> str:
            value = get(name)
            if value is None:
                raise ConfigError(f"{name} is required but not set")
            return value

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw.strip())
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
            return value

        jwt_secret = required("JWT_SECRET")
        if len(jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters long")

        admin_email = get("ADMIN_EMAIL")
        admin_password = get("ADMIN_PASSWORD")
        if admin_email is not None:
            try:
                admin_email = validate_email(admin_email)
            except InvalidInput:
                raise ConfigError(f"ADMIN_EMAIL is not a valid email address: {admin_email!r}") from None
        if admin_password is not None:
            try:
                check_policy(admin_password)
            except InvalidInput as exc:
                raise ConfigError(f"ADMIN_PASSWORD: {exc.message}") from None

        return cls(
            mysql_password=required("MYSQL_PASSWORD"),
            jwt_secret=jwt_secret,
            host=get("HOST") or DEFAULT_HOST,
            port=integer("PORT", DEFAULT_PORT, 1, 65535),
            mysql_host=get("MYSQL_HOST") or "127.0.0.1",
            mysql_port=integer("MYSQL_PORT", 3306, 1, 65535),
            mysql_user=get("MYSQL_USER") or "auth_user",
            mysql_db=get("MYSQL_DB") or "auth",
            # Capped at a day: a JWT cannot be revoked, so its lifetime is the exposure window.
            jwt_lifetime_minutes=integer("JWT_LIFETIME_MINUTES", 30, 1, 24 * 60),
            admin_email=admin_email,
            admin_password=admin_password,
            login_max_failures_per_user=integer("LOGIN_MAX_FAILURES_PER_USER", 5, 1, 1_000_000),
            login_max_failures_per_address=integer("LOGIN_MAX_FAILURES_PER_ADDRESS", 50, 1, 1_000_000),
            login_window_seconds=integer("LOGIN_WINDOW_SECONDS", 900, 1, 7 * 24 * 3600),
        )
