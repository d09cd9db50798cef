"""Gateway application factory: settings -> adapters -> Flask app (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from pymongo import MongoClient
from werkzeug.middleware.proxy_fix import ProxyFix

from .auth_client import AuthClient
from .config import Settings
from .errors import register_error_handler
from .jobs import Jobs
from .logs import configure_logging
from .metrics import Metrics
from .publisher import Publisher
from .routes import bp
from .storage import Storage

# A request waiting on an unreachable MongoDB gives up after this and answers 503.
MONGO_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Services:
    """Everything a request handler may use, reached as current_app.extensions["gateway"]."""

    settings: Settings
    storage: Any
    jobs: Any
    publisher: Any
    auth: Any
    metrics: Metrics


def create_app(
    settings: Settings | None = None,
    *,
    storage: Any = None,
    jobs: Any = None,
    publisher: Any = None,
    auth: Any = None,
) -> Flask:
    """Build the app; adapters not injected (tests inject fakes) are created from `settings`."""
    settings = settings or Settings.from_env()
    configure_logging()

    if storage is None or jobs is None:
        # One client per process: it pools connections and is thread-safe. Created here, after
        # gunicorn forked the worker, never at import time.
        client = MongoClient(
            settings.mongo_uri,
            tz_aware=True,
            serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
            connectTimeoutMS=MONGO_TIMEOUT_MS,
        )
        db = client.get_default_database()
        storage = Storage(db) if storage is None else storage
        jobs = Jobs(db) if jobs is None else jobs
    if publisher is None:
        publisher = Publisher(settings.rabbitmq_url, settings.video_queue)
    if auth is None:
        auth = AuthClient(settings.auth_url)

    # No static folder: the gateway serves only its API, and every route must be in the OpenAPI document.
    app = Flask(__name__, static_folder=None)
    metrics = Metrics()
    metrics.watch_jobs(jobs.count_by_status)
    app.extensions["gateway"] = Services(settings, storage, jobs, publisher, auth, metrics)
    app.register_blueprint(bp)
    register_error_handler(app)
    metrics.install(app)
    if settings.proxy_hops:
        # Behind the ingress, request.remote_addr becomes the real client (used for auth's
        # per-client rate limit); trusting more hops than exist would let clients spoof it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)
    return app
