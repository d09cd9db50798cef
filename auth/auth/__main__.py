"""Command line: `python -m auth create-user EMAIL [--admin] [--password-stdin]`."""

from __future__ import annotations

import argparse
import getpass as getpass_module
import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

import MySQLdb

from . import accounts, create_app
from .config import ConfigError, Settings
from .errors import AuthServiceError


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


def main(
    argv: list[str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    stdin: TextIO | None = None,
    getpass: Callable[[str], str] = getpass_module.getpass,
    users=None,
    throttle=None,
) -> int:
    """Run the CLI; returns the exit status. Adapters can be injected for tests."""
    args = _parser().parse_args(argv)
    stdin = stdin if stdin is not None else sys.stdin

    def fail(message: str, code: int = 1) -> int:
        print(f"auth: error: {message}", file=sys.stderr)
        return code

    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        return fail(str(exc), 2)

    if args.password_stdin:
        # Only the line ending is removed: leading/trailing spaces may be part of a passphrase.
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass("Password: ")
        if getpass("Repeat password: ") != password:
            return fail("passwords do not match")

    try:
        app = create_app(settings, users=users, throttle=throttle)
        with app.app_context():
            user = accounts.create_user(
                args.email, password, admin=args.admin, users=app.extensions["auth"].users
            )
    except AuthServiceError as exc:
        return fail(exc.message)
    except MySQLdb.OperationalError as exc:
        return fail(f"cannot reach MySQL at {settings.mysql_host}:{settings.mysql_port}: {exc}")
    print(f"created user {user.email}" + (" (admin)" if user.is_admin else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
