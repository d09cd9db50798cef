"""The whole system, started from the Dockerfiles' CMDs against the real servers, and a curl-like client."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support import (
    RABBITMQ_SERVICES,
    RABBITMQ_URL,
    ROOT,
    SmtpServer,
    free_port,
    mongo_database,
    mysql_database,
    queue_names,
    service_rabbitmq_url,
    smtp_running,
    wait_until,
)

sys.path.insert(0, str(ROOT / "scripts"))
from procs import Service, start_all, stop_all  # noqa: E402


def make_clip(path: Path, seconds: float = 3, *, audio: bool = True, size: str = "320x240") -> Path:
    """An H.264/AAC MP4 made by ffmpeg from its test sources."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-c:a", "aac", "-b:a", "96k"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", str(path)]
    subprocess.run(cmd, check=True, timeout=120)
    return path


def probe_duration(path: Path) -> tuple[str, float]:
    """(format name, duration in seconds) by ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    fmt = json.loads(out)["format"]
    return fmt["format_name"], float(fmt["duration"])


@dataclass
class Stack:
    url: str
    admin: tuple[str, str]
    smtp: SmtpServer
    env: dict[str, str]
    services: dict[str, Service] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    _client: object = None

    def login(self, email: str, password: str) -> str:
        response = requests.post(f"{self.url}/login", auth=(email, password), timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    def create_user(self, admin_token: str, *, admin: bool = False) -> tuple[str, str, str]:
        """A new user: (email, password, token)."""
        email, password = f"user-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
        response = requests.post(
            f"{self.url}/users",
            json={"email": email, "password": password, "admin": admin},
            headers=bearer(admin_token),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return email, password, self.login(email, password)

    def upload(self, token: str, path: Path, **fields: str) -> requests.Response:
        with path.open("rb") as handle:
            return requests.post(
                f"{self.url}/upload", headers=bearer(token), files={"file": (path.name, handle, "video/mp4")}, data=fields, timeout=120
            )

    def job(self, token: str, job_id: str) -> requests.Response:
        return requests.get(f"{self.url}/jobs/{job_id}", headers=bearer(token), timeout=30)

    def wait_job(self, token: str, job_id: str, timeout: float = 90.0, statuses: tuple[str, ...] = ("done", "failed")) -> dict:
        def finished() -> dict | None:
            response = self.job(token, job_id)
            assert response.status_code == 200, response.text
            body = response.json()
            return body if body["status"] in statuses else None

        return wait_until(finished, timeout, f"job {job_id} to reach {statuses}", interval=0.1)  # type: ignore[return-value]

    def restart(self, name: str, **overrides: str) -> None:
        """Start `name` again (after a crash or stop), optionally with changed variables."""
        self.services[name].stop()
        self.services[name] = Service(name, {**self.services[name].env, **overrides}, sink=_quiet).start()
        self.services[name].wait_healthy(self.health[name], timeout=90)

    @property
    def db(self):
        import pymongo

        if self._client is None:
            self._client = pymongo.MongoClient(self.env["MONGO_URI"], serverSelectionTimeoutMS=10000)
        return self._client.get_default_database()

    def files(self, bucket: str, job_id: str) -> list[dict]:
        return list(self.db[f"{bucket}.files"].find({"metadata.job_id": job_id}))

    def chunk_ids(self, bucket: str) -> set:
        return {chunk["_id"] for chunk in self.db[f"{bucket}.chunks"].find({}, {"_id": 1})}

    def orphan_chunks(self, bucket: str) -> int:
        """Chunks whose file document does not exist (a half-written or half-deleted file)."""
        known = {doc["_id"] for doc in self.db[f"{bucket}.files"].find({}, {"_id": 1})}
        return sum(1 for chunk in self.db[f"{bucket}.chunks"].find({}, {"files_id": 1}) if chunk["files_id"] not in known)

    def queue_messages(self, queue: str) -> list[dict]:
        """Drains a queue (used for dead-letter queues) and returns the JSON bodies."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.env["RABBITMQ_URL"]))
        try:
            channel = connection.channel()
            bodies = []
            while True:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return bodies
                bodies.append(json.loads(body))
        finally:
            connection.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _quiet(line: str) -> None:
    if os.environ.get("E2E_SERVICE_LOGS"):
        print(line, flush=True)


