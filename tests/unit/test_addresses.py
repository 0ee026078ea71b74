"""Client normalisation and what the CLI lets anyone register."""

from __future__ import annotations

import ipaddress

import pytest

from osfmilter.addresses import address_key, normalize_client, parse_registration


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
