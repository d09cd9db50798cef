"""JWT issue/decode (HS256): the contract's claims (sub, email, admin, iat, exp) plus iss, aud, uid and ver."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import InvalidToken

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "email", "uid", "ver")


@dataclass(frozen=True)
class TokenPolicy:
    """How tokens are signed and what a valid one must say; built from Settings by create_app."""

    secret: str = field(repr=False)
    lifetime_minutes: int
    issuer: str
    audience: str


def issue(*, user_id: int, email: str, admin: bool, version: int, policy: TokenPolicy) -> str:
    """A token for the user; `uid` and `ver` (the user's token version) let /validate refuse it once the user
    is deleted or changes their password."""
    issued_at = int(time.time())
    claims = {
        "iss": policy.issuer,
        "aud": policy.audience,
        "sub": email,
        "email": email,
        "admin": bool(admin),
        "uid": user_id,
        "ver": version,
        "iat": issued_at,
        "exp": issued_at + policy.lifetime_minutes * 60,
    }
    return jwt.encode(claims, policy.secret, algorithm=ALGORITHM)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode(token: str, policy: TokenPolicy) -> dict[str, Any]:
    """Return the verified claims or raise InvalidToken. Whether the user still exists and the token is of
    their current version is accounts.authenticate's check (it needs the database)."""
    try:
        # Pinning the algorithm list is what rejects `alg: none` and key-confusion tokens.
        claims = jwt.decode(
            token,
            policy.secret,
            algorithms=[ALGORITHM],
            audience=policy.audience,
            issuer=policy.issuer,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("token is invalid") from None
    if (
        not isinstance(claims.get("email"), str)
        or not isinstance(claims.get("admin", False), bool)
        or not _is_int(claims.get("uid"))
        or not _is_int(claims.get("ver"))
        or not _is_int(claims.get("iat"))
        or not _is_int(claims.get("exp"))
    ):
        raise InvalidToken("token claims are malformed")
    # Signed with our key but living longer than we would ever issue: the key leaked or the policy was
    # shortened since; either way such a token is not one of ours to honour.
    if claims["exp"] - claims["iat"] > policy.lifetime_minutes * 60:
        raise InvalidToken("token lifetime exceeds the configured maximum")
    return claims
