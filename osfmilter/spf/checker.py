"""SPF of the customer's domain, evaluated for the relay's own outbound addresses.

The question is not "may this client send for the domain" but "will the
world accept this domain's mail once *we* relay it": pyspf evaluates the
envelope sender's domain for each of the relay's outbound IPs. Lookups go
through a dnspython resolver of osfmilter's own (configurable nameservers,
bounded time); results are cached per (domain, outbound IP) for the
smallest TTL the evaluation saw (a negative answer's: its SOA minimum, RFC
2308), in a bounded cache; per local part and HELO too when a record the
evaluation read uses %{s}, %{l} or %{h}.

The sender is split at its *last* '@' (a quoted local part may hold one,
RFC 5321), and pyspf is made to evaluate exactly that domain and local part:
the cache key is what was evaluated.

A sender domain that cannot be a DNS name (an empty label, a label over 63
octets, over 253 in all, a single label) is "none" without a lookup: RFC 7208
section 4.3 says check_host() returns "none" at once for a malformed domain,
and the domain owner has published nothing the relay could break.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.resolver
import spf

from osfmilter.addresses import split_nameserver
from osfmilter.spf.result import SEVERITY, SpfOutcome

# Macros that make a result depend on the local part or the HELO, not only on the
# domain (%{o}, %{d}) and the outbound IP (%{i}, %{c}, %{v}, %{p}) the key holds.
_SENDER_MACROS = re.compile(rb"%\{[slh]", re.IGNORECASE)


@dataclass(frozen=True)
class Sender:
    """The envelope sender as SPF evaluates it (RFC 7208 sections 4.1 and 7.3)."""

    local: str  # %{l}: "postmaster" when there is none
    domain: str  # %{o}: after the last '@', lower-case, without a final dot
    helo: str  # %{h}

    @property
    def address(self) -> str:  # %{s}
        return f"{self.local}@{self.domain}"

    def cache_key(self, ip: str, sender_dependent: bool) -> tuple[str, ...]:
        if sender_dependent:
            return (self.domain, ip, self.local.lower(), self.helo.lower())
        return (self.domain, ip)


def parse_sender(sender: str, helo: str) -> Sender:
    """The sender; for the null sender postmaster@HELO (RFC 7208 section 2.4)."""
    local, _, domain = (sender or f"postmaster@{helo}").rpartition("@")
    return Sender(local or "postmaster", domain.lower().rstrip("."), helo)


def resolver_for(nameservers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """The system resolver, or one that asks exactly the given ``IP`` / ``IP:PORT`` servers."""
    if not nameservers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        addresses, ports = [], {}
        for server in nameservers:
            address, port = split_nameserver(server)
            addresses.append(address)
            ports[address] = port
        resolver.nameservers = addresses
        resolver.nameserver_ports = ports
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


# Answers are shared by every outbound IP's evaluation and every connection.
DNS_CACHE_SIZE = 10_000


def unusable_domain(domain: str) -> str:
    """Why SPF cannot look this domain up, "" when it can (RFC 7208 section 4.3)."""
    if not domain:
        return "there is no domain"
    if "\\" in domain:
        # dnspython would read it as a master-file escape and ask for another name.
        return "a domain name has no backslash"
    try:
        name = dns.name.from_text(domain)  # the same conversion (IDNA) as the lookups
    except (dns.exception.DNSException, UnicodeError) as exc:
        return str(exc)
    if len(name.labels) < 3:  # the root label counts too
        return "it is not a multi-label domain name"
    return ""


# The lookup of a name dnspython cannot encode (a macro expanded into an empty or
# overlong label, an overlong name): no such name, as pyspf itself treats them.
_NOT_A_NAME = (
    dns.exception.SyntaxError,
    dns.name.NameTooLong,
    dns.name.IDNAException,
    UnicodeError,
)


class _Lookups(threading.local):
    """What one evaluation on this thread saw: the smallest TTL, sender-dependent macros."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ttl: float = float("inf")
        self.sender_dependent = False
        self.deadline = float("inf")


