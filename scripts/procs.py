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
from typing import IO, Callable

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

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not healthy at {url} after {timeout}s:\n" + "\n".join(self.lines[-30:]))

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
