"""Passwords of SASL accounts: generated, checked, and hashed for Dovecot.

osfmilter stores only a hash, in a scheme Dovecot verifies itself when
Postfix asks it to authenticate a login (contrib/dovecot). ``{ARGON2ID}``
is Dovecot 2.3's name for an Argon2id PHC string. Dovecot checks it with
libsodium, which accepts only one lane (p=1); the memory and time costs
are those of Debian's ``doveadm pw -s ARGON2ID`` (64 MiB, 3 passes): each
login costs Dovecot about 0.3 s of one core and 64 MiB while it is checked
(measured on the 2-core test machine; docs/sasl.rst, 'Sizing').
"""

from __future__ import annotations

import base64
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from osfmilter.errors import UsageError

__all__ = ["SCHEME", "check", "generate", "hash_password", "verify"]

SCHEME = "{ARGON2ID}"
MIN_LENGTH = 12
# Nobody types more, and a client configuration file holds it on one line.
MAX_LENGTH = 1024
# 160 bits: 32 base32 characters, letters and digits 2-7 only, which survive
# copy and paste, a double click and a phone's keyboard.
GENERATED_BYTES = 20

_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1, type=Type.ID)


def generate() -> str:
    """A new random password (160 bits) in lower-case letters and digits."""
    return base64.b32encode(secrets.token_bytes(GENERATED_BYTES)).decode("ascii").lower()


def check(password: str) -> str:
    """The password if it may be used, else UsageError saying why."""
    if len(password) < MIN_LENGTH:
        raise UsageError(f"the password is too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise UsageError(f"the password is too long: at most {MAX_LENGTH} characters")
    # SMTP AUTH carries it base64-encoded, but Dovecot's PLAIN mechanism and
    # every client's configuration file would cut it at these.
    if any(ch in password for ch in "\r\n\0"):
        raise UsageError("the password must not contain line breaks or NUL characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no client could send it
        raise UsageError("the password is not valid Unicode text") from None
    return password


def hash_password(password: str) -> str:
    """The stored form: ``{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$salt$hash``."""
    return SCHEME + _HASHER.hash(check(password))


def verify(stored: str, password: str) -> bool:
    """Does ``password`` match a hash made by :func:`hash_password`?"""
    if not stored.startswith(SCHEME):
        return False
    try:
        return _HASHER.verify(stored.removeprefix(SCHEME), password)
    except (VerificationError, InvalidHashError):
        return False
