"""auth against a real MariaDB: schema step and its migration, init.sql's grants, bootstrap admin, login,
duplicates, the CLI, throttle shared by replicas and keyed on the account the collation finds, token
revocation by deletion and password change."""

from __future__ import annotations

import base64
import dataclasses
import io
import secrets
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MySQLdb = pytest.importorskip("MySQLdb", reason="mysqlclient is not installed")

from auth import create_app, db as auth_db  # noqa: E402
from auth.__main__ import main as cli  # noqa: E402
from auth.config import ENV_VARS, Settings  # noqa: E402
from auth.errors import UserExists  # noqa: E402
from auth.throttle import MySQLThrottle  # noqa: E402
from auth.users import MySQLUsers  # noqa: E402
from tests.support import MARIADB_PORT, mariadb_root, unique  # noqa: E402

INIT_SQL = Path(__file__).resolve().parents[2] / "mysql" / "init.sql"
JWT_SECRET = "integration-test-jwt-secret-0123456789"
ADMIN = ("admin@example.com", "admin-password-1")


@pytest.fixture
def db(request) -> dict:
    try:
        return request.getfixturevalue("mysql_db")
    except pytest.FixtureLookupError:
        pytest.skip("fixture mysql_db is missing (expected in tests/conftest.py; start MariaDB with `make infra`)")


def env_for(db: dict) -> dict[str, str]:
    return {
        "MYSQL_HOST": db["host"],
        "MYSQL_PORT": str(db["port"]),
        "MYSQL_USER": db["user"],
        "MYSQL_PASSWORD": db["password"],
        "MYSQL_DB": db["db"],
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_EMAIL": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
    }


def settings_for(db: dict, **overrides) -> Settings:
    return dataclasses.replace(Settings.from_env(env_for(db)), **overrides)


