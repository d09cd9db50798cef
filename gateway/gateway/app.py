"""The gateway's composition root: settings -> adapters -> Flask app."""

from __future__ import annotations

import pika.exceptions
import pymongo.errors
import requests
from flask import Flask
from mp3core import logs, mongo
from mp3core.settings import load
from mp3core.http import register_error_handler
from werkzeug.middleware.proxy_fix import ProxyFix

from .auth_client import AuthClient
from .bodies import SlowClientGuard
from .config import Settings
from .jobs import Jobs
from .limits import Quotas, UploadSlots
from .metrics import Metrics
from .publisher import Publisher
from .routes import Deps, bp
from .storage import Storage
from .web import bp as web_bp

# Failures of a dependency (not of the request) that escaped an adapter: 503, the client may retry later.
UNAVAILABLE = (
    pymongo.errors.ConnectionFailure,  # includes ServerSelectionTimeoutError, AutoReconnect, NetworkTimeout
    pika.exceptions.AMQPError,
    requests.ConnectionError,
    requests.Timeout,
)


def create_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    jobs: Jobs | None = None,
    publisher: Publisher | None = None,
    auth: AuthClient | None = None,
) -> Flask:
    """Build the app; adapters not passed in are created from `settings` (nothing connects until used)."""
    settings = settings or load("gateway", Settings.from_env)
    logs.setup()

    if storage is None or jobs is None:
        # One client per process, created here (after gunicorn forked the worker), never at import time.
        db = mongo.connect(settings.mongo_uri)
        storage = Storage(db) if storage is None else storage
        jobs = Jobs(db) if jobs is None else jobs
    if publisher is None:
        publisher = Publisher(settings.rabbitmq_url, settings.video_queue)
    if auth is None:
        auth = AuthClient(settings.auth_url)

    # No app-wide static folder: the web page's files are the web blueprint's (gateway/web.py), and every
    # route, the page's included, is in the OpenAPI document.
    app = Flask(__name__, static_folder=None)
    metrics = Metrics.create(jobs.count_by_status)
    quotas = Quotas(UploadSlots(settings.max_concurrent_uploads_per_user), settings.max_jobs_in_flight_per_user,
                    settings.max_stored_bytes_per_user)
    app.extensions["gateway"] = Deps(settings, storage, jobs, publisher, auth, metrics, quotas)
    app.register_blueprint(bp)
    app.register_blueprint(web_bp)
    register_error_handler(app, unavailable=UNAVAILABLE)
    metrics.http.install(app)
    if settings.proxy_hops:
        # Behind the ingress, request.remote_addr becomes the real client (used for auth's
        # per-client rate limit); trusting more hops than exist would let clients spoof it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    app.wsgi_app = SlowClientGuard(app.wsgi_app, settings.body_read_timeout_s)
    return app
