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


class WrongPassword(core.Forbidden):
    # 403, not 401: the caller's token is fine; a 401 would tell the client to log in again.
    default_message = "current password is incorrect"


class UserNotFound(core.NotFound):
    default_message = "user not found"


class CannotDeleteSelf(core.Conflict):
    # The last admin deleting themselves would leave nobody able to create users.
    default_message = "an admin cannot delete their own account"
