"""The pure rules of domain verification, and the domain check's parts against loopback DNS."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from osfmilter.domains.advisor import DomainCheck, Part, dmarc_part, render_json, render_text
from osfmilter.domains.rules import (
    judge,
    new_token,
    parents,
    record_name,
    record_value,
)
from osfmilter.spf.checker import resolver_for
from tests.harness.dnsserver import DnsServer

TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105  # a test token


def test_a_token_is_128_random_bits_in_lower_case_hex() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", token) for token in tokens)


def test_the_record_to_publish() -> None:
    assert record_name("example.com") == "_osfmilter.example.com"
    assert record_value(TOKEN) == f"osfmilter-verification={TOKEN}"


@pytest.mark.parametrize(
    ("records", "verified", "line"),
    [
        ((f"osfmilter-verification={TOKEN}",), True, "holds the verification token"),
        (("v=spf1 -all", f" osfmilter-verification={TOKEN} "), True, "holds the verification"),
        (("osfmilter-verification=other",), False, "another token: 'osfmilter-verification=ot"),
        (("v=spf1 -all",), False, "has TXT records, but no osfmilter-verification=... record"),
        ((), False, "no TXT record at _osfmilter.example.com"),
        # The token is hex: its case, and the prefix's, carry nothing.
        ((f"OSFMILTER-VERIFICATION={TOKEN.upper()}",), True, "holds the verification token"),
    ],
)
def test_what_a_txt_answer_proves(records: tuple[str, ...], verified: bool, line: str) -> None:
    finding = judge("example.com", TOKEN, records)
    assert finding.verified is verified and line in finding.line


def test_parents_stop_before_the_top_level_domain() -> None:
    assert parents("x.sub.b.example") == ["sub.b.example", "b.example"]
    assert parents("b.example") == []


def part(key: str, ok: bool | None) -> Part:
    return Part(key, key.upper(), ok, (f"{key} line",), {"key": key})


def test_a_check_passes_when_no_part_fails_advice_only_parts_aside() -> None:
    assert DomainCheck("d.example", (part("spf", True), part("dmarc", None))).passes
    failing = DomainCheck("d.example", (part("spf", True), part("verification", False)))
    assert not failing.passes
    assert render_text(failing).endswith("=> not ready: VERIFICATION")
    assert "VERIFICATION (NOT OK)\n  verification line" in render_text(failing)
    assert json.loads(render_json(failing)) == {
        "domain": "d.example",
        "passes": False,
        "spf": {"key": "spf"},
        "verification": {"key": "verification"},
    }


ZONE = """
one.example. 300 IN TXT "v=spf1 -all"
_dmarc.one.example. 300 IN TXT "v=DMARC1; p=quarantine"
_dmarc.two.example. 300 IN TXT "v=DMARC1; p=none"
_dmarc.two.example. 300 IN TXT "v=DMARC1; p=reject"
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE, silent={"silent.example"}) as server:
        yield server


@pytest.mark.parametrize(
    ("domain", "line"),
    [
        ("one.example", "record:   v=DMARC1; p=quarantine"),
        ("two.example", "2 DMARC records at _dmarc.two.example: receivers use none"),
        ("none.example", 'TXT "v=DMARC1; p=none; rua=mailto:postmaster@none.example"'),
        ("silent.example", "DNS problem: DNS timed out looking up _dmarc.silent.example"),
    ],
)
def test_the_dmarc_part(dns: DnsServer, domain: str, line: str) -> None:
    found = dmarc_part(resolver_for([dns.nameserver], 0.3), domain)
    assert found.ok is None and any(line in shown for shown in found.lines), found.lines
    assert f"DKIM signing with d={domain}" in found.lines[-1]
