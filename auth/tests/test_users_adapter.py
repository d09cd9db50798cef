"""users.py: email rules, MySQL error mapping, and the DDL shared with mysql/init.sql."""

import re
from pathlib import Path

import MySQLdb
import pytest

from auth import users as users_module
from auth.errors import InvalidInput, UserExists
from auth.users import MySQLUsers, is_valid_email, normalize_email, validate_email

INIT_SQL = Path(__file__).resolve().parents[2] / "mysql" / "init.sql"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Alice@Example.COM\t", "alice@example.com"), ("bob@example.com", "bob@example.com")],
)
def test_normalize(raw, expected):
    assert normalize_email(raw) == expected
    assert validate_email(raw) == expected


@pytest.mark.parametrize(
    "email",
    ["", "plain", "@example.com", "a@", "a@example", "a@b@example.com", "a b@example.com", "a@exa mple.com",
     "a@.example.com", "a@example.com.", "a\x00@example.com", "a" * 243 + "@example.com"],
)
def test_invalid_emails(email):
    assert not is_valid_email(email)
    with pytest.raises(InvalidInput, match="^email is not a valid address$"):
        validate_email(email)


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.com"])
def test_valid_emails(email):
    assert is_valid_email(email)


class _Cursor:
    def __init__(self, error=None, rows=()):
        self.error, self.rows, self.executed = error, list(rows), []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.executed.append((sql, params))
        if self.error:
            raise self.error

    def fetchone(self):
        return self.rows[0] if self.rows else None


class _MySQL:
    def __init__(self, cursor):
        self.connection = type("Conn", (), {"cursor": lambda _self: cursor})()


def test_duplicate_key_becomes_user_exists():
    adapter = MySQLUsers(_MySQL(_Cursor(error=MySQLdb.IntegrityError(1062, "Duplicate entry"))))

    with pytest.raises(UserExists):
        adapter.create("a@example.com", "$argon2id$x")


def test_other_integrity_errors_are_not_hidden():
    adapter = MySQLUsers(_MySQL(_Cursor(error=MySQLdb.IntegrityError(1048, "Column cannot be null"))))

    with pytest.raises(MySQLdb.IntegrityError):
        adapter.create("a@example.com", "$argon2id$x")


def test_queries_are_parameterised_and_normalised():
    cursor = _Cursor(rows=[("a@example.com", "$argon2id$x", 1)])
    adapter = MySQLUsers(_MySQL(cursor))

    user = adapter.get_by_email(" A@Example.com' OR '1'='1")

    sql, params = cursor.executed[0]
    assert "%s" in sql and "'" not in sql.replace("`", "")
    assert params == ("a@example.com' or '1'='1",)
    assert user.is_admin is True


def _statements(sql: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [" ".join(s.split()) for s in without_comments.split(";") if s.strip()]


def test_init_sql_has_the_same_table_ddl_as_the_service():
    statements = _statements(INIT_SQL.read_text())

    for ddl in (users_module.USER_TABLE_DDL, users_module.LOGIN_FAILURE_TABLE_DDL):
        assert " ".join(ddl.split()) in statements


def test_init_sql_has_no_user_rows_or_hashes():
    text = INIT_SQL.read_text()

    assert "INSERT INTO" not in text.upper()
    assert "$argon2" not in text
    assert "dev-only placeholder" in text
