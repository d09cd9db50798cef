"""Gunicorn settings for auth: `gunicorn -c python:auth.gunicorn_conf "auth:create_app()"`."""

import os

from auth.config import DEFAULT_HOST, DEFAULT_PORT, ConfigError, Settings

_host = os.environ.get("HOST") or DEFAULT_HOST
_port = os.environ.get("PORT") or str(DEFAULT_PORT)
bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"

# One process per pod so prometheus-client's in-process counters are complete for the pod
# (no multiprocess mode needed); threads absorb I/O waits, and we scale with replicas instead.
workers = 1
worker_class = "gthread"
threads = 4
timeout = 30
graceful_timeout = 20
accesslog = "-"
# gunicorn's control socket would go to $HOME/.gunicorn: read-only in the pod, and shared by every
# gunicorn run locally (auth and gateway would fight over it). Nothing here uses `gunicornc`.
control_socket_disable = True

# Everything (gunicorn's error and access logs included) as JSON lines on stdout.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "auth.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    },
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}


def on_starting(server) -> None:
    """Validate configuration in the master so a bad variable is one line and exit 1, not a worker traceback."""
    try:
        Settings.from_env()
    except ConfigError as exc:
        # gunicorn prints a RuntimeError raised here as "Error: <message>" and exits with status 1.
        raise RuntimeError(f"auth configuration error: {exc}") from None
