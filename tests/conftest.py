"""Fixtures for integration and end-to-end tests: real servers from `make infra`, unique names per test."""

from __future__ import annotations

import secrets
from typing import Iterator

import pytest

from tests.support import FERRETDB_PORT, MARIADB_PORT, RABBITMQ_PORT, SmtpServer, free_port, mariadb_root, port_open, unique


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
    db = unique("t")
    mariadb_root(f"CREATE DATABASE `{db}`; GRANT ALL PRIVILEGES ON `{db}`.* TO '{mysql_account['user']}'@'%';")
    yield {"host": "127.0.0.1", "port": MARIADB_PORT, "user": mysql_account["user"], "password": mysql_account["password"], "db": db}
    mariadb_root(f"DROP DATABASE IF EXISTS `{db}`;")


@pytest.fixture
def mongo_uri(servers: None) -> Iterator[str]:
    """A unique database on FerretDB, dropped afterwards."""
    import pymongo

    db = unique("t")
    uri = f"mongodb://127.0.0.1:{FERRETDB_PORT}/{db}"
    yield uri
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(db)
    finally:
        client.close()


@pytest.fixture
def rabbit_url(servers: None) -> str:
    return f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/%2F"


@pytest.fixture
def queues(rabbit_url: str) -> Iterator[dict[str, str]]:
    """Unique queue names; the queues and their dead-letter queues are deleted afterwards."""
    import pika

    names = {"VIDEO_QUEUE": unique("video"), "MP3_QUEUE": unique("mp3")}
    yield names
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
    try:
        channel = connection.channel()
        for name in names.values():
            for queue in (name, f"{name}.dlq"):
                channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    server.start()
    yield server
    server.stop()
