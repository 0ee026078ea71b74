"""API tokens: made, recognised, and checked against their stored hash.

A token reads ``osf_PREFIX_SECRET``: ``osf_`` makes it greppable (a secret
scanner, or an operator searching a leaked log, finds it by that alone),
PREFIX is 8 characters that name the row (public: lists show it, ``token
revoke`` takes it), SECRET is 32 characters holding 160 random bits. Both
are base32 in lower case: letters and the digits 2-7, which survive a double
click, copy and paste and a shell without quoting.

Only the SHA-256 of the whole token is stored. A password needs a slow hash
(Argon2id, osfmilter.passwords) because people choose guessable ones; a
token's 160 random bits cannot be guessed, so a fast hash loses nothing and
lets every API request be checked in microseconds, not 0.3 s of CPU.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.storage.schema import ApiToken

__all__ = [
    "ApiPrincipal",
    "GeneratedToken",
    "authenticate",
    "generate",
    "hash_token",
    "parse",
    "verify",
]

MARKER = "osf_"
PREFIX_LENGTH = 8  # 40 bits: a name, not a secret
SECRET_BYTES = 20  # 160 bits: 32 base32 characters
SECRET_LENGTH = 32
_TOKEN = re.compile(rf"{MARKER}([a-z2-7]{{{PREFIX_LENGTH}}})_([a-z2-7]{{{SECRET_LENGTH}}})")
# last_used_at is written at most this often per token: not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class GeneratedToken:
    """A new token: shown once; ``prefix`` and ``hash`` are what is stored."""

    token: str
    prefix: str
    hash: str


@dataclass(frozen=True)
class ApiPrincipal:
    """Whom a request's token speaks for: one customer, or the operator."""

    token_id: int
    # The token's public part, which names it in the audit log.
    prefix: str
    customer_id: int | None

    @property
    def is_operator(self) -> bool:
        return self.customer_id is None


def _base32(count: int) -> str:
    return base64.b32encode(secrets.token_bytes(count)).decode("ascii").lower().rstrip("=")


def generate() -> GeneratedToken:
    """A new random token, its prefix and its hash."""
    while True:
        # All digits would read as a row id to ``token revoke``: draw again
        # (one prefix in about 10^6).
        prefix = _base32(5)
        if not prefix.isdigit():
            break
    token = f"{MARKER}{prefix}_{_base32(SECRET_BYTES)}"
    return GeneratedToken(token, prefix, hash_token(token))


def parse(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match[1], match[2]) if match else None


def hash_token(token: str) -> str:
    """The stored form: SHA-256 of the whole token, 64 hex digits."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def verify(stored_hash: str, token: str) -> bool:
    """Does ``token`` match the stored hash? In constant time."""
    return hmac.compare_digest(stored_hash.encode("ascii"), hash_token(token).encode("ascii"))


def authenticate(session: Session, token: str, now: datetime) -> ApiPrincipal | None:
    """The principal a bearer token stands for, else None (malformed, unknown, wrong, revoked).

    Marks the token used (``last_used_at``, to the minute) in the caller's
    transaction, which the caller commits.
    """
    parsed = parse(token)
    if parsed is None:
        return None
    row = session.scalars(select(ApiToken).where(ApiToken.prefix == parsed[0])).one_or_none()
    if row is None or not verify(row.token_hash, token) or row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return ApiPrincipal(row.id, row.prefix, None if row.is_operator else row.customer_id)
