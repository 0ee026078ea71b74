"""What a registration may name, as pure rules (storage.admin applies them).

Customer names, SASL logins and domains are checked and brought to the form
they are stored and compared in; an inbound volume CSV is read into rows.
Every refusal is a :class:`~osfmilter.errors.UsageError` of one line.

Networks: only globally routable unicast ones. A registered network
authorizes every host that reaches the relay from an address inside it,
and bills that host's mail to the customer. An address
that is not globally unique (private, carrier-grade NAT, link-local,
loopback) is shared by hosts the customer does not control: a container
gateway or a NAT in front of the relay turns all of them into one address.
NAT64 and 6to4 prefixes stand for other hosts altogether (the IPv4 internet).
So a registration must lie wholly in the global unicast space.

The blocks are IANA's special-purpose registries (the ones not globally
reachable), plus the translation prefixes IANA counts as reachable but that
stand for other hosts; Python's ``ipaddress.is_global`` is consulted as
well, so a block that a newer Python knows is refused too.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import idna

from osfmilter.addresses import IPNetwork
from osfmilter.config import PlanName
from osfmilter.errors import UsageError
from osfmilter.limits.volume import parse_month

# Names and input --------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CUSTOMER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


def normalize_domain(text: str) -> str:
    """A domain in the form it is stored and compared: lower-case, A-labels, no final dot."""
    raw = text.strip().rstrip(".")
    try:
        # IDNA 2008 with UTS 46, as receivers and DMARC read a name: Python's
        # own "idna" codec is IDNA 2003, which makes straße.de strasse.de.
        domain = raw.lower() if raw.isascii() else idna.encode(raw, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise UsageError(f"{text!r} is not a valid domain name") from None
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.match(lb) for lb in labels):
        raise UsageError(f"{text!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise UsageError(f"{text!r} is an address, not a domain name")
    return domain


def check_customer_name(name: str) -> str:
    """The name, if a customer may be called that."""
    if not _CUSTOMER_NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid customer name (letters, digits and . _ @ + -, "
            "at most 100 characters)"
        )
    return name


def check_plan(plan: str) -> str:
    """The plan, if there is one of that name."""
    if plan not in tuple(PlanName):
        raise UsageError(f"unknown plan {plan!r} (free or paid)")
    return plan


def normalize_login(login: str) -> str:
    """A SASL login as it is stored and compared: without surrounding white space."""
    login = login.strip()
    # isprintable: no control, format (bidi, zero-width) or separator character but the
    # space, which any(isspace) refuses with the other white space.
    if not login or len(login) > 255 or not login.isprintable() or any(c.isspace() for c in login):
        raise UsageError(f"{login!r} is not a valid SASL login (1-255 characters, no spaces)")
    return login


# The local part as people type it into a login form: letters, digits and the
# specials of RFC 5322's dot-atom, no quoting, no leading, trailing or double dot.
_LOCAL_PART = re.compile(r"^(?!\.)(?!.*\.\.)[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}(?<!\.)$")


def normalize_email(text: str) -> str:
    """A portal user's address as it is stored and compared: lower-case, domain in A-labels."""
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.match(local.lower()):
        raise UsageError(f"{text!r} is not a valid e-mail address")
    try:
        domain = normalize_domain(domain)
    except UsageError:
        raise UsageError(f"{text!r} is not a valid e-mail address") from None
    email = f"{local.lower()}@{domain}"
    if len(email) > 254:  # RFC 5321's longest path, less the angle brackets
        raise UsageError(f"{text!r} is too long for an e-mail address (at most 254 characters)")
    return email


@dataclass(frozen=True)
class InboundRow:
    line: int
    domain: str
    month: str
    bytes: int


# Both databases store the bytes as a signed 64-bit integer.
MAX_INBOUND_BYTES = 2**63 - 1


def parse_inbound_csv(lines: Iterable[str], source: str = "the CSV") -> list[InboundRow]:
    """Rows of ``domain,month,bytes``; every bad row is reported, by line number, at once.

    A line that is not CSV at all (a field over the csv module's limit) stops
    the reading there: a UsageError naming ``source`` and the line.
    """
    rows: list[InboundRow] = []
    problems: list[str] = []
    reader = csv.reader(lines)
    first = True
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UsageError(f"{source}, line {reader.line_num}: {exc}; nothing imported") from None
        # The line the row ends on: a quoted field may span several.
        number = reader.line_num
        header, first = first, False
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if header and [f.strip().lower() for f in fields] == ["domain", "month", "bytes"]:
            continue
        if len(fields) != 3:
            problems.append(f"line {number}: expected domain,month,bytes, got {len(fields)} fields")
            continue
        domain_text, month, size = (f.strip() for f in fields)
        try:
            domain = normalize_domain(domain_text)
        except UsageError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        try:
            parse_month(month)
        except UsageError:
            problems.append(f"line {number}: {month!r} is not a month (YYYY-MM)")
            continue
        # ASCII digits only: str.isdigit() is true for "²", which int() refuses.
        if not (size.isascii() and size.isdigit()):
            problems.append(f"line {number}: {size!r} is not a whole number of bytes")
            continue
        # The length first: int() refuses a string of thousands of digits.
        if len(size) > len(str(MAX_INBOUND_BYTES)) or int(size) > MAX_INBOUND_BYTES:
            problems.append(f"line {number}: {size[:30]!r} is more than {MAX_INBOUND_BYTES} bytes")
            continue
        rows.append(InboundRow(number, domain, month, int(size)))
    if problems:
        raise UsageError("; ".join(problems) + "; nothing imported")
    return rows


