"""Password hashing with argon2id: hash, verify (timing-equalised for unknown users), rehash check."""

from __future__ import annotations

import functools
import logging
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

# OWASP Password Storage Cheat Sheet, argon2id minimum: m=19 MiB, t=2, p=1.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        # A corrupt stored hash must not crash login or reveal itself to the caller.
        log.error("stored password hash could not be verified")
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash of a random secret nobody knows, made with the same parameters as real hashes."""
    return HASHER.hash(secrets.token_urlsafe(32))


def verify_unknown_user(password: str) -> bool:
    """Spend the same time as a real verification so unknown emails cannot be told apart by timing."""
    verify(dummy_hash(), password)
    return False


def needs_rehash(stored_hash: str) -> bool:
    return HASHER.check_needs_rehash(stored_hash)
