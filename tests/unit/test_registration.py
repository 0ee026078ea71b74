"""The registration rules without a database: names, logins, domains, the inbound
CSV, and that only wholly globally routable unicast networks may be registered."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osfmilter.addresses import IPNetwork
from osfmilter.errors import UsageError
from osfmilter.registration import (
    InboundRow,
    check_customer_name,
    check_plan,
    non_global_reason,
    normalize_domain,
    normalize_email,
    normalize_login,
    parse_inbound_csv,
)


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("example.com", "example.com"),
        (" Example.COM. ", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("a-b.c-d.example", "a-b.c-d.example"),
    ],
)
def test_a_domain_is_stored_lower_case_in_a_labels(text: str, domain: str) -> None:
    assert normalize_domain(text) == domain


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example", "'example' is not a valid domain name"),
        ("exa mple.com", "'exa mple.com' is not a valid domain name"),
        ("-bad.example", "'-bad.example' is not a valid domain name"),
        ("bad-.example", "'bad-.example' is not a valid domain name"),
        ("a..example", "'a..example' is not a valid domain name"),
        (f"{'a' * 64}.example", "is not a valid domain name"),
        (".".join(["abcdefghi"] * 26), "is not a valid domain name"),  # 259 characters
        ("192.0.2.1", "'192.0.2.1' is an address, not a domain name"),
    ],
)
def test_a_bad_domain_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        normalize_domain(text)


@pytest.mark.parametrize("name", ["acme", "Acme.Corp", "a", "ops@acme+eu_1-2", "9" * 100])
def test_a_customer_name(name: str) -> None:
    assert check_customer_name(name) == name


@pytest.mark.parametrize("name", ["", "bad name!", "-acme", ".acme", "a" * 101, "acmé"])
def test_a_bad_customer_name_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid customer name"):
        check_customer_name(name)


def test_a_plan_is_free_or_paid() -> None:
    assert [check_plan(p) for p in ("free", "paid")] == ["free", "paid"]
    with pytest.raises(UsageError, match=r"^unknown plan 'gold' \(free or paid\)$"):
        check_plan("gold")


def test_a_sasl_login_loses_surrounding_space_only() -> None:
    assert normalize_login("  user@example.com\t") == "user@example.com"
    assert normalize_login("ü" * 255) == "ü" * 255


@pytest.mark.parametrize(
    "login",
    [
        "",
        "   ",
        "two words",
        "tab\there",
        "nul\x00",
        "x" * 256,
        # Invisible or reordering characters: a login that looks like another.
        "shop\u202e@example.com",  # right-to-left override
        "sh\u200bop@example.com",  # zero-width space
        "shop\u2028@example.com",  # line separator
        "shop\x85@example.com",  # next line (C1)
        "shop\x9b@example.com",  # control sequence introducer (C1)
        "shop\u00a0@example.com",  # no-break space
    ],
)
def test_a_bad_sasl_login_is_refused(login: str) -> None:
    with pytest.raises(UsageError, match="is not a valid SASL login"):
        normalize_login(login)


def test_inbound_csv_rows_with_or_without_a_header() -> None:
    lines = ["domain,month,bytes\n", "Example.COM,2026-11, 1000\n", "\n", "b.example,2026-12,0\n"]
    assert parse_inbound_csv(lines) == [
        InboundRow(2, "example.com", "2026-11", 1000),
        InboundRow(4, "b.example", "2026-12", 0),
    ]
    assert parse_inbound_csv(["example.com,2026-11,5"]) == [
        InboundRow(1, "example.com", "2026-11", 5)
    ]


def test_every_bad_inbound_row_is_named_at_once() -> None:
    lines = [
        "example.com,2026-11\n",
        "bad,2026-11,1\n",
        "example.com,2026-13,1\n",
        "example.com,2026-11,-5\n",
        "example.com,2026-11,7\n",
    ]
    with pytest.raises(UsageError) as refused:
        parse_inbound_csv(lines)
    assert str(refused.value) == (
        "line 1: expected domain,month,bytes, got 2 fields; "
        "line 2: 'bad' is not a valid domain name; "
        "line 3: '2026-13' is not a month (YYYY-MM); "
        "line 4: '-5' is not a whole number of bytes; nothing imported"
    )


def test_inbound_bytes_are_ascii_digits_a_bigint_holds() -> None:
    lines = [
        "example.com,2026-11,\u00b2\n",
        "example.com,2026-11,\u0661\u0662\n",
        f"example.com,2026-11,{2**63}\n",
        f"example.com,2026-11,{'9' * 5000}\n",
        f"example.com,2026-11,{2**63 - 1}\n",
    ]
    with pytest.raises(UsageError) as refused:
        parse_inbound_csv(lines)
    assert str(refused.value) == (
        "line 1: '\u00b2' is not a whole number of bytes; "
        "line 2: '\u0661\u0662' is not a whole number of bytes; "
        f"line 3: '{2**63}' is more than {2**63 - 1} bytes; "
        f"line 4: '{'9' * 30}' is more than {2**63 - 1} bytes; nothing imported"
    )


def test_inbound_line_numbers_count_the_lines_a_quoted_field_spans() -> None:
    lines = ['"example.com",2026-11,"1\n', '2"\n', "bad,2026-11,1\n"]
    with pytest.raises(
        UsageError, match=r"^line 2: '1\\n2' is not a whole number.*; line 3: 'bad'"
    ):
        parse_inbound_csv(lines)


def test_a_field_over_the_csv_limit_names_the_file_and_line() -> None:
    lines = ["example.com,2026-11,1\n", f"example.com,2026-11,{'9' * 200_000}\n"]
    with pytest.raises(UsageError) as refused:
        parse_inbound_csv(lines, "volume.csv")
    assert str(refused.value) == (
        "volume.csv, line 2: field larger than field limit (131072); nothing imported"
    )


def net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


@pytest.mark.parametrize(
    ("network", "words"),
    [
        # The registrations the review found accepted.
        ("10.0.0.0/16", "10.0.0.0/16 is private-use (RFC 1918): its addresses are not unique"),
        ("100.64.0.0/16", "is carrier-grade NAT shared space (RFC 6598)"),
        ("169.254.0.0/16", "is link-local (RFC 3927)"),
        ("127.0.0.0/16", "is loopback (RFC 1122)"),
        ("172.17.0.1/32", "172.17.0.1/32 is private-use (RFC 1918)"),
        ("fe80::/64", "is link-local (RFC 4291)"),
        ("255.255.255.255/32", "is limited broadcast (RFC 919): no server sends from it"),
        (
            "64:ff9b::/96",
            "is the NAT64 well-known prefix (RFC 6052): its addresses stand for other hosts",
        ),
        # The other translation prefixes.
        ("64:ff9b:1::/48", "is local-use NAT64 (RFC 8215): its addresses stand for other"),
        ("2002::/16", "is 6to4 (RFC 3056)"),
        ("2002:c000:204::/48", "is 6to4 (RFC 3056)"),
        ("192.88.99.1/32", "is 6to4 relay anycast (RFC 7526)"),
        ("2001:0:4136:e378::/64", "is Teredo (RFC 4380)"),
        ("::ffff:0:0/96", "is IPv4-mapped"),
        # Every other kind of block.
        ("0.0.0.0/8", '"this network"'),
        ("192.168.1.0/24", "is private-use (RFC 1918)"),
        ("172.31.255.255/32", "is private-use (RFC 1918)"),
        ("192.0.0.0/24", "is IETF protocol assignments"),
        ("192.0.2.0/24", "is TEST-NET-1 (RFC 5737): it is reserved for documentation"),
        ("198.51.100.7/32", "is TEST-NET-2"),
        ("203.0.113.0/28", "is TEST-NET-3"),
        ("198.19.0.0/16", "is benchmarking (RFC 2544)"),
        ("224.0.0.1/32", "is multicast (RFC 5771)"),
        ("240.0.0.0/16", "is reserved (RFC 1112)"),
        ("::/128", "is the unspecified address"),
        ("::1/128", "is loopback (RFC 4291)"),
        ("100::/64", "is discard-only (RFC 6666)"),
        ("2001:db8::/32", "is documentation (RFC 3849)"),
        ("2001:db8:1::/48", "is documentation (RFC 3849)"),
        ("2001:2::/48", "is IETF protocol assignments (RFC 2928)"),
        ("3fff::/20", "is documentation (RFC 9637)"),
        ("fd00:1234::/48", "is unique-local (RFC 4193)"),
        ("ff02::1/128", "is multicast (RFC 4291)"),
        ("4000::/48", "is outside the global unicast space 2000::/3"),
        # Partly global, partly not: refused, naming the part that is not.
        ("172.0.0.0/8", "172.0.0.0/8 includes 172.16.0.0/12 (private-use (RFC 1918))"),
        ("203.0.0.0/16", "includes 203.0.113.0/24 (TEST-NET-3 (RFC 5737))"),
        ("198.0.0.0/8", "includes 198.18.0.0/15 (benchmarking (RFC 2544))"),
        ("192.0.0.0/16", "includes 192.0.0.0/24"),
        ("2001::/16", "includes 2001::/32 (Teredo (RFC 4380))"),
        ("2000::/3", "includes 2001::/32"),
        ("::/0", "includes ::/128"),
        ("0.0.0.0/0", "includes 0.0.0.0/8"),
    ],
)
def test_a_network_not_wholly_global_is_refused_saying_why(network: str, words: str) -> None:
    reason = non_global_reason(net(network))
    assert reason is not None
    assert words in reason
    assert reason.startswith(net(network).with_prefixlen) and "\n" not in reason


@pytest.mark.parametrize(
    "network",
    [
        "8.8.8.0/24",
        "1.1.1.1/32",
        "193.0.0.0/16",
        "172.32.0.0/16",
        "100.128.0.0/16",
        "2a00:1450:4001::/48",
        "2001:4860:4860::8888/128",
        "2001:200::/32",
        "2003::/16",
        "2c0f:f248::/32",
    ],
)
def test_an_ordinary_global_network_is_allowed(network: str) -> None:
    assert non_global_reason(net(network)) is None


ipv4 = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
ipv6 = st.builds(
    lambda a, p: ipaddress.IPv6Network((a, p), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(st.one_of(ipv4, ipv6))
def test_whatever_python_calls_not_global_is_refused(network: IPNetwork) -> None:
    ends = (network, network.network_address, network.broadcast_address)
    if not all(part.is_global for part in ends):
        assert non_global_reason(network) is not None


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: not strasse.de, as IDNA 2003 had it
        ("ςa.example", "xn--a-xmb.example"),
        ("Bücher.Example.", "xn--bcher-kva.example"),
        ("Example.COM", "example.com"),
    ],
)
def test_a_domain_is_stored_in_the_a_labels_receivers_use(text: str, stored: str) -> None:
    assert normalize_domain(text) == stored


@pytest.mark.parametrize("text", ["a\u200db.example", "xn--zz.example\u0000", "a..example"])
def test_a_name_idna_2008_refuses_is_no_domain(text: str) -> None:
    with pytest.raises(UsageError, match="not a valid domain name"):
        normalize_domain(text)


@pytest.mark.parametrize(
    ("text", "email"),
    [
        ("bob@example.com", "bob@example.com"),
        (" Bob.Smith+portal@Example.COM. ", "bob.smith+portal@example.com"),
        ("ann@straße.de", "ann@xn--strae-oqa.de"),
    ],
)
def test_an_email_is_stored_lower_case_with_its_domain_in_a_labels(text: str, email: str) -> None:
    assert normalize_email(text) == email


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bob",
        "@example.com",
        "bob@",
        "bob@localhost",
        "bob@192.0.2.1",
        "b ob@example.com",
        ".bob@example.com",
        "bob.@example.com",
        "b..ob@example.com",
        '"bob"@example.com',
        "bob@exa mple.com",
        "x" * 65 + "@example.com",
        "bob@" + "a" * 250 + ".com",
    ],
)
def test_what_is_not_an_email_address_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match=r"e-mail address"):
        normalize_email(text)
