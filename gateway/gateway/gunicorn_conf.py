"""Gunicorn settings for the gateway (loaded with `-c python:gateway.gunicorn_conf`)."""

import sys

from gateway.config import ConfigError, Settings

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    # One line and a non-zero exit instead of a traceback per worker boot attempt.
    sys.exit(f"gateway: configuration error: {exc}")

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = f"{_host}:{_settings.port}"

# Uploads and downloads are I/O bound: threads, not processes. One process per pod keeps the
# in-process Prometheus counters complete; scale with replicas instead.
worker_class = "gthread"
workers = 1
threads = 16
# gthread's worker heartbeat runs outside request threads, so long uploads do not trip this.
timeout = 120
graceful_timeout = 30

# No runtime control socket: nothing in a pod uses it and the root filesystem is read-only.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
# Every line on stdout/stderr is JSON, like the app's own log lines.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "gateway.logs.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
