"""MySQL plumbing shared by the app and the CLI: connection options and the schema step (auth's only DDL)."""

from __future__ import annotations

from typing import Any

from MySQLdb.connections import Connection

from .config import Settings

CONNECT_TIMEOUT = 5
# Bounded reads/writes turn a hung database into a 503 instead of a worker killed by gunicorn.
IO_TIMEOUT = 10

# The tables are created here and nowhere else: mysql/init.sql only creates the database and the account.
TABLES = (
    """
    CREATE TABLE IF NOT EXISTS `user` (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      email VARCHAR(255) NOT NULL UNIQUE,
      password_hash VARCHAR(255) NOT NULL,
      is_admin BOOLEAN NOT NULL DEFAULT FALSE,
      created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
    """,
    # Failed-login counters shared by all replicas (see throttle.py); binary collation = exact keys.
    """
    CREATE TABLE IF NOT EXISTS login_failure (
      scope VARCHAR(16) NOT NULL,
      subject VARCHAR(255) NOT NULL,
      window_start BIGINT NOT NULL,
      failures INT UNSIGNED NOT NULL,
      PRIMARY KEY (scope, subject)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
    """,
)


def connect_args(settings: Settings) -> dict[str, Any]:
    """MySQLdb.connect() arguments for auth's database."""
    return {
        "host": settings.mysql_host,
        "port": settings.mysql_port,
        "user": settings.mysql_user,
        "password": settings.mysql_password,
        "database": settings.mysql_db,
        # utf8mb4: MySQL's "utf8" is 3-byte and cannot store every email address.
        "charset": "utf8mb4",
        # Every write is one statement, so autocommit gives atomicity without transaction bookkeeping.
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": IO_TIMEOUT,
        "write_timeout": IO_TIMEOUT,
    }


def create_schema(connection: Connection) -> None:
    """Create auth's tables if they are missing; safe to run at every start and from several replicas."""
    with connection.cursor() as cur:
        for ddl in TABLES:
            cur.execute(ddl)
