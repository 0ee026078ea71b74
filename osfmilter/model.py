"""Facts about a connection and a message, as plain frozen values.

The milter adapter builds these from libmilter callbacks; the policy layer
decides on them without knowing about libmilter, SQL or the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    HEADER = "header"  # the headers and their end: callbacks that send no reply
    BODY = "body"
    EOM = "eom"


class ServerState(StrEnum):
    VEILIG = "veilig"  # safe: plan limits
    VERDACHT = "verdacht"  # suspicious: the low rate limit applies
    ONVEILIG = "onveilig"  # unsafe: everything refused until an operator releases it


class IdentityKind(StrEnum):
    SERVER = "server"
    SASL = "sasl"


@dataclass(frozen=True)
class Identity:
    """The registered sender a transaction is attributed to (docs/rules.rst, 'Terms')."""

    kind: IdentityKind
    id: int
    name: str  # canonical network ("192.0.2.0/24") or SASL login
    customer_id: int
    customer: str
    plan: str
    state: ServerState
    scanned_domains: frozenset[str]

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Envelope:
    """What MAIL FROM told us."""

    sender: str  # envelope sender without brackets; "" for the null sender
    declared_size: int | None  # the ESMTP SIZE= parameter, if any
    login: str  # {auth_authen}; "" when not authenticated


def domain_of(address: str) -> str:
    """The lower-cased domain of an address, "" when it has none."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local:
        return ""
    return domain.strip().rstrip(".").lower()


def matching_domain(domain: str, scanned_domains: frozenset[str]) -> str | None:
    """The scanned domain that domain is, or is the closest subdomain of; None if none."""
    labels = domain.split(".") if domain else []
    for i in range(len(labels)):
        if (candidate := ".".join(labels[i:])) in scanned_domains:
            return candidate
    return None


def is_known_sender(domain: str, scanned_domains: frozenset[str]) -> bool:
    """True if domain is one of the customer's scanned domains or a subdomain of one."""
    return matching_domain(domain, scanned_domains) is not None
