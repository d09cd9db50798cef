"""Auth logic as plain functions: login, new-user validation and creation, bootstrap admin; the ports they use."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from . import passwords, tokens
from .errors import (
    CannotDeleteSelf,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    TooManyAttempts,
    UserExists,
    UserNotFound,
    WrongPassword,
)
from .rules import check_password, is_valid_email, normalize_email, validate_email

log = logging.getLogger(__name__)

NEW_USER_FIELDS = frozenset({"email", "password", "admin"})
PASSWORD_CHANGE_FIELDS = frozenset({"current_password", "new_password"})


@dataclass(frozen=True)
class User:
    id: int
    email: str
    password_hash: str
    is_admin: bool
    # Bumped on each password change; tokens of an older version are refused (see authenticate).
    token_version: int


class Users(Protocol):
    """Where users are kept (users.MySQLUsers); emails arrive normalised.

    get_by_email may return a user whose address only matches under the database's collation (MySQL's
    accent- and case-insensitive one finds `ann@` for `ánn@`): callers compare with `owns_address`.
    """

    def ping(self) -> None: ...
    def get_by_email(self, email: str) -> User | None: ...
    def get_by_id(self, user_id: int) -> User | None: ...
    def create(self, email: str, password_hash: str, *, admin: bool) -> User: ...  # UserExists if taken
    def update_password_hash(self, user_id: int, password_hash: str) -> None: ...
    # Sets the hash and bumps token_version (revoking every earlier token); the new version, or None
    # when the user no longer exists.
    def change_password(self, user_id: int, password_hash: str) -> int | None: ...
    def delete(self, user_id: int) -> bool: ...  # False when there was no such user


class Throttle(Protocol):
    """Failed-login counters per user and per client address (throttle.MySQLThrottle)."""

    def retry_after(self, *, user: str, address: str) -> int: ...
    def record_failure(self, *, user: str, address: str) -> None: ...
    def reset_user(self, user: str) -> None: ...
    def purge_expired(self) -> None: ...


def owns_address(user: User, email: str) -> bool:
    """True when `email` (normalised) is the user's own address, not one the collation merely equates."""
    return normalize_email(user.email) == email


def throttle_key(email: str, user: User | None) -> str:
    """The per-user counter's key: the account found, however its address was spelt; else the address.

    Keyed on the row, not the typed bytes, so `Ann@`, `ánn@` or full-width variants of an address share the
    account's one counter (a zero-width variant is no valid address, so it finds no account and can win
    nothing). The prefixes keep an id and an address from ever colliding.
    """
    return f"id:{user.id}" if user is not None else f"email:{email}"


def login(
    email: str,
    password: str,
    address: str,
    *,
    users: Users,
    throttle: Throttle,
    policy: tokens.TokenPolicy,
) -> str:
    """Return a JWT for valid credentials; raise TooManyAttempts or InvalidCredentials otherwise."""
    email = normalize_email(email)
    # An address that could never be stored (a zero-width space, say) is looked up nowhere: no account.
    found = users.get_by_email(email) if is_valid_email(email) else None
    key = throttle_key(email, found)
    wait = throttle.retry_after(user=key, address=address)
    if wait:
        # Refused before hashing: a throttled guess costs the server nothing and learns nothing.
        log.warning("login throttled", extra={"email": email, "address": address, "retry_after": wait})
        raise TooManyAttempts(wait)

    # A look-alike address (`ánn@` finding `ann@`) counts against the account but never logs into it.
    user = found if found is not None and owns_address(found, email) else None
    if user is None:
        ok = passwords.verify_unknown_user(password)
    else:
        ok = passwords.verify(user.password_hash, password)
    if not ok:
        throttle.record_failure(user=key, address=address)
        log.info("login failed", extra={"email": email, "address": address})
        raise InvalidCredentials()

    throttle.reset_user(key)
    if passwords.needs_rehash(user.password_hash):
        # The plain password is only available now, so parameter upgrades happen at login.
        users.update_password_hash(user.id, passwords.hash_password(password))
    return issue_token(user, policy)


def issue_token(user: User, policy: tokens.TokenPolicy) -> str:
    return tokens.issue(
        user_id=user.id, email=user.email, admin=user.is_admin, version=user.token_version, policy=policy
    )


