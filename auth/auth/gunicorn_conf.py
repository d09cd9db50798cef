"""Gunicorn settings for auth: `gunicorn -c python:auth.gunicorn_conf "auth:create_app()"`."""

from mp3core.logs import GUNICORN_LOGCONFIG
from mp3core.settings import load

from auth.config import Settings

# Read in the master, so a bad variable is one line and exit 1 before any worker starts.
_settings = load("auth", Settings.from_env)
_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = f"{_host}:{_settings.port}"

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

# Everything (gunicorn's error and access logs included) as JSON lines on stdout, in the shared schema.
logconfig_dict = GUNICORN_LOGCONFIG
