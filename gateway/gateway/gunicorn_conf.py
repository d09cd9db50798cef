"""Gunicorn settings for the gateway (loaded with `-c python:gateway.gunicorn_conf`)."""

from mp3core import logs, settings

from gateway.config import Settings

# A bad variable exits with one line instead of a traceback per worker boot attempt.
_settings = settings.load("gateway", Settings.from_env)

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
# gunicorn's own lines in the same JSON schema as the app's.
logconfig_dict = logs.GUNICORN_LOGCONFIG
