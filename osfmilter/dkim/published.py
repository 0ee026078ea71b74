"""Whether the DNS publishes a key as its TXT record at ``SEL._domainkey.DOMAIN``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import dns.resolver

from osfmilter.dkim.keys import KEY_TYPES, parse_record
from osfmilter.dkim.signer import Algorithm
from osfmilter.dnstxt import lookup_txt


class Published(StrEnum):
    MATCHES = "matches"
    MISSING = "missing"
    DIFFERENT = "different"
    DNS_PROBLEM = "dns-problem"


@dataclass(frozen=True)
class PublishedCheck:
    name: str
    state: Published
    summary: str  # one line: what was found

    @property
    def matches(self) -> bool:
        return self.state is Published.MATCHES


def record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def check_published(
    domain: str,
    selector: str,
    algorithm: Algorithm,
    public_key: str,
    resolver: dns.resolver.Resolver,
) -> PublishedCheck:
    name = record_name(domain, selector)
    answer = lookup_txt(resolver, name)
    if not answer.answered:
        return PublishedCheck(name, Published.DNS_PROBLEM, answer.problem)
    if not answer.records:
        return PublishedCheck(name, Published.MISSING, f"no TXT record at {name}")
    if len(answer.records) > 1:
        # RFC 6376 section 3.6.2.2: verifiers may read any one of them.
        return PublishedCheck(
            name,
            Published.DIFFERENT,
            f"{len(answer.records)} TXT records at {name}; publish exactly one",
        )
    problem = _difference(answer.records[0], KEY_TYPES[algorithm], public_key)
    if problem:
        return PublishedCheck(name, Published.DIFFERENT, f"{name}: {problem}")
    return PublishedCheck(name, Published.MATCHES, f"{name} publishes the key")


def _difference(record: str, key_type: str, public_key: str) -> str:
    """What keeps ``record`` from publishing the key, "" when nothing does."""
    shown = record if len(record) <= 60 else record[:57] + "..."
    try:
        tags = parse_record(record)
    except ValueError as exc:
        return f"the record {shown!r} is not a DKIM record ({exc})"
    if tags.get("v", "DKIM1") != "DKIM1":
        return f"the record has v={tags['v']}, not v=DKIM1"
    if tags.get("k", "rsa") != key_type:
        return f"the record has k={tags.get('k', 'rsa')}, the key is k={key_type}"
    if "p" not in tags:
        return f"the record {shown!r} has no p="
    if not tags["p"]:
        return "the record has an empty p= (the key is revoked)"
    if tags["p"] != public_key:
        return f"the record publishes another key (p={tags['p'][:20]}...)"
    return ""
