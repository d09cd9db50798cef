"""mysql/init.sql creates the database and account only: auth's tables are created by auth/db.py alone."""

from pathlib import Path

INIT_SQL = Path(__file__).resolve().parents[2] / "mysql" / "init.sql"


def test_init_sql_has_no_tables_user_rows_or_hashes():
    text = INIT_SQL.read_text()

    assert "CREATE TABLE" not in text.upper()
    assert "INSERT INTO" not in text.upper()
    assert "$argon2" not in text
    assert "dev-only placeholder" in text
