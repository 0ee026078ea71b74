"""SPF against a real DNS server on loopback: every result, the cache, the answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osfmilter.addresses import split_nameserver
from osfmilter.cli import main
from osfmilter.config import Config
from osfmilter.spf.advisor import Advice, advise, render_json, render_text
from osfmilter.spf.checker import SpfChecker, resolver_for
from tests.harness.dnsserver import DnsServer
from tests.harness.spfzone import (
    EMPTY_LABEL,
    INCLUDE,
    LABEL_64,
    NAME_OVER_253,
    NEGATIVE_TTL,
    RELAY_V4,
    RELAY_V6,
    SILENT,
    SPLIT_MACRO_FIRST,
    ZONE,
)


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE, silent=SILENT) as server:
        yield server


SPF = Config().spf


def checker(
    dns: DnsServer,
    ips: tuple[str, ...] = (RELAY_V4,),
    timeout: float = 2.0,
    cache_size: int = SPF.cache_size,
) -> SpfChecker:
    resolver = resolver_for([dns.nameserver], timeout)
    return SpfChecker(ips, resolver, timeout, cache_size, SPF.cache_max_ttl)


@pytest.mark.parametrize(
    ("sender", "result"),
    [
        ("news@pass.example", "pass"),
        ("news@fail.example", "fail"),
        ("news@soft.example", "softfail"),
        ("news@neutral.example", "neutral"),
        ("news@nospf.example", "none"),
        ("news@toomany.example", "permerror"),
        ("news@multi.example", "pass"),  # a TXT record in several strings
        ("alice@macro.example", "pass"),
        ("bob@macro.example", "fail"),
    ],
)
def test_results(dns: DnsServer, sender: str, result: str) -> None:
    assert checker(dns).check(sender, "mx.customer.example").result == result


def test_null_sender_is_checked_for_the_helo_domain(dns: DnsServer) -> None:
    outcome = checker(dns).check("", "helo.example")
    assert (outcome.domain, outcome.result) == ("helo.example", "pass")


def test_every_outbound_ip_must_pass_and_the_worst_is_reported(dns: DnsServer) -> None:
    both = checker(dns, (RELAY_V4, RELAY_V6))
    assert both.check("a@pass.example", "h").result == "pass"
    outcome = both.check("a@split.example", "h")  # authorizes only the IPv4 address
    assert (outcome.result, outcome.failing_ip) == ("fail", RELAY_V6)
    assert checker(dns, (RELAY_V6,)).check("a@v6only.example", "h").result == "pass"


def test_unanswered_dns_is_temperror_within_the_timeout(dns: DnsServer) -> None:
    started = time.monotonic()
    outcome = checker(dns, (RELAY_V4, RELAY_V6), timeout=1.0).check("a@silent.example", "h")
    assert outcome.result == "temperror"
    assert time.monotonic() - started < 1.0 + 1.5  # one budget for all IPs and lookups


def test_one_dns_query_per_ttl_for_many_messages(dns: DnsServer) -> None:
    spf = checker(dns, (RELAY_V4, RELAY_V6))
    before = dns.count("pass.example")
    for _ in range(50):
        assert spf.check("news@pass.example", "h").result == "pass"
    assert dns.count("pass.example") - before == 1


def test_sender_dependent_macros_are_not_cached_across_local_parts(dns: DnsServer) -> None:
    spf = checker(dns)
    results = [spf.check(f"{who}@macro.example", "h").result for who in ("alice", "bob") * 3]
    assert results == ["pass", "fail"] * 3


_NOT_DOMAINS = [
    LABEL_64,
    NAME_OVER_253,
    EMPTY_LABEL,
    ".example",
    "localhost",
    "",
    "a\\.b.example",
    "\u2028.example",
]


@pytest.mark.parametrize(
    "domain",
    _NOT_DOMAINS,
    ids=[
        "label-64",
        "name-over-253",
        "empty-label",
        "leading-dot",
        "single-label",
        "no-domain",
        "backslash",
        "idna-fails",
    ],
)
def test_a_domain_that_cannot_be_a_dns_name_is_none_without_a_lookup(
    dns: DnsServer, domain: str
) -> None:
    """RFC 7208 section 4.3: check_host() returns "none" at once for a malformed domain."""
    before = sum(dns.queries.values())
    outcome = checker(dns, (RELAY_V4, RELAY_V6)).check(f"news@{domain}", "h")
    assert (outcome.domain, outcome.result) == (domain.lower(), "none")
    assert [result for _, result, _ in outcome.per_ip] == ["none", "none"]
    assert "is not a domain SPF can look up" in outcome.explanation
    assert sum(dns.queries.values()) == before


@pytest.mark.parametrize(
    "local",
    ["a." * 130 + "x", "\u2028", "x" * 64, "a..b"],
    ids=["name-over-253", "idna-fails", "label-64", "empty-label"],
)
def test_a_macro_that_expands_to_no_dns_name_matches_nothing(dns: DnsServer, local: str) -> None:
    """%{l}.allow.macro.example with such a local part names nothing: exists: does not match."""
    assert checker(dns).check(f"{local}@macro.example", "h").result == "fail"


@pytest.mark.parametrize("local", ['"x@y"', '"x@pass.example"', '"@"', '"a@b"@"c'])
def test_a_local_part_with_an_at_sign_is_evaluated_for_the_domain_after_the_last(
    dns: DnsServer, local: str
) -> None:
    """pyspf splits at the first '@': it looked up 'y"@fail.example', found nothing,
    and "none" was cached for fail.example for an hour."""
    spf = checker(dns)
    outcome = spf.check(f"{local}@fail.example", "h")
    assert (outcome.domain, outcome.result) == ("fail.example", "fail")
    assert spf.check("news@fail.example", "h").result == "fail"
    assert spf.check(f"{local}@pass.example", "h").result == "pass"


def test_a_local_part_with_an_at_sign_is_the_local_part_macros_see(dns: DnsServer) -> None:
    # %{l} is '"alice@x"': no such name, so exists: does not match.
    assert checker(dns).check('"alice@x"@macro.example', "h").result == "fail"


def test_a_macro_split_across_txt_strings_is_sender_dependent(dns: DnsServer) -> None:
    """The first string ends in '%', the second starts with '{l}': SPF joins them."""
    assert SPLIT_MACRO_FIRST.endswith("%") and len(SPLIT_MACRO_FIRST) == 255
    spf = checker(dns)
    results = [spf.check(f"{who}@splitmacro.example", "h").result for who in ("alice", "bob") * 2]
    assert results == ["pass", "fail"] * 2


@pytest.mark.parametrize(
    "domain", ["gone.neg.example", "nodata.neg.example"], ids=["nxdomain", "no-txt-record"]
)
def test_no_record_is_cached_for_the_negative_ttl(dns: DnsServer, domain: str) -> None:
    """The SOA MINIMUM of the negative answer (RFC 2308), not [spf] cache_max_ttl."""
    spf = checker(dns)
    before = dns.count(domain)
    assert [spf.check(f"a@{domain}", "h").result for _ in range(3)] == ["none"] * 3
    assert dns.count(domain) - before == 1
    time.sleep(NEGATIVE_TTL + 0.3)
    assert spf.check(f"a@{domain}", "h").result == "none"
    assert dns.count(domain) - before == 2


def test_cache_is_bounded(dns: DnsServer) -> None:
    spf = checker(dns, timeout=2, cache_size=2)
    for domain in ("pass.example", "fail.example", "soft.example", "neutral.example"):
        spf.check(f"a@{domain}", "h")
    assert len(spf._cache) == 2


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
    ],
)
def test_nameserver_syntax(text: str, parsed: tuple[str, int]) -> None:
    assert split_nameserver(text) == parsed


# What each result answers: tests/unit/policy/test_spf.py


# The advisor --------------------------------------------------------------------------


def advice_for(dns: DnsServer, domain: str) -> Advice:
    return advise(domain, checker(dns, (RELAY_V4, RELAY_V6)), INCLUDE)


def test_advisor_on_a_passing_domain(dns: DnsServer) -> None:
    advice = advice_for(dns, "pass.example")
    assert advice.passes and advice.lookups == 1
    assert advice.relay == ((RELAY_V4, "pass"), (RELAY_V6, "pass"))
    text = render_text(advice)
    assert f"record:   v=spf1 include:{INCLUDE} -all" in text
    assert "lookups:  1 of 10 (OK)" in text
    assert f"  strict: v=spf1 include:{INCLUDE} -all" in text
    assert f"  loose:  v=spf1 include:{INCLUDE} ~all" in text
    assert "NOT authorized" not in text


def test_advisor_on_a_failing_domain_tells_what_to_publish(dns: DnsServer) -> None:
    advice = advice_for(dns, "fail.example")
    assert not advice.passes and advice.relay[0] == (RELAY_V4, "fail")
    assert "=> the relay is NOT authorized" in render_text(advice)


def test_advisor_during_a_dns_outage_says_to_try_again(dns: DnsServer) -> None:
    advice = advise("silent.example", checker(dns, (RELAY_V4,), timeout=0.5), INCLUDE)
    assert not advice.passes and advice.unanswered
    assert advice.relay == ((RELAY_V4, "temperror"),)
    text = render_text(advice)
    assert "NOT authorized" not in text
    assert text.endswith(
        "=> DNS could not answer (temperror): whether the relay is authorized "
        "is not known; try again later"
    )


def test_advisor_counts_lookups_through_the_include_tree(dns: DnsServer) -> None:
    advice = advice_for(dns, "toomany.example")
    assert advice.lookups == 11
    assert [child.domain for child in advice.tree.children] == [
        f"l{i}.toomany.example" for i in range(11)
    ]
    assert "lookups:  11 of 10 (TOO MANY" in render_text(advice)
    assert advice.relay[0] == (RELAY_V4, "permerror")


def test_advisor_json(dns: DnsServer) -> None:
    data = json.loads(render_json(advice_for(dns, "nospf.example")))
    assert data["record"] == "" and data["passes"] is False and data["lookups"] == 0
    assert data["relay"] == [{"ip": RELAY_V4, "result": "none"}, {"ip": RELAY_V6, "result": "none"}]
    assert data["strict"] == f"v=spf1 include:{INCLUDE} -all"
    assert data["tree"]["problem"] == "no SPF record"


def test_spf_check_command(
    dns: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(
        f'[spf]\noutbound_ips = ["{RELAY_V4}"]\ninclude = "{INCLUDE}"\n'
        f'nameservers = ["{dns.nameserver}"]\n'
    )
    assert main(["--config", str(config), "spf", "check", "pass.example"]) == 0
    assert f"relay {RELAY_V4}: pass" in capsys.readouterr().out
    assert main(["--config", str(config), "spf", "check", "fail.example", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["relay"] == [{"ip": RELAY_V4, "result": "fail"}]
    assert main(["--config", str(config), "spf", "check", "not a domain"]) == 2
    assert "not a valid domain" in capsys.readouterr().err


def test_spf_check_during_a_dns_outage_is_status_1_and_says_so(
    dns: DnsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(
        f'[spf]\noutbound_ips = ["{RELAY_V4}"]\ninclude = "{INCLUDE}"\n'
        f'nameservers = ["{dns.nameserver}"]\ntimeout = 0.5\n'
    )
    assert main(["--config", str(config), "spf", "check", "silent.example"]) == 1
    out = capsys.readouterr().out
    assert "DNS could not answer" in out and "NOT authorized" not in out
    assert main(["--config", str(config), "spf", "check", "silent.example", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["relay"] == [{"ip": RELAY_V4, "result": "temperror"}] and data["passes"] is False
