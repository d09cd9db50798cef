"""`make run`: its dev-only defaults agree with what `make infra` provisions; it restarts a service that exits and
stops everything on Ctrl-C without failing the job in progress."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.conftest import make_clip
from tests.support import (
    RABBITMQ_URL,
    ROOT,
    SmtpServer,
    body_text,
    ffmpeg_children,
    free_port,
    mongo_database,
    mysql_database,
    process_running,
    queue_names,
    smtp_running,
    wait_until,
)

sys.path.insert(0, str(ROOT / "scripts"))
import run  # noqa: E402
from procs import SERVICES  # noqa: E402


def test_mysql_password_matches_init_sql():
    init_sql = (ROOT / "mysql" / "init.sql").read_text()
    created = re.search(r"CREATE USER IF NOT EXISTS 'auth_user'@'%' IDENTIFIED BY '([^']+)'", init_sql)
    assert created, "init.sql no longer creates auth_user the way this test expects"
    assert run.DEV_DEFAULTS["MYSQL_PASSWORD"] == created.group(1)


def test_dev_placeholders_say_so_and_jwt_secret_is_long_enough():
    for name in ("JWT_SECRET", "MYSQL_PASSWORD", "ADMIN_PASSWORD"):
        assert "dev-only" in run.DEV_DEFAULTS[name]
    assert len(run.DEV_DEFAULTS["JWT_SECRET"]) >= 32
    assert run.DEV_DEFAULTS["DEV_MODE"] == "true"  # the services accept the placeholders only in dev mode


# --- `make run` under faults: the real script, its four services and the real servers -------------------------------


def test_restart_delays_double_up_to_a_cap_and_start_over_after_a_stable_run():
    backoff = run.Backoff()
    assert [backoff.next_delay(up_s=2) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert {backoff.next_delay(up_s=2) for _ in range(1100)} == {30}  # a crash loop for hours stays capped
    assert backoff.next_delay(up_s=run.Backoff.STABLE_S) == 1  # it had been up a while: a fresh crash
    assert backoff.next_delay(up_s=0.5) == 2


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        return self.returncode


class FakeService:
    """What supervise() uses of procs.Service: a name, the latest process, start()."""

    def __init__(self, name: str) -> None:
        self.name, self.starts = name, 0
        self.start()

    def start(self) -> FakeService:
        self.starts += 1
        self.proc = FakeProcess(self.starts)
        return self


def test_supervise_restarts_only_the_service_that_exited_after_its_delay(capsys):
    converter, gateway = FakeService("converter"), FakeService("gateway")
    now = [0.0]
    # Each pass of the loop: what happens to the converter at this moment (None: nothing), then time goes on.
    script = iter([(0.0, -9), (0.5, None), (1.5, None), (2.0, 1), (2.5, None), (4.5, None), (70.0, -9), (70.5, None),
                   (71.5, None)])

    def stopping() -> bool:
        try:
            now[0], exit_code = next(script)
        except StopIteration:
            return True
        if exit_code is not None:
            converter.proc.returncode = exit_code
        return False

    run.supervise([converter, gateway], stopping, clock=lambda: now[0])
    assert (converter.starts, gateway.starts) == (4, 1)
    said = [line for line in capsys.readouterr().out.splitlines() if " exited " in line]
    assert said == ["[run] converter exited (killed by SIGKILL) after 0 s; restarting it in 1 s",
                    "[run] converter exited (status 1) after 0 s; restarting it in 2 s",
                    "[run] converter exited (killed by SIGKILL) after 66 s; restarting it in 1 s"]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """30 minutes of audio behind a tiny video: seconds of ffmpeg work, so a kill or a stop lands mid-conversion."""
    return make_clip(tmp_path_factory.mktemp("media") / "long.mp4", seconds=1800, size="32x32")


class LocalRun:
    """scripts/run.py (what `make run` runs) in a process group of its own, as a terminal starts it; its output is
    kept line by line (and shown with E2E_SERVICE_LOGS=1)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run.py")], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if os.environ.get("E2E_SERVICE_LOGS"):
                print(line, flush=True)

    def wait_line(self, pattern: str, timeout: float, after: int = 0) -> re.Match:
        """The first line from index `after` on that matches `pattern` (a regular expression)."""
        def find() -> re.Match | None:
            if self.proc.poll() is not None and not any(re.search(pattern, line) for line in self.lines[after:]):
                raise AssertionError(f"run.py exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-60:]))
            return next((m for line in list(self.lines[after:]) if (m := re.search(pattern, line))), None)

        return wait_until(find, timeout, f"a line matching {pattern!r} from run.py")  # type: ignore[return-value]

    def pid(self, service: str) -> int:
        """The pid of `service`'s latest process, from run.py's `[run] <service> started (pid N)` lines."""
        pids = [int(m.group(1)) for line in list(self.lines) if (m := re.match(rf"\[run\] {service} started \(pid (\d+)\)", line))]
        assert pids, f"run.py never said it started {service}"
        return pids[-1]

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.interrupt()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for service in SERVICES:  # had run.py died without stopping them, they would outlive the test
            for line in self.lines:
                if m := re.match(rf"\[run\] {service} started \(pid (\d+)\)", line):
                    if process_running(int(m.group(1))):
                        os.killpg(int(m.group(1)), signal.SIGKILL)


@dataclass
class Setup:
    """What a local run is pointed at: its own databases, queues, SMTP server, ports and work folder."""

    env: dict[str, str]
    smtp: SmtpServer
    mongo_uri: str

    def start(self) -> LocalRun:
        run_ = LocalRun(self.env)
        run_.wait_line(r"^\[run\] ready: ", timeout=120)
        return run_

    @property
    def admin(self) -> tuple[str, str]:
        return self.env["ADMIN_EMAIL"], self.env["ADMIN_PASSWORD"]

    def job(self, job_id: str) -> dict:
        import pymongo

        client = pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10000)
        try:
            db = client.get_default_database()
            return {**db["jobs"].find_one({"_id": job_id}), "mp3_files": db["mp3s.files"].count_documents({"metadata.job_id": job_id})}
        finally:
            client.close()

    def queued(self) -> int:
        """Messages waiting in the run's video queue."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        try:
            return connection.channel().queue_declare(self.env["VIDEO_QUEUE"], passive=True).method.message_count
        finally:
            connection.close()

    def mails_to(self, email: str) -> list:
        return [m for m in list(self.smtp.messages) if email in m["To"]]


@pytest.fixture
def setup(mysql_account, tmp_path) -> Iterator[Setup]:
    # Only what a developer's shell would have: the run reads every service variable from here, or uses its defaults
    # (RABBITMQ_URL unset: each service connects as its own broker user, as `make run` does).
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "STATE_DIR", "PYTHONPATH")
    base = {k: v for k, v in os.environ.items() if k in keep or k.startswith("INFRA_")}
    with ExitStack() as resources:
        mysql_db = resources.enter_context(mysql_database(mysql_account))
        mongo_uri = resources.enter_context(mongo_database())
        queues = resources.enter_context(queue_names())
        smtp = resources.enter_context(smtp_running())
        gateway_port = free_port()
        env = {
            **base,
            "HOST": "127.0.0.1",
            "AUTH_PORT": str(free_port()),
            "GATEWAY_PORT": str(gateway_port),
            "CONVERTER_METRICS_PORT": str(free_port()),
            "NOTIFICATION_METRICS_PORT": str(free_port()),
            "PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
            "MONGO_URI": mongo_uri,
            **queues,
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": str(mysql_db["port"]),
            "MYSQL_USER": str(mysql_db["user"]),
            "MYSQL_PASSWORD": str(mysql_db["password"]),
            "MYSQL_DB": str(mysql_db["db"]),
            "ADMIN_EMAIL": f"admin-{secrets.token_hex(4)}@example.com",
            "ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port),
            "WORK_DIR": str(tmp_path),
        }
        yield Setup(env, smtp, mongo_uri)


def login(url: str, email: str, password: str) -> dict[str, str]:
    response = requests.post(f"{url}/login", auth=(email, password), timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.text}"}


def upload(url: str, headers: dict[str, str], path: Path) -> str:
    with path.open("rb") as handle:
        response = requests.post(f"{url}/upload", headers=headers, files={"file": (path.name, handle, "video/mp4")}, timeout=120)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def job(url: str, headers: dict[str, str], job_id: str) -> dict:
    response = requests.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def converting(run_: LocalRun, headers: dict[str, str], job_id: str) -> list[int]:
    """Waits until the converter's ffmpeg is past the start of this job; returns ffmpeg's pids."""
    wait_until(lambda: job(run_.url, headers, job_id)["progress"] >= 1, 120, f"job {job_id} under way", interval=0.1)
    return wait_until(lambda: ffmpeg_children(run_.pid("converter")), 10, "the converter's ffmpeg")  # type: ignore[return-value]


def wait_done(run_: LocalRun, headers: dict[str, str], job_id: str) -> dict:
    body = wait_until(lambda: (b := job(run_.url, headers, job_id))["status"] in ("done", "failed") and b, 240,
                      f"job {job_id} to finish", interval=0.2)
    assert body["status"] == "done", body  # type: ignore[index]
    return body  # type: ignore[return-value]


@pytest.mark.e2e
def test_a_killed_converter_is_restarted_while_the_gateway_keeps_answering(setup, long_clip):
    run_ = setup.start()
    try:
        email = setup.admin[0]
        headers = login(run_.url, *setup.admin)
        job_id = upload(run_.url, headers, long_clip)
        old_pid, ffmpegs = run_.pid("converter"), converting(run_, headers, job_id)
        mark = len(run_.lines)
        os.kill(old_pid, signal.SIGKILL)

        run_.wait_line(r"^\[run\] converter exited \(killed by SIGKILL\) after \d+ s; restarting it in 1 s$", 10, mark)
        # Meanwhile the rest serves: the gateway answers, auth logs in, the job is still there.
        assert requests.get(f"{run_.url}/healthz", timeout=5).status_code == 200
        assert job(run_.url, login(run_.url, *setup.admin), job_id)["status"] == "converting"
        assert run_.wait_line(r"^\[run\] converter started \(pid (\d+)\)$", 10, mark)
        assert run_.pid("converter") != old_pid
        # The old conversion did not outlive its converter.
        wait_until(lambda: not any(process_running(pid) for pid in ffmpegs), 10, "the killed converter's ffmpeg to end")

        body = wait_done(run_, headers, job_id)
        assert setup.job(job_id)["mp3_files"] == 1
        assert setup.job(job_id)["attempts"] == 2
        wait_until(lambda: not list(Path(setup.env["WORK_DIR"]).glob(f"job-{job_id}-*")), 10, "no folder left for the job")
        setup.smtp.wait_for(lambda m: email in m["To"], timeout=60)
        time.sleep(2)  # a second notice would come right after the first
        mails = setup.mails_to(email)
        assert len(mails) == 1 and body["mp3_fid"] in body_text(mails[0])
        # Only the converter went down; the others kept running all along.
        exits = [line for line in run_.lines if re.match(r"\[run\] \w+ exited", line)]
        assert len(exits) == 1 and exits[0].startswith("[run] converter exited"), exits
    finally:
        run_.close()
    assert run_.proc.returncode == 0


@pytest.mark.e2e
def test_ctrl_c_stops_everything_promptly_and_the_job_waits_for_the_next_run(setup, long_clip):
    setup.env["SHUTDOWN_GRACE_SECONDS"] = "1"  # shorter than what is left of the conversion, on any machine
    run_ = setup.start()
    try:
        email = setup.admin[0]
        headers = login(run_.url, *setup.admin)
        job_id = upload(run_.url, headers, long_clip)
        ffmpegs = converting(run_, headers, job_id)
        pids = [run_.pid(name) for name in SERVICES]
        started = time.monotonic()
        run_.interrupt()
        assert run_.proc.wait(30) == 0
        took = time.monotonic() - started
    finally:
        run_.close()
    assert took < 10, f"Ctrl-C took {took:.1f} s"
    assert not any(process_running(pid) for pid in pids + ffmpegs)
    interrupted = setup.job(job_id)
    assert interrupted["status"] == "converting" and interrupted["mp3_files"] == 0, interrupted
    assert setup.queued() == 1  # its message is back in the queue
    assert setup.mails_to(email) == []  # no failure notice

    run_ = setup.start()
    try:
        body = wait_done(run_, headers, job_id)
        assert setup.job(job_id)["mp3_files"] == 1
        wait_until(lambda: not list(Path(setup.env["WORK_DIR"]).glob(f"job-{job_id}-*")), 10, "no folder left for the job")
        setup.smtp.wait_for(lambda m: email in m["To"], timeout=60)
        time.sleep(2)
        mails = setup.mails_to(email)
        assert len(mails) == 1 and body["mp3_fid"] in body_text(mails[0])
    finally:
        run_.close()
