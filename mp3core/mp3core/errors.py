"""Error base classes: consumers act on PermanentError; the Flask services map AppError subclasses to HTTP."""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never succeed (bad message, unreadable video, rejected recipient): retrying is pointless.

    The consumer loop dead-letters the message. str(error) is a short human reason; it ends up in the job's
    `error` field and in the user's email.
    """


class ContractError(PermanentError):
    """A message or option breaks the inter-service contract; `field` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AppError(Exception):
    """Base of the errors a Flask service answers on purpose: `status`, a message safe to show, extra headers.

    Raised by logic and adapters (never HTTP classes); mp3core.http turns them into `{"error": message}`.
    """

    status = 500
    default_message = "request failed"
    headers: dict[str, str] = {}

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None,
                 field: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)
        # The form field or query parameter at fault, so a client can point at it without parsing prose.
        self.field = field
        if headers:
            self.headers = {**self.headers, **headers}


class BadRequest(AppError):
    status = 400
    default_message = "invalid request"


class Unauthorized(AppError):
    status = 401
    default_message = "authentication required"
    headers = {"WWW-Authenticate": 'Bearer realm="mp3converter"'}


class Forbidden(AppError):
    status = 403
    default_message = "not allowed"


class NotFound(AppError):
    status = 404
    default_message = "not found"


class Conflict(AppError):
    status = 409
    default_message = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    default_message = "request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    default_message = "unsupported media type"


class TooManyRequests(AppError):
    status = 429
    default_message = "too many requests, try again later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status = 503
    default_message = "a backing service is unavailable, try again later"
    headers = {"Retry-After": "5"}
