"""Gunicorn settings for the gateway (loaded with `-c python:gateway.gunicorn_conf`)."""

from mp3core import logs, settings

from gateway.config import Settings

# A bad variable exits with one line instead of a traceback per worker boot attempt.
_settings = settings.load("gateway", Settings.from_env)

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = f"{_host}:{_settings.port}"

# Uploads and downloads are I/O bound and clients may be slow on purpose: one greenlet per connection
# (gevent) instead of a fixed pool of 16 threads that 16 trickling clients could fill (docs/performance.md,
# "Slow clients"). The worker class is gevent's plus JSON bodies for the errors gunicorn answers itself.
# One process per pod keeps the in-process Prometheus counters and the per-user upload slots complete;
# scale with replicas instead.
worker_class = "gateway.worker.GatewayWorker"
workers = 1
# Connections one worker holds at once (each costs a greenlet and a socket, a few KiB); past it the
# kernel's listen backlog queues new ones.
worker_connections = 2000
# Idle time between keep-alive requests, and also the deadline for a request's line and headers:
# gevent's worker reads them under this timeout and closes a connection that has not sent them.
keepalive = 5
# gunicorn's defaults, stated because gateway.worker's JSON error messages quote them (a test checks).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# The arbiter restarts a worker whose event loop did not run for this long (a CPU-bound request).
timeout = 120
graceful_timeout = 30

# No runtime control socket: nothing in a pod uses it and the root filesystem is read-only.
control_socket_disable = True



def post_worker_init(worker) -> None:
    """Connects to the broker as soon as the worker runs, in the background (a greenlet: the worker is gevent's),
    so a classic `video` queue of an earlier version is migrated at start, not at the first upload (the
    converter waits for that, docs/broker.md)."""
    import threading

    threading.Thread(target=worker.wsgi.extensions["gateway"].publisher.prepare, name="broker-prepare",
                     daemon=True).start()


accesslog = "-"
errorlog = "-"
# gunicorn's own lines in the same JSON schema as the app's.
logconfig_dict = logs.GUNICORN_LOGCONFIG
