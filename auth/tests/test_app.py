"""Application-level behaviour: start-up (schema, bootstrap admin, MySQL retry), errors, health, metrics, logs."""

import json
import logging

import MySQLdb
import pytest

import auth
from auth import create_app, logs
from auth.errors import UserExists


def basic_header(email, password):
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def test_startup_ensures_schema_and_creates_the_bootstrap_admin(app, users):
    assert users.schema_ensured == 1
    admin = users.rows["admin@example.com"]
    assert admin.is_admin is True
    assert admin.password_hash.startswith("$argon2id$")


def test_existing_admin_is_left_untouched(users, throttle, make_settings):
    settings = make_settings(admin_email="admin@example.com", admin_password="first-password")
    create_app(settings, users=users, throttle=throttle)
    first_hash = users.rows["admin@example.com"].password_hash

    create_app(make_settings(admin_email="admin@example.com", admin_password="second-password"),
               users=users, throttle=throttle)

    assert users.rows["admin@example.com"].password_hash == first_hash


def test_bootstrap_race_with_another_replica_is_fine(users, throttle, make_settings):
    # Another replica inserts between our lookup and our insert.
    users.get_by_email = lambda email: None

    def create(email, password_hash, *, admin=False):
        raise UserExists()

    users.create = create

    app = create_app(make_settings(admin_email="admin@example.com", admin_password="admin-password-1"),
                     users=users, throttle=throttle)

    assert app is not None


@pytest.mark.parametrize(
    "overrides", [{}, {"admin_email": "admin@example.com"}, {"admin_password": "admin-password-1"}]
)
def test_no_bootstrap_admin_unless_both_variables_are_set(users, throttle, make_settings, overrides):
    create_app(make_settings(**overrides), users=users, throttle=throttle)

    assert "admin@example.com" not in users.rows


def test_startup_waits_for_mysql(users, throttle, make_settings, monkeypatch):
    calls = []
    real = users.ensure_schema

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MySQLdb.OperationalError(2003, "Can't connect to MySQL server")
        real()

    users.ensure_schema = flaky
    monkeypatch.setattr("auth.wait_exponential", lambda **kw: (lambda state: 0))  # no real sleeping

    create_app(make_settings(), users=users, throttle=throttle)

    assert len(calls) == 3
    assert users.schema_ensured == 1


def test_startup_gives_up_after_a_bounded_time(users, throttle, make_settings, monkeypatch):
    users.down = True
    monkeypatch.setattr(auth, "STARTUP_RETRY_SECONDS", 0.05)
    monkeypatch.setattr("auth.wait_exponential", lambda **kw: (lambda state: 0.01))

    with pytest.raises(MySQLdb.OperationalError):
        create_app(make_settings(), users=users, throttle=throttle)


def test_startup_retry_bound_is_below_gunicorn_timeout():
    from auth import gunicorn_conf

    # gunicorn kills a worker that has not booted within `timeout`; the retry must give up first.
    assert auth.STARTUP_RETRY_SECONDS + auth.MYSQL_CONNECT_TIMEOUT < gunicorn_conf.timeout


def test_healthz_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_is_503_when_mysql_is_down(client, users):
    users.down = True

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json() == {"error": "user database is unavailable"}


def test_login_is_503_when_mysql_is_down(client, users):
    users.down = True

    response = client.post("/login", headers=basic_header("alice@example.com", "alice-password-1"))

    assert response.status_code == 503
    assert response.get_json() == {"error": "user database is unavailable"}


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope", 404, "not found"),
        ("GET", "/validate", 405, "method not allowed"),
        ("DELETE", "/users", 405, "method not allowed"),
        ("POST", "/healthz", 405, "method not allowed"),
    ],
)
def test_http_errors_are_json(client, method, path, status, message):
    response = client.open(path, method=method)

    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": message}


def test_405_keeps_the_allow_header(client):
    response = client.get("/users")

    assert "POST" in response.headers["Allow"]


def test_unexpected_error_is_a_json_500_without_traceback(client, users, caplog):
    def boom(email):
        raise RuntimeError("secret internals")

    users.get_by_email = boom

    with caplog.at_level(logging.ERROR, logger="auth"):
        response = client.post("/login", headers=basic_header("alice@example.com", "alice-password-1"))

    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
    assert b"secret internals" not in response.data and b"Traceback" not in response.data
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_metrics_count_requests_by_endpoint_and_status(client):
    client.post("/login", headers=basic_header("alice@example.com", "wrong-password"))
    client.get("/nope")

    text = client.get("/metrics").get_data(as_text=True)

    assert 'auth_http_requests_total{endpoint="/login",status="401"} 1.0' in text
    assert 'auth_http_requests_total{endpoint="unmatched",status="404"} 1.0' in text
    assert 'auth_http_request_duration_seconds_count{endpoint="/login"} 1.0' in text
    assert 'auth_logins_total{outcome="failure"} 1.0' in text


def test_each_app_has_its_own_registry(users, throttle, make_settings):
    first = create_app(make_settings(), users=users, throttle=throttle).test_client()
    second = create_app(make_settings(), users=users, throttle=throttle).test_client()
    first.get("/healthz")

    assert 'endpoint="/healthz"' in first.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/healthz"' not in second.get("/metrics").get_data(as_text=True)


def test_json_formatter_writes_one_json_object_with_extras():
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("auth.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.email = "alice@example.com"

    entry = json.loads(formatter.format(record))

    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "auth.x"
    assert entry["email"] == "alice@example.com"
    assert entry["time"].endswith("+00:00")


def test_json_formatter_keeps_tracebacks_on_one_line():
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("auth", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())

    line = logs.JsonFormatter().format(record)

    assert "\n" not in line
    assert "ValueError: bad" in json.loads(line)["exc_info"]


def test_configure_is_idempotent():
    logs.configure()
    logs.configure()

    handlers = [h for h in logging.getLogger("auth").handlers if getattr(h, "_auth_json", False)]
    assert len(handlers) == 1
