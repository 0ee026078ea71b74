"""TXT lookups against a DNS server on loopback: records, none, and a server that is silent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from osfmilter.dnstxt import TxtAnswer, lookup_txt
from osfmilter.spf.checker import resolver_for
from tests.harness.dnsserver import DnsServer

ZONE = """
example.test. 300 IN SOA ns.example.test. host.example.test. 1 3600 600 86400 60
_osfmilter.example.test. 300 IN TXT "osfmilter-verification=abc"
_osfmilter.example.test. 300 IN TXT "other"
long._domainkey.example.test. 300 IN TXT "v=DKIM1; k=rsa; " "p=AAAA"
a.example.test. 300 IN A 192.0.2.1
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE, silent={"silent.test"}) as server:
        yield server


def lookup(dns: DnsServer, name: str, timeout: float = 2.0) -> TxtAnswer:
    return lookup_txt(resolver_for([dns.nameserver], timeout), name)


def test_every_record_is_returned(dns: DnsServer) -> None:
    answer = lookup(dns, "_osfmilter.example.test")
    assert answer.answered
    assert sorted(answer.records) == ["osfmilter-verification=abc", "other"]


def test_the_strings_of_one_record_are_joined(dns: DnsServer) -> None:
    assert lookup(dns, "long._domainkey.example.test").records == ("v=DKIM1; k=rsa; p=AAAA",)


@pytest.mark.parametrize("name", ["a.example.test", "missing.example.test"])
def test_no_record_and_no_name_are_answers_without_records(dns: DnsServer, name: str) -> None:
    answer = lookup(dns, name)
    assert answer.answered and answer.records == ()


def test_a_silent_server_is_a_problem_not_an_empty_answer(dns: DnsServer) -> None:
    answer = lookup(dns, "x.silent.test", timeout=0.3)
    assert not answer.answered
    assert "x.silent.test" in answer.problem
