"""`make run`: the four services (and a local SMTP sink) in the foreground with prefixed logs; a service that exits
is started again after a backoff, as a kubelet does; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from procs import ROOT, SERVICES, Service, stop_all

STATE = Path(os.environ.get("STATE_DIR", ROOT / ".state"))  # as in scripts/infra.sh

# Dev-only placeholders so a newcomer can start the system with no setup. Never used in a cluster:
# there the values come from Secrets, and the services refuse to start without them, and refuse these
# placeholders (anything containing "dev-only") unless DEV_MODE is true.
DEV_DEFAULTS = {
    "DEV_MODE": "true",
    "JWT_SECRET": "dev-only-placeholder-jwt-secret-not-for-production",
    "MYSQL_PASSWORD": "dev-only-placeholder-auth-db-password",  # as in mysql/init.sql
    "ADMIN_EMAIL": "admin@example.com",
    "ADMIN_PASSWORD": "dev-only-admin-password",
}
HEALTH = {
    "auth": "http://127.0.0.1:{AUTH_PORT}/healthz",
    "gateway": "http://127.0.0.1:{GATEWAY_PORT}/healthz",
    "converter": "http://127.0.0.1:{CONVERTER_METRICS_PORT}/healthz",
    "notification": "http://127.0.0.1:{NOTIFICATION_METRICS_PORT}/healthz",
}


def main() -> int:
    env = {**DEV_DEFAULTS, **os.environ}
    ports = {
        "AUTH_PORT": env.get("AUTH_PORT", "5000"),
        "GATEWAY_PORT": env.get("GATEWAY_PORT", "8080"),
        "CONVERTER_METRICS_PORT": env.get("CONVERTER_METRICS_PORT", "9101"),
        "NOTIFICATION_METRICS_PORT": env.get("NOTIFICATION_METRICS_PORT", "9102"),
    }
    env.setdefault("AUTH_SVC_ADDRESS", f"127.0.0.1:{ports['AUTH_PORT']}")
    # PORT and METRICS_PORT mean different ports for different services, so they are set per service.
    per_service = {
        "auth": {"PORT": ports["AUTH_PORT"]},
        "gateway": {"PORT": ports["GATEWAY_PORT"]},
        "converter": {"METRICS_PORT": ports["CONVERTER_METRICS_PORT"]},
        "notification": {"METRICS_PORT": ports["NOTIFICATION_METRICS_PORT"]},
    }
    for name in ("PORT", "METRICS_PORT"):
        env.pop(name, None)
    # Each broker client connects as its own user, allowed only its queues; `make infra` creates the users
    # and keeps their URLs under .state/rabbitmq (rabbit/service-users.sh). A RABBITMQ_URL set by the caller
    # wins, for all three.
    if "RABBITMQ_URL" not in os.environ:
        for name in ("gateway", "converter", "notification"):
            url_file = STATE / "rabbitmq" / f"{name}.url"
            if not url_file.exists():
                print(f"[run] {url_file} is missing: run `make infra` first", flush=True)
                return 1
            per_service[name]["RABBITMQ_URL"] = url_file.read_text().strip()

    # Ctrl-C on a laptop should stop within seconds, not a pod's 50: a conversion not finished by then goes back
    # to the queue (its job stays `converting`) and the next `make run` does it again.
    env.setdefault("SHUTDOWN_GRACE_SECONDS", "5")
    stop_timeout = int(env["SHUTDOWN_GRACE_SECONDS"]) + 5

    sink = None
    if not os.environ.get("SMTP_HOST"):
        env["SMTP_HOST"], env["SMTP_PORT"] = "127.0.0.1", env.get("SMTP_PORT", "1025")
        print(f"[run] no SMTP_HOST set: local SMTP sink on 127.0.0.1:{env['SMTP_PORT']} prints every mail", flush=True)
        sink = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{env['SMTP_PORT']}", "-c", "aiosmtpd.handlers.Debugging"],
            cwd=ROOT,
            start_new_session=True,
        )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    services = [Service(name, {**env, **per_service[name]}) for name in SERVICES]
    try:
        for service in services:
            start(service)
        if not wait_ready(services, ports, lambda: stopping):
            return 0
        print(
            f"[run] ready: gateway http://127.0.0.1:{ports['GATEWAY_PORT']}  "
            f"(log in as {env['ADMIN_EMAIL']}; password from ADMIN_PASSWORD)  Ctrl-C stops everything",
            flush=True,
        )
        supervise(services, lambda: stopping)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"[run] {exc}", flush=True)
        return 1
    finally:
        print("[run] stopping", flush=True)
        stop_all(services, timeout=stop_timeout)
        if sink is not None:
            sink.terminate()
            sink.wait(10)


def start(service: Service) -> None:
    service.start()
    assert service.proc is not None
    print(f"[run] {service.name} started (pid {service.proc.pid})", flush=True)


def wait_ready(services: list[Service], ports: dict[str, str], stopping: Callable[[], bool], timeout: float = 90) -> bool:
    """Waits for every service's health URL; False if asked to stop first. A service that exits before it was
    ever healthy is a set-up problem (a missing server, a bad variable), not a crash to retry: RuntimeError."""
    pending = {service.name: service for service in services}
    deadline = time.monotonic() + timeout
    while pending and not stopping():
        for name, service in list(pending.items()):
            if service.is_healthy(HEALTH[name].format(**ports)):
                del pending[name]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not healthy after {timeout:.0f} s: {', '.join(pending)}")
        time.sleep(0.2)
    return not pending


class Backoff:
    """A kubelet's restart delays for one service: 1 s, 2 s, 4 s ... at most 30 s between exits in a row, and
    from 1 s again once the service had stayed up STABLE_S."""

    FIRST_S, MAX_S, STABLE_S = 1.0, 30.0, 60.0

    def __init__(self) -> None:
        self.exits = 0  # exits in a row, each less than STABLE_S after its start

    def next_delay(self, up_s: float) -> float:
        self.exits = 1 if up_s >= self.STABLE_S else self.exits + 1
        return min(self.MAX_S, self.FIRST_S * 2 ** min(self.exits - 1, 32))  # a float overflows past 2**1023


def supervise(services: list[Service], stopping: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
    """Until asked to stop: a service that exits is started again after its backoff; the others keep running."""
    started = {service.name: clock() for service in services}
    backoff = {service.name: Backoff() for service in services}
    due: dict[str, float] = {}  # name -> when to start it again
    while not stopping():
        now = clock()
        for service in services:
            assert service.proc is not None
            if service.name in due:
                if now >= due[service.name]:
                    del due[service.name]
                    start(service)
                    started[service.name] = now
            elif service.proc.poll() is not None:
                delay = backoff[service.name].next_delay(now - started[service.name])
                due[service.name] = now + delay
                print(f"[run] {service.name} exited ({describe(service.proc.returncode)}) after "
                      f"{now - started[service.name]:.0f} s; restarting it in {delay:.0f} s", flush=True)
        time.sleep(0.2)


def describe(returncode: int) -> str:
    if returncode >= 0:
        return f"status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:  # a real-time signal has no name
        return f"killed by signal {-returncode}"


if __name__ == "__main__":
    sys.exit(main())
