"""auth against a real MariaDB: schema, bootstrap admin, login, duplicates, throttle shared by replicas."""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.integration

MySQLdb = pytest.importorskip("MySQLdb", reason="mysqlclient is not installed")

from flask import Flask  # noqa: E402
from flask_mysqldb import MySQL  # noqa: E402

from auth import create_app  # noqa: E402
from auth.config import Settings  # noqa: E402
from auth.throttle import MySQLThrottle  # noqa: E402
from auth.users import MySQLUsers  # noqa: E402

JWT_SECRET = "integration-test-jwt-secret-0123456789"  # dev-only placeholder
ADMIN = ("admin@example.com", "admin-password-1")


@pytest.fixture
def db(request) -> dict:
    try:
        return request.getfixturevalue("mysql_db")
    except pytest.FixtureLookupError:
        pytest.skip("fixture mysql_db is missing (expected in tests/conftest.py; start MariaDB with `make infra`)")


def settings_for(db: dict, **overrides) -> Settings:
    values = dict(
        mysql_host=db["host"],
        mysql_port=int(db["port"]),
        mysql_user=db["user"],
        mysql_password=db["password"],
        mysql_db=db["db"],
        jwt_secret=JWT_SECRET,
        admin_email=ADMIN[0],
        admin_password=ADMIN[1],
    )
    values.update(overrides)
    return Settings(**values)


def query(db: dict, sql: str, params=()) -> list[tuple]:
    conn = MySQLdb.connect(
        host=db["host"], port=int(db["port"]), user=db["user"], passwd=db["password"], db=db["db"]
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def basic(email: str, password: str, address: str = "198.51.100.1") -> dict[str, str]:
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "X-Forwarded-For": address}


def test_start_creates_schema_idempotently(db):
    create_app(settings_for(db))
    create_app(settings_for(db))  # a second replica / restart

    tables = {row[0] for row in query(db, "SHOW TABLES")}
    assert {"user", "login_failure"} <= tables
    columns = {row[0]: row[1] for row in query(db, "SHOW COLUMNS FROM `user`")}
    assert set(columns) == {"id", "email", "password_hash", "is_admin", "created_at"}
    assert columns["email"] == "varchar(255)"
    indexes = {(row[2], row[1]) for row in query(db, "SHOW INDEX FROM `user`")}
    assert ("email", 0) in indexes  # unique


def test_bootstrap_admin_created_once(db):
    create_app(settings_for(db))
    create_app(settings_for(db))

    rows = query(db, "SELECT email, password_hash, is_admin FROM `user`")
    assert len(rows) == 1
    email, password_hash, is_admin = rows[0]
    assert (email, is_admin) == (ADMIN[0], 1)
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_login_returns_a_token_that_validates(db):
    client = create_app(settings_for(db)).test_client()

    login = client.post("/login", headers=basic(*ADMIN))
    assert login.status_code == 200
    validate = client.post("/validate", headers={"Authorization": f"Bearer {login.get_data(as_text=True)}"})

    assert validate.status_code == 200
    assert validate.get_json()["email"] == ADMIN[0]
    assert validate.get_json()["admin"] is True
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_create_user_then_duplicate_is_409(db):
    client = create_app(settings_for(db)).test_client()
    token = client.post("/login", headers=basic(*ADMIN)).get_data(as_text=True)
    auth_header = {"Authorization": f"Bearer {token}"}
    body = {"email": "o'neil@example.com", "password": "oneil-password"}  # a quote is a valid email character

    first = client.post("/users", headers=auth_header, json=body)
    again = client.post("/users", headers=auth_header, json={**body, "email": "O'Neil@Example.com"})
    login = client.post("/login", headers=basic("o'neil@example.com", "oneil-password"))

    assert (first.status_code, first.get_json()) == (201, {"email": "o'neil@example.com", "admin": False})
    assert (again.status_code, again.get_json()) == (409, {"error": "user already exists"})
    assert login.status_code == 200
    assert query(db, "SELECT COUNT(*) FROM `user`")[0][0] == 2


def test_sql_metacharacters_in_the_username_are_just_a_wrong_user(db):
    client = create_app(settings_for(db)).test_client()

    for email in ("' OR '1'='1", "admin@example.com' -- ", "x@example.com'; DROP TABLE `user`; --"):
        response = client.post("/login", headers=basic(email, "x"))
        assert response.status_code == 401
        assert response.get_json() == {"error": "invalid email or password"}
    assert query(db, "SELECT COUNT(*) FROM `user`")[0][0] == 1


