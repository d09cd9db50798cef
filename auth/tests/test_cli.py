"""`python -m auth create-user`: password sources, checks before MySQL, exit codes and messages.

Creating users in a real database is tested in tests/integration/test_auth_mysql.py.
"""

import io
import subprocess
import sys
from pathlib import Path

import pytest

import auth
from auth.__main__ import main
from auth.config import ENV_VARS

ENV = {
    "DEV_MODE": "true",
    "MYSQL_PASSWORD": "dev-only-unit-test-db-password",
    "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef",
    "MYSQL_PORT": "1",  # nothing listens there: a test that gets as far as connecting fails fast
}


@pytest.fixture
def run(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    def _run(argv, *, stdin="", prompts=(), environ=ENV):
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        answers = iter(prompts)
        monkeypatch.setattr("getpass.getpass", lambda prompt: _run.asked.append(prompt) or next(answers))
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(argv)

    _run.asked = []
    return _run


@pytest.mark.parametrize(
    ("argv", "kwargs", "message"),
    [
        (["create-user", "x@example.com"], {"prompts": ["password-one", "password-two"]}, "passwords do not match"),
        (["create-user", "x@example.com", "--password-stdin"], {"stdin": "short\n"},
         "password must be 8 to 1024 characters long"),
        (["create-user", "x@example.com", "--password-stdin"], {"stdin": ""},
         "password must be 8 to 1024 characters long"),
        (["create-user", "not-an-email", "--password-stdin"], {"stdin": "password-1\n"},
         "email is not a valid address"),
    ],
    ids=["mismatch", "short", "empty-stdin", "bad-email"],
)
def test_bad_input_fails_before_connecting(run, capsys, argv, kwargs, message):
    # MYSQL_PORT=1 would turn a connection attempt into a different message.
    assert run(argv, **kwargs) == 1

    assert capsys.readouterr().err == f"auth: error: {message}\n"


def test_prompted_password_is_asked_twice(run, capsys):
    assert run(["create-user", "root@example.com", "--admin"], prompts=["root-password", "root-password"]) == 1

    assert run.asked == ["Password: ", "Repeat password: "]
    # Matching passwords get as far as MySQL.
    assert capsys.readouterr().err.startswith("auth: error: cannot reach MySQL at 127.0.0.1:1: ")


def test_unreachable_mysql_is_reported(run, capsys):
    assert run(["create-user", "x@example.com", "--password-stdin"], stdin="password-1\n") == 1

    assert capsys.readouterr().err.startswith("auth: error: cannot reach MySQL at 127.0.0.1:1: (2002, ")


def test_bad_configuration_exits_with_one_line(run):
    with pytest.raises(SystemExit) as excinfo:
        run(["create-user", "x@example.com", "--password-stdin"], stdin="password-1\n", environ={})

    assert excinfo.value.code == "auth: configuration error: JWT_SECRET is required but not set"


@pytest.mark.parametrize("argv", [[], ["create-user"], ["delete-user", "x@example.com"]])
def test_usage_errors_exit_2(run, argv):
    with pytest.raises(SystemExit) as excinfo:
        run(argv)

    assert excinfo.value.code == 2


def test_module_entry_point_runs():
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

    assert result.returncode == 1
    assert result.stderr == "auth: configuration error: JWT_SECRET must be at least 32 characters long\n"