@contextmanager
def running_stack(mysql_account: dict[str, str], work_dir: Path, *, rabbit: dict[str, str] | None = None,
                  **overrides: str) -> Iterator[Stack]:
    """A new system on its own database, FerretDB database, queues and SMTP server; stopped afterwards.

    `rabbit` points it at another broker: RABBITMQ_URL for the tests' own connections ("admin") and for each
    service (its user's URLs), e.g. a cluster of several nodes; by default the shared local broker."""
    rabbit = rabbit or {"admin": RABBITMQ_URL, **{name: service_rabbitmq_url(name) for name in RABBITMQ_SERVICES}}
    with ExitStack() as resources:
        mysql_db = resources.enter_context(mysql_database(mysql_account))
        mongo_uri = resources.enter_context(mongo_database())
        queues = resources.enter_context(queue_names(rabbit["admin"].split(",")[0]))
        smtp_server = resources.enter_context(smtp_running())
        admin = ("admin@example.com", secrets.token_urlsafe(16))
        auth_port, gateway_port, converter_port, notification_port = (free_port() for _ in range(4))
        env = {
            **os.environ,
            # The services refuse dev-only placeholder secrets unless DEV_MODE is on; ours are random, but a
            # developer's environment may carry placeholders through.
            "DEV_MODE": "true",
            "HOST": "127.0.0.1",
            "MONGO_URI": mongo_uri,
            # The tests' own connections (publishing a duplicate, draining a dead-letter queue) use this admin
            # URL; each service gets its own user's URL below, as in the cluster.
            "RABBITMQ_URL": rabbit["admin"],
            **queues,
            "MYSQL_HOST": str(mysql_db["host"]),
            "MYSQL_PORT": str(mysql_db["port"]),
            "MYSQL_USER": str(mysql_db["user"]),
            "MYSQL_PASSWORD": str(mysql_db["password"]),
            "MYSQL_DB": str(mysql_db["db"]),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "ADMIN_EMAIL": admin[0],
            "ADMIN_PASSWORD": admin[1],
            "AUTH_SVC_ADDRESS": f"127.0.0.1:{auth_port}",
            "SMTP_HOST": smtp_server.host,
            "SMTP_PORT": str(smtp_server.port),
            "PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
            "WORK_DIR": str(work_dir),
            **overrides,
        }
        per_service = {
            "auth": ({"PORT": str(auth_port)}, f"http://127.0.0.1:{auth_port}/healthz"),
            "gateway": ({"PORT": str(gateway_port), "RABBITMQ_URL": rabbit["gateway"]},
                        f"http://127.0.0.1:{gateway_port}/healthz"),
            "converter": ({"METRICS_PORT": str(converter_port), "RABBITMQ_URL": rabbit["converter"]},
                          f"http://127.0.0.1:{converter_port}/healthz"),
            "notification": ({"METRICS_PORT": str(notification_port), "RABBITMQ_URL": rabbit["notification"]},
                             f"http://127.0.0.1:{notification_port}/healthz"),
        }
        stack = Stack(f"http://127.0.0.1:{gateway_port}", admin, smtp_server, env)
        for name, (extra, health) in per_service.items():
            stack.health[name] = health
            stack.services[name] = Service(name, {**env, **extra}, sink=_quiet)
        try:
            start_all(((stack.services[name], stack.health[name]) for name in per_service), timeout=90)
            yield stack
        finally:
            stack.close()
            stop_all(stack.services.values())
            if any(s.proc and s.proc.returncode not in (0, -15, None) for s in stack.services.values()):
                for service in stack.services.values():
                    print(f"--- {service.name} log (last 40 lines) ---\n" + "\n".join(service.lines[-40:]))


@pytest.fixture(scope="module")
def stack(mysql_account, tmp_path_factory) -> Iterator[Stack]:
    """One system for all tests of a module. Its tests must leave it as they found it: each works with its
    own users (and so its own jobs and files), and none restarts, stops or reconfigures a service; those
    use `fresh_stack`."""
    with running_stack(mysql_account, tmp_path_factory.mktemp("work")) as shared:
        yield shared


@pytest.fixture
def fresh_stack(mysql_account, tmp_path) -> Iterator[Stack]:
    """A system of its own, for a test that restarts, kills or reconfigures its services."""
    with running_stack(mysql_account, tmp_path) as own:
        yield own


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3)