def test_throttle_is_shared_by_two_app_instances(db):
    settings = settings_for(db, login_max_failures_per_user=2, login_max_failures_per_address=100)
    replica_a = create_app(settings).test_client()
    replica_b = create_app(settings).test_client()

    assert replica_a.post("/login", headers=basic(ADMIN[0], "wrong-1")).status_code == 401
    assert replica_b.post("/login", headers=basic(ADMIN[0], "wrong-2")).status_code == 401
    blocked = replica_a.post("/login", headers=basic(ADMIN[0], ADMIN[1], address="203.0.113.9"))
    also_blocked = replica_b.post("/login", headers=basic(ADMIN[0], ADMIN[1]))

    assert blocked.status_code == 429
    assert blocked.get_json() == {"error": "too many failed logins, try again later"}
    assert 1 <= int(blocked.headers["Retry-After"]) <= settings.login_window_seconds
    assert also_blocked.status_code == 429


def test_address_limit_and_reset_on_success(db):
    settings = settings_for(db, login_max_failures_per_user=3, login_max_failures_per_address=3)
    replica_a = create_app(settings).test_client()
    replica_b = create_app(settings).test_client()

    assert replica_a.post("/login", headers=basic(ADMIN[0], "wrong", "192.0.2.50")).status_code == 401
    assert replica_b.post("/login", headers=basic(ADMIN[0], ADMIN[1], "192.0.2.60")).status_code == 200
    # The success cleared the user's counter, so only the address counters remain.
    assert query(db, "SELECT scope, subject, failures FROM login_failure") == [("address", "192.0.2.50", 1)]

    for i in range(2):
        replica_a.post("/login", headers=basic(f"nobody{i}@example.com", "x", "192.0.2.50"))
    from_bad_address = replica_b.post("/login", headers=basic(ADMIN[0], ADMIN[1], "192.0.2.50"))
    from_other_address = replica_b.post("/login", headers=basic(ADMIN[0], ADMIN[1], "192.0.2.61"))

    assert from_bad_address.status_code == 429
    assert from_other_address.status_code == 200


@pytest.fixture
def raw_mysql(db):
    """A bare Flask app with flask_mysqldb, to drive the adapters with a controlled clock."""
    create_app(settings_for(db))  # schema
    app = Flask("auth-integration")
    app.config.update(
        MYSQL_HOST=db["host"], MYSQL_PORT=int(db["port"]), MYSQL_USER=db["user"],
        MYSQL_PASSWORD=db["password"], MYSQL_DB=db["db"], MYSQL_AUTOCOMMIT=True, MYSQL_CHARSET="utf8mb4",
    )
    return app, MySQL(app)


def test_fixed_window_rolls_over_in_sql(raw_mysql):
    app, mysql = raw_mysql
    now = [1_000_000.0]
    throttle = MySQLThrottle(mysql, max_per_user=2, max_per_address=10, window_seconds=60, clock=lambda: now[0])

    with app.app_context():
        throttle.record_failure(user="u@example.com", address="a")
        throttle.record_failure(user="u@example.com", address="a")
        assert throttle.retry_after(user="u@example.com", address="a") == 999_960 + 60 - 1_000_000
        now[0] += 60  # next window: the old count no longer blocks
        assert throttle.retry_after(user="u@example.com", address="a") == 0
        throttle.record_failure(user="u@example.com", address="a")  # restarts at 1, not 3
        assert throttle.retry_after(user="u@example.com", address="a") == 0
        throttle.record_failure(user="u@example.com", address="a")
        assert throttle.retry_after(user="u@example.com", address="a") == 60 - (1_000_060 - 1_000_020)
        now[0] += 120
        throttle.purge_expired()
        with mysql.connection.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM login_failure")
            assert cur.fetchone()[0] == 0


def test_login_rehash_updates_the_row(raw_mysql, db):
    from argon2 import PasswordHasher

    app, mysql = raw_mysql
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("legacy-password")
    with app.app_context():
        MySQLUsers(mysql).create("legacy@example.com", weak)
    client = create_app(settings_for(db)).test_client()

    assert client.post("/login", headers=basic("legacy@example.com", "legacy-password")).status_code == 200

    stored = query(db, "SELECT password_hash FROM `user` WHERE email = %s", ("legacy@example.com",))[0][0]
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
