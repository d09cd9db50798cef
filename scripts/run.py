"""`make run`: the four services (and a local SMTP sink) in the foreground with prefixed logs; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from procs import ROOT, SERVICES, Service

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

    children: list[Service] = []
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
    try:
        # auth first: the gateway needs it, and auth creates the bootstrap admin.
        for name in SERVICES:
            service = Service(name, {**env, **per_service[name]}).start()
            children.append(service)
            service.wait_healthy(HEALTH[name].format(**ports), timeout=90)
        print(
            f"[run] ready: gateway http://127.0.0.1:{ports['GATEWAY_PORT']}  "
            f"(log in as {env['ADMIN_EMAIL']}; password from ADMIN_PASSWORD)  Ctrl-C stops everything",
            flush=True,
        )
        while not stopping:
            for service in children:
                if service.proc and service.proc.poll() is not None:
                    print(f"[run] {service.name} exited with {service.proc.returncode}; stopping the rest", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"[run] {exc}", flush=True)
        return 1
    finally:
        print("[run] stopping", flush=True)
        for service in reversed(children):
            service.stop()
        if sink is not None:
            sink.terminate()
            sink.wait(10)


if __name__ == "__main__":
    sys.exit(main())
