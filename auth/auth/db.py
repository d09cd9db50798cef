"""MySQL plumbing shared by the app and the CLI: connection options and the schema step (auth's only DDL)."""

from __future__ import annotations

import logging
from typing import Any

import MySQLdb
from MySQLdb.connections import Connection

from .config import Settings

log = logging.getLogger(__name__)

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
      token_version INT UNSIGNED NOT NULL DEFAULT 0,
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


# Columns added after the first release: installations whose tables predate them get them at start.
# (table, column, the ALTER TABLE that adds it). MySQL has no ADD COLUMN IF NOT EXISTS (MariaDB has), hence
# the information_schema check; its default is what every existing row gets.
COLUMNS = (
    # Bumped on a password change; a token names the version it was issued for (tokens.py, accounts.py).
    ("user", "token_version",
     "ALTER TABLE `user` ADD COLUMN token_version INT UNSIGNED NOT NULL DEFAULT 0 AFTER is_admin"),
)
ER_DUP_FIELDNAME = 1060
ER_TABLEACCESS_DENIED = 1142


class SchemaError(RuntimeError):
    """The schema cannot be brought up to date with this account's privileges; not worth retrying."""


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
    """Create auth's tables if they are missing and add the columns older installations lack; safe to run at
    every start and from several replicas."""
    with connection.cursor() as cur:
        for ddl in TABLES:
            cur.execute(ddl)
        for table, column, ddl in COLUMNS:
            cur.execute(
                "SELECT 1 FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = %s",
                (table, column),
            )
            if cur.fetchone() is not None:
                continue
            try:
                cur.execute(ddl)
            except MySQLdb.MySQLError as exc:
                code = exc.args[0] if exc.args else None
                if code == ER_DUP_FIELDNAME:
                    continue  # another replica added it between our check and our ALTER
                if code == ER_TABLEACCESS_DENIED:
                    # An account made by an older init.sql, without ALTER: say what to do, and do not let
                    # start-up retry something only an administrator can fix.
                    raise SchemaError(
                        f"cannot add column {table}.{column}: {exc.args[1]}; grant ALTER on the auth database "
                        f"to this account, or run as an administrator: {ddl}"
                    ) from None
                raise
            log.info("schema migrated", extra={"table": table, "column": column})
