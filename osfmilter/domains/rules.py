"""What a domain's verification record is and what a TXT answer proves, as pure rules.

A pending domain becomes verified when ``_osfmilter.DOMAIN`` holds a TXT
record ``osfmilter-verification=TOKEN`` with the domain's own token
(docs/domains.rst, 'How a domain is verified').
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

RECORD_LABEL = "_osfmilter"
VALUE_PREFIX = "osfmilter-verification="
# 128 bits: nobody can guess the token of a domain they do not control.
TOKEN_BYTES = 16


class DomainState(StrEnum):
    VERIFIED = "verified"
    PENDING = "pending"


def new_token() -> str:
    """A random token of 32 lower-case hex digits: safe in any TXT record."""
    return secrets.token_hex(TOKEN_BYTES)


def record_name(domain: str) -> str:
    return f"{RECORD_LABEL}.{domain}"


def record_value(token: str) -> str:
    return f"{VALUE_PREFIX}{token}"


def parents(domain: str) -> list[str]:
    """The domains ``domain`` lies within, nearest first (not the top-level domain)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


@dataclass(frozen=True)
class Finding:
    """What the verification record says about a token, in one line."""

    verified: bool
    line: str


def judge(domain: str, token: str, records: tuple[str, ...]) -> Finding:
    """Whether the TXT records at ``_osfmilter.DOMAIN`` hold ``token``."""
    name = record_name(domain)
    # Case does not matter to a DNS admin's eye, nor here (the token is hex).
    values = [r.strip() for r in records if r.strip().lower().startswith(VALUE_PREFIX)]
    if record_value(token) in (value.lower() for value in values):
        return Finding(True, f"{name} holds the verification token")
    if values:
        found = ", ".join(repr(v) for v in values)
        return Finding(False, f"{name} holds a record with another token: {found}")
    if records:
        return Finding(False, f"{name} has TXT records, but no {VALUE_PREFIX}... record")
    return Finding(False, f"no TXT record at {name}")
