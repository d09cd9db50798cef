"""auth service: application factory wiring settings, adapters, routes, errors and metrics."""

from __future__ import annotations

import logging

import MySQLdb
from flask import Flask
from flask_mysqldb import MySQL
from MySQLdb.connections import Connection
from mp3core import logs
from mp3core.http import register_error_handler
from mp3core.settings import load
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from . import accounts, db, passwords
from .accounts import Throttle, Users
from .config import Settings
from .metrics import create_metrics
from .routes import Deps, bp
from .throttle import MySQLThrottle
from .tokens import TokenPolicy
from .users import MySQLUsers

log = logging.getLogger(__name__)

# Start-up waits this long for MySQL, then fails so the pod restarts. It must stay below gunicorn's
# worker timeout (30 s, see gunicorn_conf), which also covers app loading, plus one connect timeout.
STARTUP_RETRY_SECONDS = 15
MAX_BODY_BYTES = 64 * 1024  # a /users body is tiny; anything larger is a mistake or an attack


def create_app(
    settings: Settings | None = None, *, users: Users | None = None, throttle: Throttle | None = None
) -> Flask:
    """Build the app; the MySQL adapters are created from `settings` unless passed in (unit tests pass fakes)."""
    logs.setup()
    settings = settings or load("auth", Settings.from_env)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    mysql = None
    if users is None or throttle is None:
        # One connection per app context (request), closed at its teardown. flask_mysqldb hands
        # MYSQL_CUSTOM_OPTIONS to MySQLdb.connect() last, so the app connects exactly as the CLI does.
        mysql = MySQL(app)
        app.config["MYSQL_CUSTOM_OPTIONS"] = db.connect_args(settings)

        def connection() -> Connection:
            return mysql.connection

        users = users if users is not None else MySQLUsers(connection)
        throttle = throttle if throttle is not None else MySQLThrottle(
            connection,
            max_per_user=settings.login_max_failures_per_user,
            max_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_seconds,
        )
    metrics = create_metrics()
    policy = TokenPolicy(
        secret=settings.jwt_secret,
        lifetime_minutes=settings.jwt_lifetime_minutes,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    app.extensions["auth"] = Deps(settings=settings, tokens=policy, users=users, throttle=throttle, metrics=metrics)
    app.register_blueprint(bp)
    register_error_handler(app, unavailable=(MySQLdb.OperationalError,))
    metrics.http.install(app)

    passwords.dummy_hash()  # computed now so the first unknown-user login is not measurably slower
    _start(app, settings, users, throttle, mysql)
    return app


def _start(app: Flask, settings: Settings, users: Users, throttle: Throttle, mysql: MySQL | None) -> None:
    """Schema (when the app owns the MySQL connection), expired throttle counters, bootstrap admin; retried
    while MySQL is not reachable yet."""
    if (settings.admin_email is None) != (settings.admin_password is None):
        log.warning("only one of ADMIN_EMAIL and ADMIN_PASSWORD is set; no bootstrap admin created")
    retrying = Retrying(
        stop=stop_after_delay(STARTUP_RETRY_SECONDS),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception_type(MySQLdb.OperationalError),
        before_sleep=lambda state: log.warning(
            "MySQL not ready, retrying", extra={"error": str(state.outcome.exception())}
        ),
        reraise=True,
    )
    for attempt in retrying:
        # A fresh app context per attempt: flask_mysqldb caches the connection in `g`, and a
        # connection that failed mid-way must not be reused by the next attempt.
        with attempt, app.app_context():
            if mysql is not None:
                db.create_schema(mysql.connection)
            throttle.purge_expired()
            if settings.admin_email and settings.admin_password:
                if accounts.bootstrap_admin(settings.admin_email, settings.admin_password, users=users):
                    log.info("bootstrap admin created", extra={"email": settings.admin_email})
