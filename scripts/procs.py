"""Starts services locally exactly as their containers do: the Dockerfile's CMD, run from the service folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth", "gateway", "converter", "notification")


def dockerfile_cmd(service: str) -> list[str]:
    """The exec-form CMD of `<service>/Dockerfile`; the last CMD wins, as in Docker."""
    cmd = None
    for line in (ROOT / service / "Dockerfile").read_text().splitlines():
        if line.strip().upper().startswith("CMD "):
            cmd = json.loads(line.strip()[4:])
    if not (isinstance(cmd, list) and cmd and all(isinstance(part, str) for part in cmd)):
        raise ValueError(f"{service}/Dockerfile has no exec-form CMD [...] on one line")
    return cmd


def resolve(cmd: list[str]) -> list[str]:
    """Run the CMD with this interpreter's environment (the dev virtualenv) instead of the image's PATH."""
    program, *args = cmd
    if program in ("python", "python3"):
        return [sys.executable, *args]
    local = Path(sys.executable).parent / program
    found = str(local) if local.exists() else shutil.which(program)
    if found is None:
        raise FileNotFoundError(f"{program} (from the Dockerfile CMD) is not installed")
    return [found, *args]


class Service:
    """One service process; its output goes line by line to `sink` with a `[name] ` prefix."""

    def __init__(self, name: str, env: dict[str, str], sink: Callable[[str], None] | None = None):
        self.name = name
        self.env = env
        self.sink = sink or (lambda line: print(line, flush=True))
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Service":
        self.proc = subprocess.Popen(
            resolve(dockerfile_cmd(self.name)),
            cwd=ROOT / self.name,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us only; we stop the children in order
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        return self

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self.sink(f"[{self.name}] {line}")

    def is_healthy(self, url: str) -> bool:
        """One look at `url`: True on 200; raises RuntimeError if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        wait_all_healthy([(self, url)], timeout)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(5)


def wait_all_healthy(checks: Iterable[tuple[Service, str]], timeout: float = 60.0) -> None:
    """Waits for every (service, health URL) at once; fails as soon as one exits, or when time is up."""
    pending = list(checks)
    deadline = time.monotonic() + timeout
    while True:
        pending = [(service, url) for service, url in pending if not service.is_healthy(url)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                "\n".join(f"{s.name} not healthy at {url} after {timeout}s:\n" + "\n".join(s.lines[-30:]) for s, url in pending)
            )
        time.sleep(0.1)


def start_all(services: Iterable[tuple[Service, str]], timeout: float = 60.0) -> list[Service]:
    """Starts every service at once, then waits for all their health URLs together.

    No service needs another one to start (the gateway reaches auth per request), so there is no order
    to keep. On failure the services started so far are stopped before the error is raised.
    """
    checks = list(services)
    try:
        for service, _ in checks:
            service.start()
        wait_all_healthy(checks, timeout)
    except BaseException:
        for service, _ in reversed(checks):
            service.stop()
        raise
    return [service for service, _ in checks]


def stop_all(services: Iterable[Service], timeout: float = 20.0) -> None:
    """Stops the services together: SIGTERM to all, then each gets what is left of `timeout` before SIGKILL."""
    running = [service for service in services if service.proc is not None and service.proc.poll() is None]
    for service in running:
        service.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for service in running:
        assert service.proc is not None
        try:
            service.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            service.signal(signal.SIGKILL)
            service.proc.wait(5)
