"""Gateway application factory (the composition root is gateway.app)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """Build the app (see gateway.app.create_app).

    Imported here, not at the top: gunicorn's master imports this package (for gunicorn_conf and the worker
    class) before the gevent worker monkey-patches the standard library, and pymongo and urllib3 keep direct
    references to `ssl` names they import. Loading them only in the patched worker gives them gevent's.
    """
    from .app import create_app as build

    return build(*args, **kwargs)