def authenticate(token: str, *, users: Users, policy: tokens.TokenPolicy) -> tuple[dict[str, Any], User]:
    """The verified claims and the user they belong to; InvalidToken for a bad token, a deleted user, or a
    token issued before the user's last password change.

    One primary-key read per call: the price of tokens that can be revoked.
    """
    claims = tokens.decode(token, policy)
    user = users.get_by_id(claims["uid"])
    # The address and admin flag are compared too, so an id reused after a deletion (InnoDB may reuse the
    # highest id after a restart) does not inherit the deleted user's tokens.
    if (
        user is None
        or user.token_version != claims["ver"]
        or user.email != claims["email"]
        or user.is_admin != claims.get("admin", False)
    ):
        raise InvalidToken("token has been revoked")
    return claims, user


def parse_password_change(body: Any) -> tuple[str, str]:
    """Validate a POST /users/me/password body; return (current, new) or raise InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object with current_password and new_password")
    unknown = sorted(set(body) - PASSWORD_CHANGE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field: {unknown[0]}")
    current, new = body.get("current_password"), body.get("new_password")
    if not isinstance(current, str):
        raise InvalidInput("current_password must be a string")
    if not isinstance(new, str):
        raise InvalidInput("new_password must be a string")
    check_password(new)
    return current, new


def change_password(
    user: User,
    current: str,
    new: str,
    address: str,
    *,
    users: Users,
    throttle: Throttle,
    policy: tokens.TokenPolicy,
) -> str:
    """Set a new password for the authenticated user and return a fresh token; every earlier token of the
    user is refused from now on. The current password is required (a stolen token alone must not take the
    account over), and guesses at it count against the same limits as logins."""
    key = throttle_key(user.email, user)
    wait = throttle.retry_after(user=key, address=address)
    if wait:
        log.warning("password change throttled", extra={"email": user.email, "address": address, "retry_after": wait})
        raise TooManyAttempts(wait)
    if not passwords.verify(user.password_hash, current):
        throttle.record_failure(user=key, address=address)
        log.info("password change refused", extra={"email": user.email, "address": address})
        raise WrongPassword()
    throttle.reset_user(key)
    version = users.change_password(user.id, passwords.hash_password(new))
    if version is None:  # deleted between authentication and now
        raise InvalidToken("token has been revoked")
    log.info("password changed", extra={"email": user.email})
    return issue_token(dataclasses.replace(user, token_version=version), policy)


def delete_user(email: str, *, caller: User, users: Users) -> None:
    """Delete the account whose address is `email` (normalised); the caller must be an admin (checked by the
    route). Its tokens are refused from then on, as authenticate finds no user."""
    email = normalize_email(email)
    found = users.get_by_email(email) if is_valid_email(email) else None
    # Only the account's own address deletes it: `ánn@` must not delete `ann@` through the collation.
    if found is None or not owns_address(found, email):
        raise UserNotFound()
    if found.id == caller.id:
        raise CannotDeleteSelf()
    if not users.delete(found.id):
        raise UserNotFound()  # deleted by someone else meanwhile
    log.info("user deleted", extra={"email": found.email, "by": caller.email})


def check_new_user(email: str, password: str) -> str:
    """Return the normalised email; raise InvalidInput for an email or password that may not be stored."""
    email = validate_email(email)
    check_password(password)
    return email


def parse_new_user(body: Any) -> tuple[str, str, bool]:
    """Validate a POST /users body; raise InvalidInput naming the offending field."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object with email and password")
    unknown = sorted(set(body) - NEW_USER_FIELDS)
    if unknown:
        # Rejecting typos such as `is_admin` beats silently creating a user without the flag.
        raise InvalidInput(f"unknown field: {unknown[0]}")
    email = body.get("email")
    if not isinstance(email, str):
        raise InvalidInput("email must be a string")
    email = validate_email(email)
    password = body.get("password")
    if not isinstance(password, str):
        raise InvalidInput("password must be a string")
    check_password(password)
    admin = body.get("admin", False)
    if type(admin) is not bool:  # bool only: JSON 1/0 or "true" are not accepted as flags
        raise InvalidInput("admin must be a boolean")
    return email, password, admin


def create_user(email: str, password: str, *, admin: bool, users: Users) -> User:
    email = check_new_user(email, password)
    user = users.create(email, passwords.hash_password(password), admin=admin)
    log.info("user created", extra={"email": user.email, "admin": user.is_admin})
    return user


def bootstrap_admin(email: str, password: str, *, users: Users) -> bool:
    """Create the admin if absent; True when this call created it.

    An existing account is left untouched (changing ADMIN_PASSWORD later does not reset it).
    """
    if users.get_by_email(email) is not None:
        return False
    try:
        create_user(email, password, admin=True, users=users)
    except UserExists:
        # Another replica starting at the same moment inserted it first; that is fine.
        return False
    return True
