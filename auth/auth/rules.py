"""Input rules for accounts: e-mail normalisation and validation, the password length policy."""

from __future__ import annotations

import re
import unicodedata

from mp3core.contract import is_email

from .errors import InvalidInput

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
# Deliberately simple: one @, no whitespace/control characters, a dotted domain. Delivery proves the rest.
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(?:\.[^@\s\x00-\x1f\x7f.]+)+")

MIN_PASSWORD_LENGTH = 8
# The upper bound keeps one login from costing unbounded hashing input; 1024 fits any passphrase.
MAX_PASSWORD_LENGTH = 1024


def normalize_email(raw: str) -> str:
    """One spelling per address: NFKC (full-width and other compatibility forms become plain characters),
    then lower case. Used when users are created and at login, so both meet the same string."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def _has_invisible(text: str) -> bool:
    # Control, format (zero-width space, joiners, bidi marks), private-use, surrogate and unassigned
    # characters: MySQL's collation ignores some of them, so an address holding one could reach another
    # user's row while looking like a new address.
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def is_valid_email(email: str) -> bool:
    # Also the contract's rule: the address travels in queue messages as the job's owner, and a consumer
    # refuses what the contract refuses (one address, none of , ; < > " ' that could add a recipient).
    return (
        len(email) <= MAX_EMAIL_LENGTH
        and not _has_invisible(email)
        and _EMAIL_RE.fullmatch(email) is not None
        and is_email(email)
    )


def validate_email(raw: str) -> str:
    """Return the normalised email or raise InvalidInput."""
    email = normalize_email(raw)
    if not is_valid_email(email):
        raise InvalidInput("email is not a valid address")
    return email


def check_password(password: str) -> None:
    """Raise InvalidInput unless the password may be stored."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long")
