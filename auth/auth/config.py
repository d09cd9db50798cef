"""Service configuration: environment variables read once into a frozen Settings (defaults in from_env only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mp3core.settings import ConfigError, Env

# Every variable this service reads (DEV_MODE is read by mp3core's Env); the manifest cross-check test
# compares this tuple with the ConfigMap/Secret.
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
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "LOGIN_MAX_FAILURES_PER_USER",
    "LOGIN_MAX_FAILURES_PER_ADDRESS",
    "LOGIN_WINDOW_SECONDS",
    "DEV_MODE",
)

# HS256 is only as strong as its key; RFC 7518 3.2 asks for at least 256 bits.
MIN_JWT_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mysql_host: str
    mysql_port: int
    mysql_user: str
    # Secrets are kept out of repr() so a logged Settings never leaks them.
    mysql_password: str = field(repr=False)
    mysql_db: str
    jwt_secret: str = field(repr=False)
    jwt_lifetime_minutes: int
    jwt_issuer: str
    jwt_audience: str
    admin_email: str | None
    admin_password: str | None = field(repr=False)
    login_max_failures_per_user: int
    login_max_failures_per_address: int
    login_window_seconds: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        # Imported here: the manifest checks load this file alone, by path, for ENV_VARS.
        from .errors import InvalidInput
        from .rules import check_password, validate_email

        env = Env(environ)

        jwt_secret = env.secret("JWT_SECRET")
        if len(jwt_secret) < MIN_JWT_SECRET_LENGTH:
            raise ConfigError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters long")

        admin_email = env.optional("ADMIN_EMAIL")
        if admin_email is not None:
            try:
                admin_email = validate_email(admin_email)
            except InvalidInput:
                raise ConfigError(f"ADMIN_EMAIL is not a valid email address: {admin_email!r}") from None
        # Optional, but when set it is a credential like the others (not stripped, no dev placeholder).
        admin_password = env.secret("ADMIN_PASSWORD") if env.raw("ADMIN_PASSWORD") is not None else None
        if admin_password is not None:
            try:
                check_password(admin_password)
            except InvalidInput as exc:
                raise ConfigError(f"ADMIN_PASSWORD: {exc.message}") from None

        return cls(
            host=env.str("HOST", "127.0.0.1"),
            port=env.port("PORT", 5000),
            mysql_host=env.str("MYSQL_HOST", "127.0.0.1"),
            mysql_port=env.port("MYSQL_PORT", 3306),
            mysql_user=env.str("MYSQL_USER", "auth_user"),
            mysql_password=env.secret("MYSQL_PASSWORD"),
            mysql_db=env.str("MYSQL_DB", "auth"),
            jwt_secret=jwt_secret,
            # Capped at a day: between password changes a token is good until it expires, so its
            # lifetime is the exposure window of a stolen one.
            jwt_lifetime_minutes=env.int("JWT_LIFETIME_MINUTES", 30, 1, 24 * 60),
            # Named in every token and checked on every one: a token another installation (or another
            # system sharing the secret by mistake) signed for something else is not accepted here.
            jwt_issuer=env.str("JWT_ISSUER", "mp3converter-auth"),
            jwt_audience=env.str("JWT_AUDIENCE", "mp3converter"),
            admin_email=admin_email,
            admin_password=admin_password,
            login_max_failures_per_user=env.int("LOGIN_MAX_FAILURES_PER_USER", 5, 1, 1_000_000),
            login_max_failures_per_address=env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", 50, 1, 1_000_000),
            login_window_seconds=env.int("LOGIN_WINDOW_SECONDS", 900, 1, 7 * 24 * 3600),
        )
