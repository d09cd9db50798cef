"""JWT issue/decode (HS256) with the claims of the contract: sub, email, admin, iat, exp."""

from __future__ import annotations

import time
from typing import Any

import jwt

from .errors import InvalidToken

ALGORITHM = "HS256"


def issue(*, email: str, admin: bool, secret: str, lifetime_minutes: int) -> str:
    issued_at = int(time.time())
    claims = {
        "sub": email,
        "email": email,
        "admin": bool(admin),
        "iat": issued_at,
        "exp": issued_at + lifetime_minutes * 60,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(token: str, secret: str) -> dict[str, Any]:
    """Return the verified claims or raise InvalidToken."""
    try:
        # Pinning the algorithm list is what rejects `alg: none` and key-confusion tokens.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "email"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("token is invalid") from None
    if not isinstance(claims.get("email"), str) or not isinstance(claims.get("admin", False), bool):
        raise InvalidToken("token claims are malformed")
    return claims
