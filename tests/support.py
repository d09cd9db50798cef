"""Shared helpers for integration and end-to-end tests (imported by the conftests and tests)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
RABBITMQ_PORT = int(os.environ.get("INFRA_RABBITMQ_PORT", "5672"))
MARIADB_PORT = int(os.environ.get("INFRA_MARIADB_PORT", "3306"))
FERRETDB_PORT = int(os.environ.get("INFRA_FERRETDB_PORT", "27017"))
MARIADB_SOCKET = STATE / "mariadb" / "mysqld.sock"


def _port_slice() -> range:
    """This process's ports: below the kernel's ephemeral range, one slice per xdist worker.

    A port the kernel hands out for `bind(0)` comes from the ephemeral range, which every outgoing
    connection draws from too: between our check and the server's own bind, a client socket (pika,
    pymongo, urllib) could take it. Ports below that range are never picked for outgoing connections,
    and a slice per worker keeps parallel workers apart.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first, last = 20000, max(20000 + 800, low)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slices = 8
    size = (last - first) // slices
    start = first + (int(worker) % slices if worker.isdigit() else 0) * size
    return range(start, start + size)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on now and that this process has not handed out before."""
    ports = list(_port_slice())
    offset = secrets.randbelow(len(ports))
    for port in ports[offset:] + ports[:offset]:
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port left in this test process's slice")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def mariadb_root(sql: str) -> str:
    """Runs SQL as MariaDB's root over the local socket (root authenticates by OS user)."""
    result = subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={MARIADB_SOCKET}", "-N", "-B", "-e", sql],
        capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mariadb failed: {result.stderr.strip()}")
    return result.stdout


# The tests' own broker account (guest, loopback only): they create, inspect and delete queues freely.
RABBITMQ_URL = f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/%2F"
RABBITMQ_SERVICES = ("gateway", "converter", "notification")


def service_rabbitmq_url(service: str) -> str:
    """The URL of `service`'s own RabbitMQ user, allowed only its queues (made by `make infra`, rabbit/service-users.sh)."""
    path = STATE / "rabbitmq" / f"{service}.url"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make infra` (scripts/infra.sh up) to create the services' RabbitMQ users")
    return path.read_text().strip()


# Scope-free resources: the conftests wrap them in fixtures of whichever scope a test needs (an integration
# test gets its own database; an end-to-end module shares one stack, and so one database, between its tests).


@contextmanager
def mysql_database(account: dict[str, str]) -> Iterator[dict[str, object]]:
    """A fresh empty database on the real MariaDB that `account` may use, dropped afterwards."""
    db = unique("t")
    mariadb_root(f"CREATE DATABASE `{db}`; GRANT ALL PRIVILEGES ON `{db}`.* TO '{account['user']}'@'%';")
    try:
        yield {"host": "127.0.0.1", "port": MARIADB_PORT, "user": account["user"], "password": account["password"], "db": db}
    finally:
        mariadb_root(f"DROP DATABASE IF EXISTS `{db}`;")


@contextmanager
def mongo_database() -> Iterator[str]:
    """The URI of a unique database on FerretDB, dropped afterwards."""
    import pymongo

    db = unique("t")
    uri = f"mongodb://127.0.0.1:{FERRETDB_PORT}/{db}"
    try:
        yield uri
    finally:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(db)
        finally:
            client.close()


@contextmanager
def queue_names(rabbit_url: str = RABBITMQ_URL) -> Iterator[dict[str, str]]:
    """Unique queue names; the queues and their dead-letter queues are deleted afterwards."""
    import pika

    names = {"VIDEO_QUEUE": unique("video"), "MP3_QUEUE": unique("mp3")}
    try:
        yield names
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(rabbit_url))
        try:
            channel = connection.channel()
            for name in names.values():
                # The quorum queue, its dead letters, a migration's holding queue, a classic dead-letter queue of
                # the earlier layout; the queue's exchange and dead-letter exchange (mp3core/contract.py).
                for queue in (name, f"{name}.dead", f"{name}.upgrade", f"{name}.dlq"):
                    channel.queue_delete(queue)
                for exchange in (name, f"{name}.dlx"):
                    channel.exchange_delete(exchange)
        finally:
            connection.close()


@contextmanager
def smtp_running() -> Iterator["SmtpServer"]:
    server = SmtpServer("127.0.0.1", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class SmtpServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: object = None

    def start(self) -> None:
        """Listen (again) on the same port; tests stop and start it to play an SMTP outage."""
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler protocol
        with self._lock:
            self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30.0) -> Message:
        def find() -> Message | None:
            with self._lock:
                return next((m for m in self.messages if predicate(m)), None)

        return wait_until(find, timeout, "an email matching the test's predicate")  # type: ignore[return-value]


def body_text(message: Message) -> str:
    """The text/plain part of an email, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return ""


def local_address(url: str) -> tuple[str, int]:
    """(host, port) of a service this machine started: tests and benchmarks talk only to 127.0.0.1."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", f"{url} is not a local service"
    return parts.hostname, parts.port


def raw_upload_head(url: str, token: str, boundary: str, length: int) -> bytes:
    """The start of a POST /upload sent by hand: headers announcing `length` bytes, then the file part's
    header and an MP4's first bytes, so the gateway stores what follows (a slow client sends the rest)."""
    host, port = local_address(url)
    return (f"POST /upload HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"



# Processes, read from /proc: which ffmpeg a converter runs, and whether a process is still there.


def process_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def ffmpeg_children(pid: int) -> list[int]:
    """The running ffmpeg processes whose parent is `pid` (a converter's conversions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state not in ("Z", "X") and Path(argv0.decode(errors="replace")).name == "ffmpeg":
            found.append(int(entry.name))
    return found
