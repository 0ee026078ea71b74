"""check_published against a DNS server on loopback: matches, missing, different, no answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from osfmilter.dkim.keys import generate, record_text
from osfmilter.dkim.published import Published, check_published, record_name
from osfmilter.dkim.signer import Algorithm
from osfmilter.spf.checker import resolver_for
from tests.harness.dnsserver import DnsServer

RSA = generate("rsa-sha256").public_key
ED = generate("ed25519-sha256").public_key
OTHER = generate("ed25519-sha256").public_key


def quoted(text: str) -> str:
    """A TXT record as zone text, in strings of at most 255 characters."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


ZONE = f"""
example.test. 300 IN SOA ns.example.test. host.example.test. 1 3600 600 86400 60
rsa._domainkey.example.test. 300 IN TXT {quoted(record_text("rsa-sha256", RSA))}
ed._domainkey.example.test. 300 IN TXT "v=DKIM1;k=ed25519;" " p={ED[:20]} {ED[20:]}"
other._domainkey.example.test. 300 IN TXT "{record_text("ed25519-sha256", OTHER)}"
revoked._domainkey.example.test. 300 IN TXT "v=DKIM1; k=ed25519; p="
nop._domainkey.example.test. 300 IN TXT "v=DKIM1; k=ed25519"
two._domainkey.example.test. 300 IN TXT "{record_text("ed25519-sha256", ED)}"
two._domainkey.example.test. 300 IN TXT "{record_text("ed25519-sha256", OTHER)}"
junk._domainkey.example.test. 300 IN TXT "hello world"
v2._domainkey.example.test. 300 IN TXT "v=DKIM2; p={ED}"
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE, silent={"silent.test"}) as server:
        yield server


def check(dns: DnsServer, selector: str, public_key: str, domain: str = "example.test"):
    algorithm: Algorithm = "rsa-sha256" if public_key == RSA else "ed25519-sha256"
    resolver = resolver_for([dns.nameserver], 0.5)
    return check_published(domain, selector, algorithm, public_key, resolver)


def test_record_name() -> None:
    assert record_name("example.com", "osf202612") == "osf202612._domainkey.example.com"


@pytest.mark.parametrize(("selector", "key"), [("rsa", RSA), ("ed", ED)])
def test_the_published_key_matches(dns: DnsServer, selector: str, key: str) -> None:
    result = check(dns, selector, key)
    assert result.matches and result.state is Published.MATCHES
    assert result.summary == f"{selector}._domainkey.example.test publishes the key"


def test_a_missing_record(dns: DnsServer) -> None:
    result = check(dns, "absent", ED)
    assert result.state is Published.MISSING and not result.matches
    assert result.summary == "no TXT record at absent._domainkey.example.test"


@pytest.mark.parametrize(
    ("selector", "key", "summary"),
    [
        ("other", ED, "publishes another key (p="),
        ("ed", RSA, "the record has k=ed25519, the key is k=rsa"),
        ("revoked", ED, "empty p= (the key is revoked)"),
        ("nop", ED, "has no p="),
        ("two", ED, "2 TXT records at two._domainkey.example.test; publish exactly one"),
        ("junk", ED, "is not a DKIM record"),
        ("v2", ED, "v=DKIM2, not v=DKIM1"),
    ],
)
def test_a_different_record(dns: DnsServer, selector: str, key: str, summary: str) -> None:
    result = check(dns, selector, key)
    assert result.state is Published.DIFFERENT and not result.matches
    assert summary in result.summary and "\n" not in result.summary


def test_dns_that_does_not_answer_is_a_problem(dns: DnsServer) -> None:
    result = check(dns, "s1", ED, domain="silent.test")
    assert result.state is Published.DNS_PROBLEM and not result.matches
    assert "s1._domainkey.silent.test" in result.summary
