"""Command line: `python -m auth create-user EMAIL [--admin] [--password-stdin]`, straight against MySQL."""

from __future__ import annotations

import argparse
import getpass
import sys
from contextlib import closing

import MySQLdb
from mp3core import logs
from mp3core.errors import AppError
from mp3core.settings import load

from . import accounts, db
from .config import Settings
from .users import MySQLUsers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m auth", description="auth service administration")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="create a user in the auth database")
    create.add_argument("email")
    create.add_argument("--admin", action="store_true", help="give the user admin rights")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    return parser


def _fail(message: str) -> int:
    print(f"auth: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    logs.setup()
    settings = load("auth", Settings.from_env)

    if args.password_stdin:
        # Only the line ending is removed: leading/trailing spaces may be part of a passphrase.
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            return _fail("passwords do not match")

    try:
        # Checked before connecting, so a typo is reported without a database round trip.
        email = accounts.check_new_user(args.email, password)
        with closing(MySQLdb.connect(**db.connect_args(settings))) as connection:
            db.create_schema(connection)
            user = accounts.create_user(email, password, admin=args.admin, users=MySQLUsers(lambda: connection))
    except AppError as exc:
        return _fail(exc.message)
    except db.SchemaError as exc:
        return _fail(str(exc))
    except MySQLdb.OperationalError as exc:
        return _fail(f"cannot reach MySQL at {settings.mysql_host}:{settings.mysql_port}: {exc}")
    print(f"created user {user.email}" + (" (admin)" if user.is_admin else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
