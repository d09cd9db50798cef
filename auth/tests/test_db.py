"""mysql/init.sql creates the database and account only: auth's tables are created (and migrated) by auth/db.py."""

from pathlib import Path

import MySQLdb
import pytest

from auth import db

INIT_SQL = Path(__file__).resolve().parents[2] / "mysql" / "init.sql"


def test_init_sql_has_no_tables_user_rows_or_hashes():
    text = INIT_SQL.read_text()

    assert "CREATE TABLE" not in text.upper()
    assert "INSERT INTO" not in text.upper()
    assert "$argon2" not in text
    assert "dev-only placeholder" in text


class _Cursor:
    """Answers the schema step's statements as MySQL would when another replica added the column between
    our information_schema check and our ALTER (or, with `alter_error`, whatever error is given)."""

    def __init__(self, log, alter_error):
        self.log, self.alter_error = log, alter_error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=None):
        self.log.append(sql.split()[0])
        if sql.startswith("ALTER") and self.alter_error:
            raise self.alter_error

    def fetchone(self):
        return None  # the column looks missing


class _Connection:
    def __init__(self, alter_error=None):
        self.log, self.alter_error = [], alter_error

    def cursor(self):
        return _Cursor(self.log, self.alter_error)


def test_losing_the_migration_race_to_another_replica_is_fine():
    conn = _Connection(MySQLdb.OperationalError(1060, "Duplicate column name 'token_version'"))

    db.create_schema(conn)

    assert conn.log.count("ALTER") == len(db.COLUMNS)


@pytest.mark.parametrize(
    ("error", "raised"),
    [(MySQLdb.OperationalError(1142, "ALTER command denied to user 'auth_user'"), db.SchemaError),
     (MySQLdb.OperationalError(2013, "Lost connection to MySQL server"), MySQLdb.OperationalError)],
    ids=["no-alter-grant", "connection-lost"],
)
def test_other_migration_errors_are_raised(error, raised):
    # A missing grant is not retried (only an administrator can fix it); a lost connection is, by start-up.
    with pytest.raises(raised):
        db.create_schema(_Connection(error))
