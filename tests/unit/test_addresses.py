"""Client normalisation and what the CLI lets anyone register."""

from __future__ import annotations

import ipaddress

import pytest

from osfmilter.addresses import (
    address_key,
    normalize_client,
    parse_host_port,
    parse_registration,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("IPv6:2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        # NAT64 and 6to4 are other hosts, not the embedded IPv4 address.
        ("64:ff9b::c000:201", "64:ff9b::c000:201"),
        ("2002:c000:0201::1", "2002:c000:201::1"),
        ("not-an-ip", None),
        ("", None),
    ],
)
def test_normalize_client(text: str, expected: str | None) -> None:
    result = normalize_client(text)
    assert (str(result) if result else None) == expected


def test_keys_order_like_addresses() -> None:
    addresses = [ipaddress.ip_address(f"10.0.{i}.{j}") for i in (0, 1, 255) for j in (0, 9, 10)]
    assert sorted(addresses, key=address_key) == sorted(addresses)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.7", "192.0.2.7/32"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("2001:db8::/64", "2001:db8::/64"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
        ("::ffff:192.0.2.9", "192.0.2.9/32"),
    ],
)
def test_registrations(text: str, expected: str) -> None:
    assert parse_registration(text, 16, 48).text == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.0.0.0/0", "too broad"),
        ("::/0", "too broad"),
        ("10.0.0.0/8", "too broad"),
        ("2001:db8::/32", "too broad"),
        ("192.0.2.5/24", "host bits"),
        ("0.0.0.0", "not a host"),
        ("224.0.0.1", "not a host"),
        ("fe80::1%eth0", "zone"),
        ("example.com", "not an IP"),
        ("192.0.2.0/33", "not an IP"),
    ],
)
def test_refused_registrations(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_registration(text, 16, 48)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:3310", ("127.0.0.1", 3310)),
        ("[2001:db8::1]:783", ("2001:db8::1", 783)),
        ("[::1]:65535", ("::1", 65535)),
        ("clamd.internal:3310", ("clamd.internal", 3310)),
        ("localhost:1", ("localhost", 1)),
        # The port follows the last colon, so an unbracketed IPv6 host is read whole.
        ("2001:db8::1:783", ("2001:db8::1", 783)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("clamd.internal", "has no :PORT"),
        ("127.0.0.1", "has no :PORT"),
        ("clamd:", "has no :PORT"),
        ("[2001:db8::1]", "has no :PORT"),
        ("", "has no :PORT"),
        (":3310", "has no host"),
        ("[]:3310", "has no host"),
        ("clamd:0", "port must be a number from 1 to 65535"),
        ("clamd:65536", "port must be a number from 1 to 65535"),
        ("clamd:x", "port must be a number from 1 to 65535"),
        ("clamd:-1", "port must be a number from 1 to 65535"),
        ("clamd: 3310", "port must be a number from 1 to 65535"),
        ("clamd:\u00b3", "port must be a number from 1 to 65535"),  # a digit int() refuses
    ],
)
def test_refused_host_port(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_host_port(text)
