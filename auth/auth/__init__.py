"""auth service: application factory wiring settings, adapters, routes, errors and metrics."""

from __future__ import annotations

import logging
import time

import MySQLdb
from flask import Flask, Response, g, jsonify, request
from flask_mysqldb import MySQL
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential
from werkzeug.exceptions import HTTPException

from . import accounts, errors, logs, passwords
from .config import Settings
from .metrics import create_metrics
from .routes import Deps, bp
from .throttle import MySQLThrottle
from .users import MySQLUsers

log = logging.getLogger(__name__)

# Start-up waits this long for MySQL, then fails so the pod restarts. It must stay below gunicorn's
# worker timeout (30 s, see gunicorn_conf), which also covers app loading, plus one connect timeout.
STARTUP_RETRY_SECONDS = 15
MYSQL_CONNECT_TIMEOUT = 5
# Bounded reads/writes turn a hung database into a 503 instead of a worker killed by gunicorn.
MYSQL_IO_TIMEOUT = 10
MAX_BODY_BYTES = 64 * 1024  # a /users body is tiny; anything larger is a mistake or an attack

_STATUS = {
    errors.InvalidCredentials: 401,
    errors.InvalidToken: 401,
    errors.Forbidden: 403,
    errors.InvalidInput: 400,
    errors.UserExists: 409,
    errors.TooManyAttempts: 429,
}
_CHALLENGE = {
    errors.InvalidCredentials: 'Basic realm="mp3converter"',
    errors.InvalidToken: 'Bearer realm="mp3converter"',
}


def create_app(settings: Settings | None = None, *, users=None, throttle=None) -> Flask:
    """Build the app; real MySQL adapters are created unless fakes are injected (tests)."""
    logs.configure()
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MYSQL_HOST=settings.mysql_host,
        MYSQL_PORT=settings.mysql_port,
        MYSQL_USER=settings.mysql_user,
        MYSQL_PASSWORD=settings.mysql_password,
        MYSQL_DB=settings.mysql_db,
        # utf8mb4: MySQL's "utf8" is 3-byte and cannot store every email address.
        MYSQL_CHARSET="utf8mb4",
        # Every write is one statement, so autocommit gives atomicity without transaction bookkeeping.
        MYSQL_AUTOCOMMIT=True,
        MYSQL_CONNECT_TIMEOUT=MYSQL_CONNECT_TIMEOUT,
        MYSQL_CUSTOM_OPTIONS={"read_timeout": MYSQL_IO_TIMEOUT, "write_timeout": MYSQL_IO_TIMEOUT},
    )
    if users is None or throttle is None:
        mysql = MySQL(app)
        users = users if users is not None else MySQLUsers(mysql)
        throttle = throttle if throttle is not None else MySQLThrottle(
            mysql,
            max_per_user=settings.login_max_failures_per_user,
            max_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_window_seconds,
        )
    metrics = create_metrics()
    app.extensions["auth"] = Deps(settings=settings, users=users, throttle=throttle, metrics=metrics)
    app.register_blueprint(bp)
    app.register_error_handler(Exception, _handle_error)
    _install_metrics_hooks(app, metrics)

    passwords.dummy_hash()  # computed now so the first unknown-user login is not measurably slower
    _prepare_database(app, settings, users, throttle)
    return app


def _prepare_database(app: Flask, settings: Settings, users, throttle) -> None:
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
            users.ensure_schema()
            throttle.purge_expired()
            if settings.admin_email and settings.admin_password:
                if accounts.bootstrap_admin(settings.admin_email, settings.admin_password, users=users):
                    log.info("bootstrap admin created", extra={"email": settings.admin_email})


def _handle_error(exc: Exception) -> Response:
    """The one error handler: every failure becomes JSON {"error": ...}, never HTML or a traceback."""
    if isinstance(exc, errors.AuthServiceError):
        response = jsonify(error=exc.message)
        response.status_code = _STATUS.get(type(exc), 400)
        challenge = _CHALLENGE.get(type(exc))
        if challenge:
            response.headers["WWW-Authenticate"] = challenge
        if isinstance(exc, errors.TooManyAttempts):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, HTTPException):
        # Keep werkzeug's status and headers (e.g. Allow on 405, Location on redirects); swap the body.
        response = exc.get_response()
        response.set_data(jsonify(error=(exc.name or "error").lower()).get_data())
        response.content_type = "application/json"
        return response
    if isinstance(exc, MySQLdb.OperationalError):
        log.warning("MySQL unavailable", extra={"error": str(exc)})
        response = jsonify(error="user database is unavailable")
        response.status_code = 503
        return response
    log.exception("unhandled error", extra={"path": request.path})
    response = jsonify(error="internal server error")
    response.status_code = 500
    return response


def _install_metrics_hooks(app: Flask, metrics) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        # The route pattern, not the raw path, keeps label cardinality bounded.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response
