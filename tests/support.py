"""Shared helpers for integration and end-to-end tests (imported by the conftests and tests)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
RABBITMQ_PORT = int(os.environ.get("INFRA_RABBITMQ_PORT", "5672"))
MARIADB_PORT = int(os.environ.get("INFRA_MARIADB_PORT", "3306"))
FERRETDB_PORT = int(os.environ.get("INFRA_FERRETDB_PORT", "27017"))
MARIADB_SOCKET = STATE / "mariadb" / "mysqld.sock"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