def query(db: dict, sql: str, params=()) -> list[tuple]:
    conn = MySQLdb.connect(
        host=db["host"], port=int(db["port"]), user=db["user"], passwd=db["password"], db=db["db"]
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = list(cur.fetchall())
        conn.commit()  # some tests write through here (an older installation's rows)
        return rows
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
    assert set(columns) == {"id", "email", "password_hash", "is_admin", "token_version", "created_at"}
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
    assert (validate.get_json()["iss"], validate.get_json()["aud"], validate.get_json()["ver"]) == (
        "mp3converter-auth", "mp3converter", 0)
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


# The reproductions: the column's collation (utf8mb4_unicode_ci) finds ann's row for every one of
# these spellings, and the per-user counter used to be keyed on the bytes typed.
LOOK_ALIKES = {
    "upper-case": "Ann@example.com",
    "accent": "ánn@example.com",
    "full-width": "ａnn@example.com",
    "zero-width-space": "ann\u200b@example.com",
}
ANN = ("ann@example.com", "ann-password-1")


def admin_client_with_ann(db: dict, **overrides):
    client = create_app(settings_for(db, **overrides)).test_client()
    token = client.post("/login", headers=basic(*ADMIN)).get_data(as_text=True)
    created = client.post("/users", headers={"Authorization": f"Bearer {token}"},
                          json={"email": ANN[0], "password": ANN[1]})
    assert created.status_code == 201
    return client, token


@pytest.mark.parametrize("variant", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_mysql_finds_ann_for_each_look_alike(db, variant):
    """The premise of the bypass: MariaDB's collation equates every spelling with ann's address."""
    admin_client_with_ann(db)

    assert query(db, "SELECT email FROM `user` WHERE email = %s", (variant,)) == [(ANN[0],)]


@pytest.mark.parametrize("variant", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_after_five_failures_a_look_alike_gets_no_token(db, variant):
    client, _ = admin_client_with_ann(db, login_max_failures_per_user=5, login_max_failures_per_address=1000)
    for _ in range(5):
        assert client.post("/login", headers=basic(ANN[0], "wrong-password")).status_code == 401

    response = client.post("/login", headers=basic(variant, ANN[1]))

    if variant == LOOK_ALIKES["zero-width-space"]:
        # Refused as an address: no account is looked up with it, so it can win nothing.
        assert (response.status_code, response.get_json()) == (401, {"error": "invalid email or password"})
    else:
        assert (response.status_code, response.get_json()) == (429, {"error": "too many failed logins, try again later"})
    ann_id = query(db, "SELECT id FROM `user` WHERE email = %s", (ANN[0],))[0][0]
    # The counter is the account's, keyed by its id, and still at 5: the look-alike started no fresh one.
    assert query(db, "SELECT failures FROM login_failure WHERE scope = 'user' AND subject = %s",
                 (f"id:{ann_id}",)) == [(5,)]


def test_failures_under_look_alike_spellings_share_the_accounts_counter(db):
    client, _ = admin_client_with_ann(db, login_max_failures_per_user=3, login_max_failures_per_address=1000)
    for variant in ("Ann@example.com", "ánn@example.com", "ａnn@example.com"):
        assert client.post("/login", headers=basic(variant, "wrong-password")).status_code == 401

    assert client.post("/login", headers=basic(*ANN)).status_code == 429


@pytest.mark.parametrize(
    ("variant", "status"),
    [("Ann@example.com", 200), ("ａnn@example.com", 200), ("ánn@example.com", 401), ("ann\u200b@example.com", 401)],
    ids=["upper-case", "full-width", "accent", "zero-width-space"],
)
def test_only_anns_own_address_logs_in_as_ann(db, variant, status):
    client, _ = admin_client_with_ann(db)

    response = client.post("/login", headers=basic(variant, ANN[1]))

    assert response.status_code == status


@pytest.mark.parametrize(
    ("email", "status"),
    [("ａnn@example.com", 409), ("ánn@example.com", 409), ("ANN@example.com", 409), ("ann\u200b@example.com", 400)],
    ids=["full-width", "accent", "upper-case", "zero-width-space"],
)
def test_no_second_account_under_a_look_alike_address(db, email, status):
    client, token = admin_client_with_ann(db)

    response = client.post("/users", headers={"Authorization": f"Bearer {token}"},
                           json={"email": email, "password": "other-password-1"})

    assert response.status_code == status
    assert query(db, "SELECT email FROM `user` WHERE email <> %s", (ADMIN[0],)) == [(ANN[0],)]


def test_tokens_of_a_deleted_user_are_refused_by_every_replica(db):
    client, admin_token = admin_client_with_ann(db)
    other_replica = create_app(settings_for(db)).test_client()
    ann_token = client.post("/login", headers=basic(*ANN)).get_data(as_text=True)
    assert other_replica.post("/validate", headers={"Authorization": f"Bearer {ann_token}"}).status_code == 200

    deleted = client.delete("/users/ann@example.com", headers={"Authorization": f"Bearer {admin_token}"})

    assert deleted.status_code == 204
    validate = other_replica.post("/validate", headers={"Authorization": f"Bearer {ann_token}"})
    assert (validate.status_code, validate.get_json()) == (401, {"error": "token has been revoked"})
    assert query(db, "SELECT email FROM `user`") == [(ADMIN[0],)]


def test_delete_by_a_look_alike_address_deletes_nobody(db):
    client, admin_token = admin_client_with_ann(db)

    response = client.delete("/users/ánn@example.com", headers={"Authorization": f"Bearer {admin_token}"})

    assert (response.status_code, response.get_json()) == (404, {"error": "user not found"})
    assert query(db, "SELECT COUNT(*) FROM `user`")[0][0] == 2


def test_password_change_revokes_tokens_issued_before_it(db):
    client, _ = admin_client_with_ann(db)
    other_replica = create_app(settings_for(db)).test_client()
    first = client.post("/login", headers=basic(*ANN)).get_data(as_text=True)
    second = client.post("/login", headers=basic(*ANN)).get_data(as_text=True)

    changed = client.post("/users/me/password", headers={"Authorization": f"Bearer {first}"},
                          json={"current_password": ANN[1], "new_password": "ann-password-2"})

    assert changed.status_code == 200
    for old in (first, second):
        refused = other_replica.post("/validate", headers={"Authorization": f"Bearer {old}"})
        assert (refused.status_code, refused.get_json()) == (401, {"error": "token has been revoked"})
    fresh = other_replica.post("/validate", headers={"Authorization": f"Bearer {changed.get_data(as_text=True)}"})
    assert (fresh.status_code, fresh.get_json()["ver"]) == (200, 1)
    assert query(db, "SELECT token_version FROM `user` WHERE email = %s", (ANN[0],)) == [(1,)]
    assert client.post("/login", headers=basic(*ANN)).status_code == 401
    assert client.post("/login", headers=basic(ANN[0], "ann-password-2")).status_code == 200


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
def connection(db):
    """A plain connection with auth's options and its tables, to drive the adapters directly."""
    with closing(MySQLdb.connect(**auth_db.connect_args(settings_for(db)))) as conn:
        auth_db.create_schema(conn)
        yield conn


def test_fixed_window_rolls_over_in_sql(connection):
    now = [1_000_000.0]
    throttle = MySQLThrottle(lambda: connection, max_per_user=2, max_per_address=10, window_seconds=60,
                             clock=lambda: now[0])

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
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM login_failure")
        assert cur.fetchone()[0] == 0


def test_users_adapter_round_trip_and_errors(connection):
    users = MySQLUsers(lambda: connection)

    created = users.create("o'neil@example.com", "$argon2id$x", admin=True)
    users.update_password_hash(created.id, "$argon2id$y")

    assert users.get_by_email("o'neil@example.com") == dataclasses.replace(created, password_hash="$argon2id$y")
    assert users.get_by_email("nobody@example.com") is None
    with pytest.raises(UserExists):
        users.create("o'neil@example.com", "$argon2id$z", admin=False)
    with pytest.raises(MySQLdb.IntegrityError):  # any other constraint is not mistaken for a duplicate
        users.create("null-hash@example.com", None, admin=False)  # type: ignore[arg-type]
    users.ping()


def test_users_adapter_changes_passwords_by_version_and_deletes_by_id(connection):
    users = MySQLUsers(lambda: connection)
    ann = users.create("ann@example.com", "$argon2id$a", admin=False)
    bob = users.create("bob@example.com", "$argon2id$b", admin=False)

    assert users.change_password(ann.id, "$argon2id$a2") == 1
    assert users.change_password(ann.id, "$argon2id$a3") == 2
    users.update_password_hash(ann.id, "$argon2id$a4")  # a rehash at login revokes nothing
    assert users.get_by_id(ann.id) == dataclasses.replace(ann, password_hash="$argon2id$a4", token_version=2)
    assert users.get_by_id(bob.id).token_version == 0
    assert users.delete(ann.id) is True
    assert users.delete(ann.id) is False
    assert users.change_password(ann.id, "$argon2id$x") is None
    assert users.get_by_id(ann.id) is None and users.get_by_email("ann@example.com") is None
    assert users.get_by_id(bob.id) is not None


def test_login_rehash_updates_the_row(connection, db):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("legacy-password")
    MySQLUsers(lambda: connection).create("legacy@example.com", weak, admin=False)
    client = create_app(settings_for(db)).test_client()

    assert client.post("/login", headers=basic("legacy@example.com", "legacy-password")).status_code == 200

    stored = query(db, "SELECT password_hash FROM `user` WHERE email = %s", ("legacy@example.com",))[0][0]
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# The `user` table as the first release created it, before token_version existed.
OLD_USER_TABLE = """
    CREATE TABLE `user` (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      email VARCHAR(255) NOT NULL UNIQUE,
      password_hash VARCHAR(255) NOT NULL,
      is_admin BOOLEAN NOT NULL DEFAULT FALSE,
      created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""


def test_an_existing_installation_is_migrated_and_its_users_still_log_in(db):
    from auth import passwords

    query(db, OLD_USER_TABLE)
    query(db, "INSERT INTO `user` (email, password_hash, is_admin) VALUES (%s, %s, 0)",
          ("old@example.com", passwords.hash_password("old-password-1")))

    client = create_app(settings_for(db)).test_client()
    create_app(settings_for(db))  # a second replica / restart: nothing left to migrate

    columns = {row[0]: (row[1], row[2], row[4]) for row in query(db, "SHOW COLUMNS FROM `user`")}
    assert columns["token_version"] == ("int(10) unsigned", "NO", "0")
    assert query(db, "SELECT email, token_version FROM `user` WHERE email = 'old@example.com'") == [
        ("old@example.com", 0)]
    login = client.post("/login", headers=basic("old@example.com", "old-password-1"))
    assert login.status_code == 200
    token = login.get_data(as_text=True)
    assert client.post("/validate", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_replicas_migrating_at_once_all_start(db):
    """Replicas starting together may all see the column missing; every one must come up, the column once.
    (The duplicate-column answer a loser of the race gets is tested deterministically in auth/tests.)"""
    import threading

    query(db, OLD_USER_TABLE)
    settings = settings_for(db)
    barrier, errors = threading.Barrier(6), []

    def replica():
        try:
            with closing(MySQLdb.connect(**auth_db.connect_args(settings))) as conn:
                barrier.wait()
                auth_db.create_schema(conn)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [row[0] for row in query(db, "SHOW COLUMNS FROM `user`")].count("token_version") == 1


def test_an_account_without_alter_gets_a_clear_error_instead_of_retries(init_sql_account):
    """An installation whose account came from the old init.sql (no ALTER) cannot migrate by itself."""
    name = init_sql_account["db"]
    mariadb_root(f"REVOKE ALTER ON `{name}`.* FROM '{name}'@'%'; USE `{name}`; {OLD_USER_TABLE};")

    with pytest.raises(auth_db.SchemaError, match=r"cannot add column user\.token_version: ALTER command denied"):
        create_app(settings_for(init_sql_account))


@pytest.fixture
def cli_env(db, monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env_for(db).items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_cli_creates_the_schema_and_a_user_who_can_log_in(db, cli_env, capsys):
    cli_env.setattr("sys.stdin", io.StringIO("bob password 1\n"))

    assert cli(["create-user", "Bob@Example.com", "--password-stdin"]) == 0

    # stdout also carries the JSON audit log line; the human summary is the last line.
    assert capsys.readouterr().out.splitlines()[-1] == "created user bob@example.com"
    assert query(db, "SELECT email, is_admin FROM `user`") == [("bob@example.com", 0)]
    client = create_app(settings_for(db, admin_email=None, admin_password=None)).test_client()
    assert client.post("/login", headers=basic("bob@example.com", "bob password 1")).status_code == 200


def test_cli_creates_an_admin_and_refuses_a_duplicate(db, cli_env, capsys):
    answers = iter(["root-password", "root-password"])
    cli_env.setattr("getpass.getpass", lambda prompt: next(answers))
    assert cli(["create-user", "root@example.com", "--admin"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "created user root@example.com (admin)"

    cli_env.setattr("sys.stdin", io.StringIO("another-password\n"))
    assert cli(["create-user", "ROOT@example.com", "--password-stdin"]) == 1

    assert capsys.readouterr().err == "auth: error: user already exists\n"
    assert query(db, "SELECT email, is_admin FROM `user`") == [("root@example.com", 1)]


@pytest.fixture
def init_sql_account(servers):
    """mysql/init.sql applied as `make infra` applies it, with a unique database, account and password."""
    name, password = unique("auth"), secrets.token_urlsafe(18)
    sql = INIT_SQL.read_text()
    for old, new in (("`auth`", f"`{name}`"), ("'auth_user'", f"'{name}'"),
                     ("'dev-only-placeholder-auth-db-password'", f"'{password}'")):
        assert old in sql, f"init.sql no longer contains {old}"
        sql = sql.replace(old, new)
    mariadb_root(sql)
    yield {"host": "127.0.0.1", "port": MARIADB_PORT, "user": name, "password": password, "db": name}
    mariadb_root(f"DROP DATABASE IF EXISTS `{name}`; DROP USER IF EXISTS '{name}'@'%';")


def test_init_sql_grants_are_enough_to_migrate_an_existing_installation(init_sql_account):
    mariadb_root(f"USE `{init_sql_account['db']}`; {OLD_USER_TABLE};")

    client = create_app(settings_for(init_sql_account)).test_client()

    assert "token_version" in {row[0] for row in query(init_sql_account, "SHOW COLUMNS FROM `user`")}
    assert client.post("/login", headers=basic(*ADMIN)).status_code == 200


def test_init_sql_grants_are_enough_for_auth_to_create_its_tables_and_run(init_sql_account):
    assert query(init_sql_account, "SHOW TABLES") == []  # init.sql creates no tables

    client = create_app(settings_for(init_sql_account)).test_client()

    assert {row[0] for row in query(init_sql_account, "SHOW TABLES")} == {"user", "login_failure"}
    assert client.post("/login", headers=basic(*ADMIN)).status_code == 200
    assert client.post("/login", headers=basic(ADMIN[0], "wrong-password")).status_code == 401
