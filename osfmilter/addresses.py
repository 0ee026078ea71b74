"""Client addresses and registered networks.

Matching is done on fixed-width hex strings of the address, so the database
can find the longest registered prefix containing a client with a range
query on an index, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_client(text: str) -> IPAddress | None:
    """The client address as osfmilter matches it, or None if it is not one.

    IPv4-mapped IPv6 (``::ffff:192.0.2.1``) is the IPv4 host itself. NAT64 and
    6to4 forms are *not* translated: such a client is another host, and only
    a registration of that IPv6 address lets it relay. A zone id is dropped.
    """
    text = text.strip().strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_key(address: IPAddress) -> str:
    """Fixed-width hex: 8 digits for IPv4, 32 for IPv6; orders like the numbers."""
    width = 8 if address.version == 4 else 32
    return format(int(address), f"0{width}x")


@dataclass(frozen=True)
class Registration:
    network: IPNetwork

    @property
    def text(self) -> str:
        return self.network.with_prefixlen

    @property
    def first_key(self) -> str:
        return address_key(self.network.network_address)

    @property
    def last_key(self) -> str:
        return address_key(self.network.broadcast_address)


def parse_registration(text: str, min_prefix_v4: int, min_prefix_v6: int) -> Registration:
    """Parse an address or CIDR network a customer registers; ValueError names the problem."""
    raw = text.strip()
    if "%" in raw:
        raise ValueError(f"{raw!r}: zone ids cannot be registered")
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(raw, strict=False)
            raise ValueError(
                f"{raw!r} has host bits set; register {loose.with_prefixlen} or a single address"
            ) from None
        raise ValueError(f"{raw!r} is not an IP address or CIDR network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        prefix = network.prefixlen - 96
        if prefix < 0:
            raise ValueError(f"{raw!r} covers more than the IPv4-mapped range")
        network = ipaddress.IPv4Network(f"{mapped}/{prefix}")
    minimum = min_prefix_v4 if network.version == 4 else min_prefix_v6
    if network.prefixlen < minimum:
        raise ValueError(
            f"{raw!r} is too broad: IPv{network.version} networks must be /{minimum} or narrower"
        )
    if network.is_unspecified or network.network_address.is_multicast:
        raise ValueError(f"{raw!r} is not a host or network a server can send from")
    return Registration(network)


def split_nameserver(text: str) -> tuple[str, int]:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``2001:db8::1``, ``[2001:db8::1]:5353``."""
    if text.startswith("["):
        address, _, port = text[1:].partition("]:")
        return str(ipaddress.ip_address(address.rstrip("]"))), int(port or 53)
    if text.count(":") == 1:
        address, port = text.split(":")
        return str(ipaddress.ip_address(address)), int(port)
    return str(ipaddress.ip_address(text)), 53


def split_host_port(text: str) -> tuple[str, str]:
    """The host (brackets dropped) and the port text of HOST:PORT, neither checked.

    The port is what follows the *last* colon, so ``[2001:db8::1]:783`` and
    also an unbracketed ``2001:db8::1:783`` give the host ``2001:db8::1``.
    """
    host, _, port = text.rpartition(":")
    return host.strip("[]"), port


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); ValueError says what is wrong."""
    host, port = split_host_port(text)
    if ":" not in text or not port or text.endswith("]"):
        raise ValueError(f"{text!r} has no :PORT")
    if not host:
        raise ValueError(f"{text!r} has no host before the port")
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)
