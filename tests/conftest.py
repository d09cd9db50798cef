"""Fixtures for integration and end-to-end tests: real servers from `make infra`, unique names per test."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:  # pymongo is not in the manifest tests' venv, which loads this conftest too
    from pymongo.database import Database

from tests.support import (
    FERRETDB_PORT,
    MARIADB_PORT,
    RABBITMQ_PORT,
    RABBITMQ_URL,
    SmtpServer,
    mariadb_root,
    mongo_database,
    mysql_database,
    port_open,
    queue_names,
    smtp_running,
    unique,
)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in pyproject.toml: only these tests use it (`make test` runs them apart).
    config.addinivalue_line(
        "markers", "faults: restarts or kills services or shared servers; run on their own, after everything else"
    )


@pytest.fixture(scope="session")
def servers() -> None:
    """The real servers must be up; `make test` starts them with `make infra`."""
    down = [name for name, port in (("RabbitMQ", RABBITMQ_PORT), ("MariaDB", MARIADB_PORT), ("FerretDB", FERRETDB_PORT)) if not port_open(port)]
    if down:
        pytest.fail(f"not running: {', '.join(down)}; start them with `make infra`", pytrace=False)


@pytest.fixture(scope="session")
def mysql_account(servers: None) -> dict[str, str]:
    """A MariaDB account for this test session, with a random password (no shared secret in the repo)."""
    user, password = unique("test"), secrets.token_urlsafe(18)
    mariadb_root(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';")
    yield {"user": user, "password": password}
    mariadb_root(f"DROP USER IF EXISTS '{user}'@'%';")


@pytest.fixture
def mysql_db(mysql_account: dict[str, str]) -> Iterator[dict[str, object]]:
    """A fresh empty database on the real MariaDB, dropped afterwards."""
    with mysql_database(mysql_account) as db:
        yield db


@pytest.fixture
def mongo_uri(servers: None) -> Iterator[str]:
    """A unique database on FerretDB, dropped afterwards."""
    with mongo_database() as uri:
        yield uri


@pytest.fixture
def mongo_db(mongo_uri: str) -> Iterator[Database]:
    """That unique database, reached as the services reach it (mp3core.mongo.connect: tz-aware, short timeouts)."""
    from mp3core import mongo  # here: this conftest is loaded by the manifest tests too, without the services' deps

    database = mongo.connect(mongo_uri)
    yield database
    database.client.close()


@pytest.fixture
def rabbit_url(servers: None) -> str:
    return RABBITMQ_URL


@pytest.fixture
def queues(rabbit_url: str) -> Iterator[dict[str, str]]:
    """Unique queue names; the queues and their dead-letter queues are deleted afterwards."""
    with queue_names(rabbit_url) as names:
        yield names


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with smtp_running() as server:
        yield server
