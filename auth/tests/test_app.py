"""Application-level behaviour: start-up (bootstrap admin, MySQL retry), errors, health, metrics."""

import base64
import json
import logging

import MySQLdb
import pytest

import auth
from auth import create_app
from auth.errors import UserExists

UNAVAILABLE = {"error": "a backing service is unavailable, try again later"}


def basic_header(email, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def test_startup_creates_the_bootstrap_admin(app, users):
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

    def create(email, password_hash, *, admin):
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
    real = throttle.purge_expired

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MySQLdb.OperationalError(2003, "Can't connect to MySQL server")
        real()

    throttle.purge_expired = flaky
    monkeypatch.setattr("auth.wait_exponential", lambda **kw: (lambda state: 0))  # no real sleeping

    create_app(make_settings(admin_email="admin@example.com", admin_password="admin-password-1"),
               users=users, throttle=throttle)

    assert len(calls) == 3
    assert "admin@example.com" in users.rows


def test_startup_gives_up_after_a_bounded_time(users, throttle, make_settings, monkeypatch):
    users.down = True
    monkeypatch.setattr(auth, "STARTUP_RETRY_SECONDS", 0.05)
    monkeypatch.setattr("auth.wait_exponential", lambda **kw: (lambda state: 0.01))

    with pytest.raises(MySQLdb.OperationalError):
        create_app(make_settings(admin_email="admin@example.com", admin_password="admin-password-1"),
                   users=users, throttle=throttle)


def test_healthz_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [("GET", "/healthz", {}), ("POST", "/login", basic_header("alice@example.com", "alice-password-1"))],
)
def test_mysql_down_is_a_json_503(client, users, method, path, headers):
    users.down = True

    response = client.open(path, method=method, headers=headers)

    assert response.status_code == 503
    assert response.get_json() == UNAVAILABLE
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nope", 404, "The requested URL was not found on the server. If you entered the URL manually "
                              "please check your spelling and try again."),
        ("GET", "/validate", 405, "The method is not allowed for the requested URL."),
        ("DELETE", "/users", 405, "The method is not allowed for the requested URL."),
        ("POST", "/healthz", 405, "The method is not allowed for the requested URL."),
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

    with caplog.at_level(logging.ERROR):
        response = client.post("/login", headers=basic_header("alice@example.com", "alice-password-1"))

    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error"}
    assert b"secret internals" not in response.data and b"Traceback" not in response.data
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_metrics_count_requests_by_endpoint_method_and_status(client):
    client.post("/login", headers=basic_header("alice@example.com", "wrong-password"))
    client.get("/nope")

    text = client.get("/metrics").get_data(as_text=True)

    assert 'auth_http_requests_total{endpoint="/login",method="POST",status="401"} 1.0' in text
    assert 'auth_http_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0' in text
    assert 'auth_http_request_duration_seconds_count{endpoint="/login"} 1.0' in text
    assert 'auth_logins_total{outcome="failure"} 1.0' in text


def test_login_outcomes_are_counted(client, throttle):
    client.post("/login", headers=basic_header("alice@example.com", "alice-password-1"))
    for _ in range(4):  # FakeThrottle: the 4th attempt after 3 failures is throttled
        client.post("/login", headers=basic_header("alice@example.com", "wrong-password"))

    text = client.get("/metrics").get_data(as_text=True)

    assert 'auth_logins_total{outcome="success"} 1.0' in text
    assert 'auth_logins_total{outcome="failure"} 3.0' in text
    assert 'auth_logins_total{outcome="throttled"} 1.0' in text


def test_each_app_has_its_own_registry(users, throttle, make_settings):
    first = create_app(make_settings(), users=users, throttle=throttle).test_client()
    second = create_app(make_settings(), users=users, throttle=throttle).test_client()
    first.get("/healthz")

    assert 'endpoint="/healthz"' in first.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/healthz"' not in second.get("/metrics").get_data(as_text=True)


def test_log_lines_use_the_shared_json_schema(client, capsys):
    client.post("/login", headers=basic_header("alice@example.com", "wrong-password"))

    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (entry,) = [e for e in entries if e["msg"] == "login failed"]
    assert (entry["level"], entry["logger"], entry["email"]) == ("INFO", "auth.accounts", "alice@example.com")
    assert entry["ts"].endswith("+00:00")
