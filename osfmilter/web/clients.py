"""Whom a request comes from, as the throttles count it: one key per client host.

An IPv6 address counts as its /64, which one host usually has to itself,
so a client cannot win a fresh allowance by moving to another address of
it; an IPv4-mapped one (``::ffff:a.b.c.d``) counts as the IPv4 address.
"""

from __future__ import annotations

import ipaddress

MAX_ADDR = 45
IPV6_PREFIX = 64


def client_key(remote_addr: str) -> str:
    """The address as counted: an IPv4 address, an IPv6 /64, or the text as given."""
    try:
        address = ipaddress.ip_address(remote_addr.partition("%")[0])
    except ValueError:
        return remote_addr[:MAX_ADDR]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
