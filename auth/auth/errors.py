"""Domain exceptions raised by the auth logic; the app's one error handler maps them to HTTP."""


class AuthServiceError(Exception):
    """Base class: the message is safe to show to the caller as the JSON `error`."""

    default_message = "request failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class InvalidCredentials(AuthServiceError):
    default_message = "invalid email or password"


class InvalidToken(AuthServiceError):
    default_message = "invalid token"


class Forbidden(AuthServiceError):
    default_message = "admin token required"


class InvalidInput(AuthServiceError):
    default_message = "invalid input"


class UserExists(AuthServiceError):
    default_message = "user already exists"


class TooManyAttempts(AuthServiceError):
    default_message = "too many failed logins, try again later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
