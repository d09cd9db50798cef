"""MySQL adapter for the `user` table (and schema creation), plus email normalisation/validation."""

from __future__ import annotations

import re
from dataclasses import dataclass

import MySQLdb
from flask_mysqldb import MySQL

from .errors import InvalidInput, UserExists

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
# Deliberately simple: one @, no whitespace/control characters, a dotted domain. Delivery proves the rest.
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(?:\.[^@\s\x00-\x1f\x7f.]+)+")

ER_DUP_ENTRY = 1062

# Kept identical to mysql/init.sql (a unit test compares them).
USER_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS `user` (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(255) NOT NULL UNIQUE,
  password_hash VARCHAR(255) NOT NULL,
  is_admin BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

# Failed-login counters shared by all replicas (see throttle.py); binary collation = exact keys.
LOGIN_FAILURE_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS login_failure (
  scope VARCHAR(16) NOT NULL,
  subject VARCHAR(255) NOT NULL,
  window_start BIGINT NOT NULL,
  failures INT UNSIGNED NOT NULL,
  PRIMARY KEY (scope, subject)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
"""


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def is_valid_email(email: str) -> bool:
    return len(email) <= MAX_EMAIL_LENGTH and _EMAIL_RE.fullmatch(email) is not None


def validate_email(raw: str) -> str:
    """Return the normalised email or raise InvalidInput."""
    email = normalize_email(raw)
    if not is_valid_email(email):
        raise InvalidInput("email is not a valid address")
    return email


@dataclass(frozen=True)
class User:
    email: str
    password_hash: str = ""
    is_admin: bool = False


class MySQLUsers:
    """Users stored in MySQL; uses the request's flask_mysqldb connection (needs an app context)."""

    def __init__(self, mysql: MySQL) -> None:
        self._mysql = mysql

    def _cursor(self):
        return self._mysql.connection.cursor()

    def ensure_schema(self) -> None:
        with self._cursor() as cur:
            cur.execute(USER_TABLE_DDL)
            cur.execute(LOGIN_FAILURE_TABLE_DDL)

    def ping(self) -> None:
        """Raise MySQLdb.OperationalError when the database is unreachable."""
        with self._cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    def get_by_email(self, email: str) -> User | None:
        with self._cursor() as cur:
            cur.execute(
                "SELECT email, password_hash, is_admin FROM `user` WHERE email = %s",
                (normalize_email(email),),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return User(email=row[0], password_hash=row[1], is_admin=bool(row[2]))

    def create(self, email: str, password_hash: str, *, admin: bool = False) -> User:
        email = normalize_email(email)
        try:
            with self._cursor() as cur:
                cur.execute(
                    "INSERT INTO `user` (email, password_hash, is_admin) VALUES (%s, %s, %s)",
                    (email, password_hash, bool(admin)),
                )
        except MySQLdb.IntegrityError as exc:
            if exc.args and exc.args[0] == ER_DUP_ENTRY:
                raise UserExists() from None
            raise
        return User(email=email, password_hash=password_hash, is_admin=bool(admin))

    def update_password_hash(self, email: str, password_hash: str) -> None:
        with self._cursor() as cur:
            cur.execute(
                "UPDATE `user` SET password_hash = %s WHERE email = %s",
                (password_hash, normalize_email(email)),
            )
