"""Settings.from_env: defaults, parsing, fail-fast errors, and ENV_VARS completeness."""

from collections.abc import Mapping

import pytest

from auth.config import ENV_VARS, ConfigError, Settings

REQUIRED = {"MYSQL_PASSWORD": "unit-test-db-password", "JWT_SECRET": "unit-test-jwt-secret-0123456789abcdef"}


class RecordingMapping(Mapping):
    """A read-only environment that remembers every name looked up."""

    def __init__(self, data):
        self._data = dict(data)
        self.seen: set[str] = set()

    def __getitem__(self, key):
        self.seen.add(key)
        return self._data[key]

    def __contains__(self, key):
        self.seen.add(key)
        return key in self._data

    def get(self, key, default=None):
        self.seen.add(key)
        return self._data.get(key, default)

    def __iter__(self):
        raise AssertionError("from_env must look variables up by name, not iterate the environment")

    def __len__(self):
        return len(self._data)


def test_defaults_with_only_the_required_variables():
    settings = Settings.from_env(REQUIRED)

    assert settings == Settings(
        mysql_password="unit-test-db-password",
        jwt_secret="unit-test-jwt-secret-0123456789abcdef",
        host="127.0.0.1",
        port=5000,
        mysql_host="127.0.0.1",
        mysql_port=3306,
        mysql_user="auth_user",
        mysql_db="auth",
        jwt_lifetime_minutes=30,
        jwt_issuer="mp3converter-auth",
        jwt_audience="mp3converter",
        admin_email=None,
        admin_password=None,
        login_max_failures_per_user=5,
        login_max_failures_per_address=50,
        login_window_seconds=900,
    )


def test_every_variable_is_parsed():
    env = {
        **REQUIRED,
        "HOST": "0.0.0.0",
        "PORT": "8000",
        "MYSQL_HOST": "mysql",
        "MYSQL_PORT": "3307",
        "MYSQL_USER": "u",
        "MYSQL_DB": "d",
        "JWT_LIFETIME_MINUTES": "15",
        "JWT_ISSUER": " staging-auth ",
        "JWT_AUDIENCE": "staging",
        "ADMIN_EMAIL": " Root@Example.com ",
        "ADMIN_PASSWORD": " root password ",
        "LOGIN_MAX_FAILURES_PER_USER": "7",
        "LOGIN_MAX_FAILURES_PER_ADDRESS": "70",
        "LOGIN_WINDOW_SECONDS": "60",
    }

    s = Settings.from_env(env)

    assert (s.host, s.port, s.mysql_host, s.mysql_port, s.mysql_user, s.mysql_db) == (
        "0.0.0.0", 8000, "mysql", 3307, "u", "d"
    )
    assert (s.jwt_lifetime_minutes, s.jwt_issuer, s.jwt_audience) == (15, "staging-auth", "staging")
    assert (s.admin_email, s.admin_password) == ("root@example.com", " root password ")  # a secret is not stripped
    assert (s.login_max_failures_per_user, s.login_max_failures_per_address, s.login_window_seconds) == (7, 70, 60)


