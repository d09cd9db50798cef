"""MySQL adapter for the `user` table: stores and reads users as given (the rules live in accounts/rules)."""

from __future__ import annotations

from collections.abc import Callable

import MySQLdb
from MySQLdb.connections import Connection

from .accounts import User
from .errors import UserExists

ER_DUP_ENTRY = 1062
_COLUMNS = "id, email, password_hash, is_admin, token_version"


def _user(row: tuple | None) -> User | None:
    if row is None:
        return None
    return User(id=int(row[0]), email=row[1], password_hash=row[2], is_admin=bool(row[3]), token_version=int(row[4]))


class MySQLUsers:
    """Users in MySQL, on the connection `connection()` returns (the request's one, in the app)."""

    def __init__(self, connection: Callable[[], Connection]) -> None:
        self._connection = connection

    def ping(self) -> None:
        """Raise MySQLdb.OperationalError when the database is unreachable."""
        with self._connection().cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    def get_by_email(self, email: str) -> User | None:
        with self._connection().cursor() as cur:
            # The column's collation (utf8mb4_unicode_ci) ignores case and accents: the row found may be
            # spelt differently from `email`, which accounts.owns_address checks.
            cur.execute(f"SELECT {_COLUMNS} FROM `user` WHERE email = %s", (email,))
            return _user(cur.fetchone())

    def get_by_id(self, user_id: int) -> User | None:
        with self._connection().cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM `user` WHERE id = %s", (user_id,))
            return _user(cur.fetchone())

    def create(self, email: str, password_hash: str, *, admin: bool) -> User:
        try:
            with self._connection().cursor() as cur:
                cur.execute(
                    "INSERT INTO `user` (email, password_hash, is_admin) VALUES (%s, %s, %s)",
                    (email, password_hash, admin),
                )
                user_id = cur.lastrowid
        except MySQLdb.IntegrityError as exc:
            if exc.args and exc.args[0] == ER_DUP_ENTRY:
                raise UserExists() from None
            raise
        return User(id=int(user_id), email=email, password_hash=password_hash, is_admin=admin, token_version=0)

    def update_password_hash(self, user_id: int, password_hash: str) -> None:
        with self._connection().cursor() as cur:
            cur.execute("UPDATE `user` SET password_hash = %s WHERE id = %s", (password_hash, user_id))

    def change_password(self, user_id: int, password_hash: str) -> int | None:
        with self._connection().cursor() as cur:
            # LAST_INSERT_ID(expr) hands this connection the value it wrote, so the version returned is
            # ours even when another change lands right after.
            cur.execute(
                "UPDATE `user` SET password_hash = %s, token_version = LAST_INSERT_ID(token_version + 1) "
                "WHERE id = %s",
                (password_hash, user_id),
            )
            if cur.rowcount == 0:
                return None
            cur.execute("SELECT LAST_INSERT_ID()")
            return int(cur.fetchone()[0])

    def delete(self, user_id: int) -> bool:
        with self._connection().cursor() as cur:
            cur.execute("DELETE FROM `user` WHERE id = %s", (user_id,))
            return cur.rowcount == 1