class SpfChecker:
    def __init__(
        self,
        outbound_ips: Sequence[str],
        resolver: dns.resolver.Resolver,
        timeout: float,
        cache_size: int,
        max_ttl: float,
    ) -> None:
        self.outbound_ips = tuple(outbound_ips)
        self.resolver = resolver
        self.timeout = timeout
        self.cache_size = cache_size
        self.max_ttl = max_ttl
        self._cache: OrderedDict[tuple[str, ...], tuple[float, tuple[str, str]]] = OrderedDict()
        self._sender_dependent: dict[str, float] = {}
        self._lock = threading.Lock()
        self._seen = _Lookups()
        self.resolver.cache = dns.resolver.LRUCache(DNS_CACHE_SIZE)
        # pyspf looks names up through a module-level function; this process's
        # only SPF user puts its own resolver there.
        spf.DNSLookup = self._lookup

    def check(self, sender: str, helo: str) -> SpfOutcome:
        """Evaluate the sender's domain (the null sender: the HELO name) for each outbound IP."""
        parsed = parse_sender(sender, helo)
        domain = parsed.domain
        if problem := unusable_domain(domain):
            why = f"{domain!r} is not a domain SPF can look up: {problem}"
            return SpfOutcome(
                domain, "none", why, tuple((ip, "none", why) for ip in self.outbound_ips)
            )
        # One time budget for the whole check, however many outbound IPs.
        deadline = time.monotonic() + self.timeout
        per_ip = tuple((ip, *self._check_ip(ip, parsed, deadline)) for ip in self.outbound_ips)
        worst = min(per_ip, key=lambda item: SEVERITY.index(item[1]))
        return SpfOutcome(domain, worst[1], worst[2], per_ip)

    def _check_ip(self, ip: str, sender: Sender, deadline: float) -> tuple[str, str]:
        now = time.monotonic()
        with self._lock:
            dependent = self._sender_dependent.get(sender.domain, 0.0) > now
        key = sender.cache_key(ip, dependent)
        if (hit := self._cached(key, now)) is not None:
            return hit
        remaining = deadline - now
        if remaining <= 0:
            return "temperror", f"DNS: no answer within {self.timeout:g} s"
        self._seen.reset()
        self._seen.deadline = deadline
        result, _, explanation = _query(ip, sender, remaining).check()
        ttl = min(self._seen.ttl, self.max_ttl)
        if result == "temperror":
            ttl = 0  # a DNS failure is not a fact about the domain
        if self._seen.sender_dependent:
            with self._lock:
                self._sender_dependent[sender.domain] = now + max(ttl, 60)
            key = sender.cache_key(ip, True)
        self._store(key, now + ttl, (result, explanation))
        return result, explanation

    def _cached(self, key: tuple[str, ...], now: float) -> tuple[str, str] | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return entry[1]

    def _store(self, key: tuple[str, ...], expires: float, value: tuple[str, str]) -> None:
        if expires <= time.monotonic():
            return
        with self._lock:
            self._cache[key] = (expires, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _lookup(self, name: str, qtype: str, strict: Any, timeout: float) -> list[Any]:
        """pyspf's DNSLookup(name, qtype, strict, timeout), on our resolver; notes TTLs, macros."""
        remaining = min(timeout, self._seen.deadline - time.monotonic())
        if remaining <= 0:
            raise spf.TempError(f"DNS: no answer within {self.timeout:g} s")
        try:
            answer = self.resolver.resolve(
                name, qtype, lifetime=remaining, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            self._seen.ttl = min(self._seen.ttl, _negative_ttl(exc))
            return []
        except _NOT_A_NAME:
            return []
        except dns.exception.DNSException as exc:
            # A timeout, no nameserver answering, a broken answer: not a fact about the name.
            raise spf.TempError(f"DNS {exc}") from None
        # What is left of the answer's life in dnspython's cache: the smallest TTL of
        # the records and CNAMEs, or for no record the SOA's negative TTL.
        self._seen.ttl = min(self._seen.ttl, max(0.0, answer.expiration - time.time()))
        if answer.rrset is None:
            return []
        values: list[Any] = []
        for rdata in answer.rrset:
            if qtype in ("A", "AAAA"):
                values.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                values.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                values.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                # SPF joins a record's strings without a separator (RFC 7208 section
                # 3.3): a macro may be split across two of them.
                if _SENDER_MACROS.search(b"".join(rdata.strings)):
                    self._seen.sender_dependent = True
                values.append(((name, qtype), rdata.strings))
        return values


def _query(ip: str, sender: Sender, timeout: float) -> spf.query:
    """pyspf's evaluation of exactly this sender's domain and local part."""
    query = spf.query(i=ip, s=sender.address, h=sender.helo, timeout=timeout, querytime=timeout)
    # pyspf splits s at the first '@'; a quoted local part may hold one, so
    # that would evaluate a piece of the local part as the domain, and cache
    # the result under the real one. %{l}, %{o} and the domain checked:
    query.l, query.o, query.d = sender.local, sender.domain, sender.domain
    return query


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    """How long "no such name" holds: its SOA's TTL and MINIMUM (RFC 2308 section 5)."""
    responses: dict[dns.name.Name, object] = exc.kwargs.get("responses", {})
    try:
        # dnspython's own reading, as it caches the answer (300 s without an SOA).
        return float(
            min(
                (
                    r.resolve_chaining().minimum_ttl
                    for r in responses.values()
                    if isinstance(r, dns.message.QueryMessage)
                ),
                default=0,
            )
        )
    except dns.exception.DNSException:  # an answer dnspython cannot make sense of
        return 0.0