def test_empty_optional_values_mean_default():
    settings = Settings.from_env({**REQUIRED, "PORT": "", "ADMIN_EMAIL": "", "MYSQL_HOST": ""})

    assert (settings.port, settings.admin_email, settings.mysql_host) == (5000, None, "127.0.0.1")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_SECRET": REQUIRED["JWT_SECRET"]}, "MYSQL_PASSWORD is required but not set"),
        ({"MYSQL_PASSWORD": "x"}, "JWT_SECRET is required but not set"),
        ({**REQUIRED, "MYSQL_PASSWORD": ""}, "MYSQL_PASSWORD is required but not set"),
        ({**REQUIRED, "JWT_SECRET": "x" * 31}, "JWT_SECRET must be at least 32 characters long"),
        ({**REQUIRED, "PORT": "http"}, "PORT must be an integer, got 'http'"),
        ({**REQUIRED, "PORT": "0"}, "PORT must be between 1 and 65535, got 0"),
        ({**REQUIRED, "MYSQL_PORT": "70000"}, "MYSQL_PORT must be between 1 and 65535, got 70000"),
        ({**REQUIRED, "JWT_LIFETIME_MINUTES": "0"}, "JWT_LIFETIME_MINUTES must be between 1 and 1440, got 0"),
        ({**REQUIRED, "JWT_LIFETIME_MINUTES": "1.5"}, "JWT_LIFETIME_MINUTES must be an integer, got '1.5'"),
        ({**REQUIRED, "LOGIN_MAX_FAILURES_PER_USER": "0"},
         "LOGIN_MAX_FAILURES_PER_USER must be between 1 and 1000000, got 0"),
        ({**REQUIRED, "LOGIN_MAX_FAILURES_PER_ADDRESS": "-1"},
         "LOGIN_MAX_FAILURES_PER_ADDRESS must be between 1 and 1000000, got -1"),
        ({**REQUIRED, "LOGIN_WINDOW_SECONDS": "soon"}, "LOGIN_WINDOW_SECONDS must be an integer, got 'soon'"),
        ({**REQUIRED, "ADMIN_EMAIL": "not-an-email"}, "ADMIN_EMAIL is not a valid email address: 'not-an-email'"),
        ({**REQUIRED, "ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD: password must be 8 to 1024 characters long"),
        ({**REQUIRED, "JWT_SECRET": "dev-only-placeholder-jwt-secret-0123456789"},
         "JWT_SECRET holds a development placeholder; set a real value (or DEV_MODE=true)"),
        ({**REQUIRED, "MYSQL_PASSWORD": "dev-only-placeholder-auth-db-password"},
         "MYSQL_PASSWORD holds a development placeholder; set a real value (or DEV_MODE=true)"),
        ({**REQUIRED, "ADMIN_EMAIL": "a@example.com", "ADMIN_PASSWORD": "dev-only-admin-password"},
         "ADMIN_PASSWORD holds a development placeholder; set a real value (or DEV_MODE=true)"),
        ({**REQUIRED, "MYSQL_PASSWORD": "dev-only-placeholder-auth-db-password", "DEV_MODE": "maybe"},
         "DEV_MODE must be true or false, got 'maybe'"),
    ],
)
def test_bad_configuration_fails_with_a_one_line_message(env, message):
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env(env)

    assert str(excinfo.value) == message
    assert "\n" not in str(excinfo.value)


def test_env_vars_lists_exactly_what_from_env_reads():
    # DEV_MODE is only looked at when a secret holds a placeholder.
    environ = RecordingMapping({**REQUIRED, "JWT_SECRET": "dev-only-placeholder-jwt-secret-0123456789",
                                "DEV_MODE": "true"})

    Settings.from_env(environ)

    assert environ.seen == set(ENV_VARS)
    assert len(ENV_VARS) == len(set(ENV_VARS))


def test_dev_placeholders_are_accepted_in_dev_mode():
    env = {
        "DEV_MODE": "true",
        "MYSQL_PASSWORD": "dev-only-placeholder-auth-db-password",
        "JWT_SECRET": "dev-only-placeholder-jwt-secret-0123456789",
        "ADMIN_EMAIL": "admin@example.com",
        "ADMIN_PASSWORD": "dev-only-admin-password",
    }

    settings = Settings.from_env(env)

    assert (settings.mysql_password, settings.admin_password) == (env["MYSQL_PASSWORD"], env["ADMIN_PASSWORD"])


def test_repr_hides_secrets():
    settings = Settings.from_env({**REQUIRED, "ADMIN_EMAIL": "a@example.com", "ADMIN_PASSWORD": "admin-secret-pw"})

    text = repr(settings)
    for secret in (REQUIRED["MYSQL_PASSWORD"], REQUIRED["JWT_SECRET"], "admin-secret-pw"):
        assert secret not in text
