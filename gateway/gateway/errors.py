"""Domain exceptions and the single error handler that turns every failure into a JSON body."""

from __future__ import annotations

import logging

import pika.exceptions
import pymongo.errors
import requests
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("gateway")


class GatewayError(Exception):
    """Base of the errors the gateway answers on purpose; `message` is shown to the client."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The form field or query parameter at fault, so a client can point at it without parsing prose.
        self.field = field
        if headers:
            self.headers = headers


class BadRequest(GatewayError):
    status = 400


class Unauthorized(GatewayError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="mp3converter"'}


class NotFound(GatewayError):
    status = 404


class PayloadTooLarge(GatewayError):
    status = 413


class UnsupportedMediaType(GatewayError):
    status = 415


class ServiceUnavailable(GatewayError):
    status = 503
    headers = {"Retry-After": "5"}


# Failures of a dependency (not of the request) that escaped an adapter: the client may retry later.
_DEPENDENCY_DOWN = (
    pymongo.errors.ConnectionFailure,  # includes ServerSelectionTimeoutError, AutoReconnect, NetworkTimeout
    pika.exceptions.AMQPError,
    requests.ConnectionError,
    requests.Timeout,
)


def _json(message: str, status: int, headers=None, field: str | None = None):
    response = jsonify(error=message) if field is None else jsonify(error=message, field=field)
    response.status_code = status
    for name, value in headers or ():
        response.headers[name] = value
    return response


def handle_error(exc: Exception):
    """The one handler: domain errors, werkzeug HTTP errors, dead dependencies and bugs, all as JSON."""
    if isinstance(exc, GatewayError):
        return _json(exc.message, exc.status, exc.headers.items(), exc.field)
    if isinstance(exc, HTTPException):
        if exc.code is None or exc.code < 400:
            return exc  # routing redirects (e.g. a missing trailing slash) are not errors
        # Keep headers such as Allow (405) but not werkzeug's HTML Content-Type.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return _json(exc.description or exc.name, exc.code, headers)
    if isinstance(exc, _DEPENDENCY_DOWN):
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return _json("a backing service is unavailable, try again later", 503, [("Retry-After", "5")])
    log.exception("unexpected error")
    return _json("internal server error", 500)


def register_error_handler(app: Flask) -> None:
    # Registered for Exception so werkzeug's 404/405/413 land here too instead of as HTML pages.
    app.register_error_handler(Exception, handle_error)
