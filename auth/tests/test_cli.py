"""`python -m auth create-user`: password sources, validation, exit codes and messages."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

import auth
from auth import passwords
from auth.__main__ import main

ENV = {
    "MYSQL_PASSWORD": "unit-test-db-password",  # dev-only placeholder
    "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef",  # dev-only placeholder
}


@pytest.fixture
def run(users, throttle):
    def _run(argv, *, stdin="", prompts=(), environ=ENV):
        answers = iter(prompts)
        return main(
            argv,
            environ=environ,
            stdin=io.StringIO(stdin),
            getpass=lambda prompt: next(answers),
            users=users,
            throttle=throttle,
        )

    return _run


def test_create_user_with_password_from_stdin(run, users, capsys):
    code = run(["create-user", "Bob@Example.com", "--password-stdin"], stdin="bob password 1\n")

    assert code == 0
    stored = users.rows["bob@example.com"]
    assert stored.is_admin is False
    assert passwords.verify(stored.password_hash, "bob password 1")
    # stdout also carries the JSON audit log line; the human summary is the last line.
    assert capsys.readouterr().out.splitlines()[-1] == "created user bob@example.com"


def test_create_admin_with_prompted_password(run, users, capsys):
    code = run(["create-user", "root@example.com", "--admin"], prompts=["root-password", "root-password"])

    assert code == 0
    assert users.rows["root@example.com"].is_admin is True
    assert passwords.verify(users.rows["root@example.com"].password_hash, "root-password")
    assert capsys.readouterr().out.splitlines()[-1] == "created user root@example.com (admin)"


@pytest.mark.parametrize(
    ("argv", "kwargs", "code", "message"),
    [
        (["create-user", "x@example.com"], {"prompts": ["password-one", "password-two"]}, 1,
         "passwords do not match"),
        (["create-user", "alice@example.com", "--password-stdin"], {"stdin": "another-password\n"}, 1,
         "user already exists"),
        (["create-user", "x@example.com", "--password-stdin"], {"stdin": "short\n"}, 1,
         "password must be 8 to 1024 characters long"),
        (["create-user", "x@example.com", "--password-stdin"], {"stdin": ""}, 1,
         "password must be 8 to 1024 characters long"),
        (["create-user", "not-an-email", "--password-stdin"], {"stdin": "password-1\n"}, 1,
         "email is not a valid address"),
        (["create-user", "x@example.com", "--password-stdin"], {"stdin": "password-1\n", "environ": {}}, 2,
         "JWT_SECRET is required but not set"),
    ],
    ids=["mismatch", "exists", "short", "empty-stdin", "bad-email", "no-config"],
)
def test_failures_exit_non_zero_with_a_clear_message(run, users, capsys, argv, kwargs, code, message):
    before = dict(users.rows)

    assert run(argv, **kwargs) == code

    assert capsys.readouterr().err == f"auth: error: {message}\n"
    assert users.rows == before


def test_unreachable_mysql_is_reported(run, users, capsys, monkeypatch):
    users.down = True
    monkeypatch.setattr(auth, "STARTUP_RETRY_SECONDS", 0.05)
    monkeypatch.setattr("auth.wait_exponential", lambda **kw: (lambda state: 0.01))

    assert run(["create-user", "x@example.com", "--password-stdin"], stdin="password-1\n") == 1

    err = capsys.readouterr().err
    assert err == "auth: error: cannot reach MySQL at 127.0.0.1:3306: (2003, \"Can't connect to MySQL server\")\n"


@pytest.mark.parametrize("argv", [[], ["create-user"], ["delete-user", "x@example.com"]])
def test_usage_errors_exit_2(run, argv):
    with pytest.raises(SystemExit) as excinfo:
        run(argv)

    assert excinfo.value.code == 2


def test_module_entry_point_runs(tmp_path):
    # `python -m auth` from the service folder, as in the container; bad config fails before MySQL.
    service_dir = Path(auth.__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "auth", "create-user", "x@example.com", "--password-stdin"],
        cwd=service_dir,
        input="password-1\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "JWT_SECRET": "short", "MYSQL_PASSWORD": "x"},
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr == "auth: error: JWT_SECRET must be at least 32 characters long\n"
