"""``osfmilter domain``: pending and verified domains, one customer per domain, the check.

DNS is a server on loopback whose zone a test changes as a customer would
publish a record. Both backends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from osfmilter.domains.rules import record_value
from osfmilter.errors import UsageError
from osfmilter.storage import admin, domains
from osfmilter.storage.domains import add_domain
from osfmilter.storage.schema import Customer
from osfmilter.storage.store import SqlStore
from tests.db.conftest import REGISTERED_AT, Run
from tests.harness.dnsserver import DnsServer
from tests.harness.spfzone import INCLUDE, RELAY_V4, SILENT
from tests.harness.spfzone import ZONE as SPF_ZONE

PUBLISHED = re.compile(r'^  _osfmilter\.(\S+)\. TXT "osfmilter-verification=([0-9a-f]{32})"$', re.M)


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer(SPF_ZONE, silent=SILENT) as server:
        yield server


@pytest.fixture
def osf(run: Run, dns: DnsServer) -> Run:
    """The CLI with SPF and the verification lookups asking the loopback server."""
    settings = (
        f'[spf]\noutbound_ips = ["{RELAY_V4}"]\ninclude = "{INCLUDE}"\n'
        f'nameservers = ["{dns.nameserver}"]\ntimeout = 0.5\n'
    )

    def osf(*args: str) -> tuple[int, str, str]:
        return run(*args, config_text=settings)

    for customer in ("acme", "other"):
        assert osf("customer", "add", customer)[0] == 0
    return osf


def add_pending(osf: Run, domain: str, customer: str = "acme") -> str:
    """Add a pending domain; its token, from the record the command says to publish."""
    status, out, _ = osf("domain", "add", domain, "--customer", customer, "--pending")
    assert status == 0, out
    published = PUBLISHED.search(out)
    assert published is not None, out
    assert published[1] == domain and f"osfmilter domain verify {domain}" in out
    return published[2]


def shown(osf: Run, domain: str) -> dict[str, object]:
    status, out, _ = osf("domain", "show", domain, "--json")
    assert status == 0
    document: dict[str, object] = json.loads(out)
    return document


def record(domain: str, value: str) -> str:
    return f'_osfmilter.{domain}. 300 IN TXT "{value}"\n'


def test_a_pending_domain_is_verified_once_its_record_is_published(
    osf: Run, dns: DnsServer
) -> None:
    token = add_pending(osf, "pass.example")
    assert "pass.example  acme      pending" in osf("domain", "list")[1]

    status, out, err = osf("domain", "verify", "pass.example")
    assert (status, err) == (1, "")
    assert out == "domain pass.example not verified yet: no TXT record at _osfmilter.pass.example\n"
    assert shown(osf, "pass.example")["state"] == "pending"

    dns.serve(SPF_ZONE + record("pass.example", record_value(token)))
    status, out, _ = osf("domain", "verify", "pass.example")
    assert status == 0 and out.startswith("domain pass.example verified: ")
    document = shown(osf, "pass.example")
    assert document["state"] == "verified" and document["token"] == token
    assert isinstance(document["verified_at"], str)
    assert "pass.example  acme      verified" in osf("domain", "list")[1]

    status, out, _ = osf("domain", "verify", "pass.example")
    assert status == 0 and out.startswith("domain pass.example is already verified since ")


def test_a_record_with_another_token_leaves_the_domain_pending(osf: Run, dns: DnsServer) -> None:
    add_pending(osf, "pass.example")
    dns.serve(SPF_ZONE + record("pass.example", record_value("0" * 32)))
    status, out, _ = osf("domain", "verify", "pass.example")
    assert status == 1 and out.count("\n") == 1
    assert "holds a record with another token: 'osfmilter-verification=000" in out
    assert shown(osf, "pass.example")["state"] == "pending"


def test_dns_that_does_not_answer_is_one_line_and_status_1(osf: Run) -> None:
    add_pending(osf, "silent.example")
    status, out, err = osf("domain", "verify", "silent.example")
    assert (status, out) == (1, "")
    assert err == (
        "osfmilter: DNS error: domain silent.example not verified: "
        "DNS timed out looking up _osfmilter.silent.example\n"
    )
    assert shown(osf, "silent.example")["state"] == "pending"


def test_the_operator_adds_a_domain_verified_without_a_token(osf: Run) -> None:
    status, out, _ = osf("domain", "add", "Pass.Example.", "--customer", "acme")
    assert (status, out) == (0, "domain pass.example added to acme\n")
    document = shown(osf, "pass.example")
    assert set(document) == {
        "domain",
        "customer",
        "state",
        "token",
        "record_name",
        "record",
        "verified_at",
    }
    assert document["state"] == "verified" and document["customer"] == "acme"
    assert document["token"] is None and document["record"] is None
    assert document["record_name"] == "_osfmilter.pass.example"
    assert isinstance(document["verified_at"], str)


def test_show_of_a_pending_domain_says_what_to_publish(osf: Run) -> None:
    token = add_pending(osf, "pass.example")
    status, out, _ = osf("domain", "show", "pass.example")
    assert status == 0
    assert "state:        pending" in out and f"token:        {token}" in out
    assert f'publish:      _osfmilter.pass.example. TXT "osfmilter-verification={token}"' in out
    assert "verified_at:  -" in out


@pytest.mark.parametrize(
    ("first", "args", "message"),
    [
        (
            ("b.example", "acme", False),
            ("b.example", "--customer", "other"),
            "domain b.example is already registered to another customer ('acme')",
        ),
        (
            ("b.example", "acme", True),
            ("b.example", "--customer", "other", "--pending"),
            "domain b.example is already registered to another customer ('acme')",
        ),
        (
            ("b.example", "acme", True),
            ("B.example", "--customer", "acme"),
            "domain b.example is already registered to this customer",
        ),
        (
            ("b.example", "acme", False),
            ("sub.b.example", "--customer", "other"),
            "domain sub.b.example lies within b.example, which is registered to another "
            "customer ('acme')",
        ),
        (
            ("sub.b.example", "acme", True),
            ("b.example", "--customer", "other"),
            "domain b.example contains sub.b.example registered to another customer ('acme')",
        ),
        (("b.example", "acme", False), ("b..example", "--customer", "acme"), "not a valid domain"),
        (("b.example", "acme", False), ("c.example", "--customer", "nobody"), "no customer named"),
    ],
)
def test_a_refused_add_is_one_line_status_2_and_changes_nothing(
    osf: Run, first: tuple[str, str, bool], args: tuple[str, ...], message: str
) -> None:
    domain, customer, pending = first
    osf("domain", "add", domain, "--customer", customer, *(["--pending"] if pending else []))
    before = osf("domain", "list")[1]
    status, out, err = osf("domain", "add", *args)
    assert (status, out) == (2, "")
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert osf("domain", "list")[1] == before


def test_one_customers_domains_may_nest(osf: Run) -> None:
    assert osf("domain", "add", "b.example", "--customer", "acme")[0] == 0
    assert osf("domain", "add", "sub.b.example", "--customer", "acme", "--pending")[0] == 0
    assert osf("domain", "add", "x.sub.b.example", "--customer", "acme")[0] == 0
    # Beside them, and a name that only ends in the same letters, are not nested.
    assert osf("domain", "add", "c.example", "--customer", "other")[0] == 0
    assert osf("domain", "add", "xb.example", "--customer", "other")[0] == 0


@pytest.mark.parametrize(
    ("theirs", "mine", "shown_instead"),
    [
        ("b.example", "b.example", "domain b.example is already registered to another customer"),
        ("b.example", "sub.b.example", "domain sub.b.example lies within b.example, which is"),
        ("sub.b.example", "b.example", "domain b.example contains a domain registered to"),
    ],
)
def test_a_caller_may_keep_the_other_customer_unnamed(
    acme: SqlStore, theirs: str, mine: str, shown_instead: str
) -> None:
    with acme.session(locked=True) as session:
        add_domain(session, theirs, "acme", REGISTERED_AT)
    with acme.session() as session:
        admin.add_customer(session, "portal-user", "free", REGISTERED_AT)
    with pytest.raises(UsageError) as refused, acme.session(locked=True) as session:
        add_domain(session, mine, "portal-user", REGISTERED_AT, pending=True, reveal_others=False)
    assert shown_instead in str(refused.value)
    assert "acme" not in str(refused.value)
    if theirs != mine and theirs.startswith("sub."):
        assert theirs not in str(refused.value)


@pytest.mark.parametrize("command", ["verify", "show"])
def test_an_unregistered_domain_is_one_line_and_status_2(osf: Run, command: str) -> None:
    status, _, err = osf("domain", command, "nowhere.example")
    assert status == 2 and err == "osfmilter: error: domain nowhere.example is not registered\n"
    status, _, err = osf("domain", command, "not a domain")
    assert status == 2 and "is not a valid domain name" in err and err.count("\n") == 1


def test_removing_a_domain_frees_its_name(osf: Run) -> None:
    add_pending(osf, "b.example")
    assert osf("domain", "remove", "b.example")[0] == 0
    assert osf("domain", "add", "sub.b.example", "--customer", "other")[0] == 0


DMARC = '_dmarc.pass.example. 300 IN TXT "v=DMARC1; p=reject"\n'


def check(osf: Run, domain: str) -> tuple[int, dict[str, object]]:
    status, out, _ = osf("domain", "check", domain, "--json")
    document: dict[str, object] = json.loads(out)
    return status, document


def part(document: dict[str, object], key: str) -> dict[str, object]:
    value = document[key]
    assert isinstance(value, dict)
    return value


def test_check_passes_for_a_verified_domain_whose_spf_passes(osf: Run, dns: DnsServer) -> None:
    osf("domain", "add", "pass.example", "--customer", "acme")
    dns.serve(SPF_ZONE + DMARC)
    status, document = check(osf, "pass.example")
    assert status == 0 and document["passes"] is True
    assert set(document) == {"domain", "passes", "spf", "verification", "dkim", "dmarc"}
    assert part(document, "dkim") == {"keys": []}  # advice: no key yet
    spf_status, spf_out, _ = osf("spf", "check", "pass.example", "--json")
    assert (spf_status, part(document, "spf")) == (0, json.loads(spf_out))
    assert part(document, "verification")["state"] == "verified"
    assert part(document, "dmarc")["records"] == ["v=DMARC1; p=reject"]
    status, out, _ = osf("domain", "check", "pass.example")
    assert status == 0
    assert "SPF (OK)" in out and "verification (OK)" in out and "DMARC (advice)" in out
    assert "  record:   v=DMARC1; p=reject" in out and "DKIM signing with d=pass.example" in out
    assert out.rstrip().endswith("=> ready: every part passes")


def test_check_of_a_pending_domain_fails_and_says_what_to_publish(osf: Run, dns: DnsServer) -> None:
    token = add_pending(osf, "pass.example")
    status, document = check(osf, "pass.example")
    verification = part(document, "verification")
    assert status == 1 and document["passes"] is False
    assert verification["state"] == "pending" and verification["found"] is False
    assert verification["record"] == f"osfmilter-verification={token}"
    dmarc = part(document, "dmarc")
    assert dmarc["records"] == []
    assert dmarc["suggested"] == "v=DMARC1; p=none; rua=mailto:postmaster@pass.example"

    dns.serve(SPF_ZONE + record("pass.example", record_value(token)))
    status, out, _ = osf("domain", "check", "pass.example")
    assert status == 1  # the record is there, but only verify makes the domain verified
    assert "_osfmilter.pass.example holds the verification token" in out
    assert "then:     osfmilter domain verify pass.example" in out
    assert out.rstrip().endswith("=> not ready: verification")


def test_check_fails_when_spf_fails_or_the_domain_is_not_registered(osf: Run) -> None:
    osf("domain", "add", "fail.example", "--customer", "acme")
    status, document = check(osf, "fail.example")
    assert status == 1 and part(document, "spf")["passes"] is False
    assert part(document, "verification")["state"] == "verified"
    status, document = check(osf, "pass.example")
    assert status == 1 and part(document, "verification")["registered"] is False
    status, out, _ = osf("domain", "check", "pass.example")
    assert "not registered: 'osfmilter domain add DOMAIN --customer NAME --pending'" in out


def test_check_without_relay_addresses_is_one_line_and_status_2(run: Run) -> None:
    status, _, err = run("domain", "check", "pass.example")
    assert status == 2 and "[spf] outbound_ips is empty" in err and err.count("\n") == 1


def test_a_pending_domain_without_a_token_is_one_line(osf: Run, engine: Engine) -> None:
    add_pending(osf, "b.example")
    with engine.begin() as connection:
        connection.execute(text("UPDATE scanned_domains SET verification_token = NULL"))
    status, _, err = osf("domain", "verify", "b.example")
    assert status == 2 and "pending without a token" in err and err.count("\n") == 1


def test_a_refusal_the_check_cannot_name_is_still_one_line(
    acme: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique constraint refuses what the check let through: a UsageError, no traceback."""
    refuse = domains._refuse_conflict
    calls: list[str] = []

    def blind_first(session: Session, name: str, customer: Customer, reveal: bool) -> None:
        calls.append(name)
        if len(calls) > 1:  # the check after the refusal sees the row
            refuse(session, name, customer, reveal)

    monkeypatch.setattr(domains, "_refuse_conflict", blind_first)
    with pytest.raises(UsageError) as refused, acme.session(locked=True) as session:
        add_domain(session, "example.com", "acme", REGISTERED_AT)
    assert str(refused.value) == "domain example.com is already registered to this customer"
    assert calls == ["example.com", "example.com"]
    monkeypatch.setattr(domains, "_refuse_conflict", lambda *args: None)
    with (
        pytest.raises(UsageError, match=r"example\.com: the database refused it"),
        acme.session(locked=True) as session,
    ):
        add_domain(session, "example.com", "acme", REGISTERED_AT)


def test_check_fails_until_the_dkim_key_is_published(osf: Run, dns: DnsServer) -> None:
    osf("domain", "add", "pass.example", "--customer", "acme")
    assert osf("dkim", "keygen", "pass.example", "--algorithm", "ed25519-sha256")[0] == 0
    dns.serve(SPF_ZONE + DMARC)
    status, document = check(osf, "pass.example")
    keys = part(document, "dkim")["keys"]
    assert isinstance(keys, list)
    [key] = keys
    assert status == 1 and key["state"] == "active" and key["found"] == "missing"
    status, out, _ = osf("domain", "check", "pass.example")
    assert f'publish:  {key["name"]}. TXT "{key["record"]}"' in out
    assert out.rstrip().endswith("=> not ready: DKIM")
    dns.serve(SPF_ZONE + DMARC + f'{key["name"]}. 300 IN TXT "{key["record"]}"\n')
    status, document = check(osf, "pass.example")
    keys = part(document, "dkim")["keys"]
    assert status == 0 and isinstance(keys, list) and keys[0]["found"] == "matches"