# Networks ---------------------------------------------------------------------


class Why(StrEnum):
    """What registering such a block would do, as the refusal says it."""

    SHARED = (
        "its addresses are not unique on the internet: every host that reaches "
        "the relay from one (through a NAT, VPN, proxy or container gateway) "
        "would relay as this customer"
    )
    OTHERS = (
        "its addresses stand for other hosts behind a translator or relay, "
        "and every one of them would relay as this customer"
    )
    EXAMPLE = "it is reserved for documentation: no real server sends from it"
    NO_SENDER = "no server sends from it"


class _Block(NamedTuple):
    network: IPNetwork
    what: str
    why: Why


def _blocks(*rows: tuple[str, str, Why]) -> tuple[_Block, ...]:
    return tuple(_Block(ipaddress.ip_network(net), what, why) for net, what, why in rows)


# In the order a refusal names them: a network that meets several blocks is
# told about the first one.
_IPV4 = _blocks(
    ("0.0.0.0/8", '"this network" (RFC 791)', Why.NO_SENDER),
    ("10.0.0.0/8", "private-use (RFC 1918)", Why.SHARED),
    ("100.64.0.0/10", "carrier-grade NAT shared space (RFC 6598)", Why.SHARED),
    ("127.0.0.0/8", "loopback (RFC 1122)", Why.SHARED),
    ("169.254.0.0/16", "link-local (RFC 3927)", Why.SHARED),
    ("172.16.0.0/12", "private-use (RFC 1918)", Why.SHARED),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)", Why.SHARED),
    ("192.0.2.0/24", "TEST-NET-1 (RFC 5737)", Why.EXAMPLE),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)", Why.OTHERS),
    ("192.168.0.0/16", "private-use (RFC 1918)", Why.SHARED),
    ("198.18.0.0/15", "benchmarking (RFC 2544)", Why.SHARED),
    ("198.51.100.0/24", "TEST-NET-2 (RFC 5737)", Why.EXAMPLE),
    ("203.0.113.0/24", "TEST-NET-3 (RFC 5737)", Why.EXAMPLE),
    ("224.0.0.0/4", "multicast (RFC 5771)", Why.NO_SENDER),
    ("255.255.255.255/32", "limited broadcast (RFC 919)", Why.NO_SENDER),
    ("240.0.0.0/4", "reserved (RFC 1112)", Why.NO_SENDER),
)
_IPV6 = _blocks(
    ("::/128", "the unspecified address (RFC 4291)", Why.NO_SENDER),
    ("::1/128", "loopback (RFC 4291)", Why.SHARED),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)", Why.OTHERS),
    ("64:ff9b::/96", "the NAT64 well-known prefix (RFC 6052)", Why.OTHERS),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)", Why.OTHERS),
    ("100::/64", "discard-only (RFC 6666)", Why.NO_SENDER),
    ("2001::/32", "Teredo (RFC 4380)", Why.OTHERS),
    ("2001:db8::/32", "documentation (RFC 3849)", Why.EXAMPLE),
    ("2001::/23", "IETF protocol assignments (RFC 2928)", Why.SHARED),
    ("2002::/16", "6to4 (RFC 3056)", Why.OTHERS),
    ("3fff::/20", "documentation (RFC 9637)", Why.EXAMPLE),
    ("fc00::/7", "unique-local (RFC 4193)", Why.SHARED),
    ("fe80::/10", "link-local (RFC 4291)", Why.SHARED),
    ("ff00::/8", "multicast (RFC 4291)", Why.NO_SENDER),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def non_global_reason(network: IPNetwork) -> str | None:
    """Why ``network`` may not be registered, in one line; None if it is wholly global unicast."""
    for block in _IPV4 if network.version == 4 else _IPV6:
        if network.overlaps(block.network):
            return _reason(network, block)
    if isinstance(network, ipaddress.IPv6Network) and not network.subnet_of(_GLOBAL_UNICAST_V6):
        return (
            f"{network.with_prefixlen} is outside the global unicast space "
            f"{_GLOBAL_UNICAST_V6} (RFC 4291): {Why.NO_SENDER}"
        )
    # Both ends and the network: ipaddress judges a network by its ends only.
    if not all(
        part.is_global for part in (network, network.network_address, network.broadcast_address)
    ):
        return f"{network.with_prefixlen} is not globally routable (Python's ipaddress)"
    return None


def _reason(network: IPNetwork, block: _Block) -> str:
    if network.subnet_of(block.network):  # type: ignore[arg-type]  # same version
        return f"{network.with_prefixlen} is {block.what}: {block.why}"
    return f"{network.with_prefixlen} includes {block.network} ({block.what}): {block.why}"
