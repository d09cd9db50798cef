"""auth's domain errors: raised by logic and adapters, mapped to HTTP by mp3core.http's one error handler."""

from __future__ import annotations

from mp3core import errors as core


class InvalidCredentials(core.Unauthorized):
    default_message = "invalid email or password"
    # /login takes Basic credentials, so its challenge names Basic rather than the shared Bearer one.
    headers = {"WWW-Authenticate": 'Basic realm="mp3converter"'}


class InvalidToken(core.Unauthorized):
    default_message = "invalid token"


class Forbidden(core.Forbidden):
    default_message = "admin token required"


class InvalidInput(core.BadRequest):
    default_message = "invalid input"


class UserExists(core.Conflict):
    default_message = "user already exists"


class TooManyAttempts(core.TooManyRequests):
    default_message = "too many failed logins, try again later"
