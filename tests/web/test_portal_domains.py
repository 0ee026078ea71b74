"""/domains: a customer adds a domain (always pending), sees its record, verifies it in DNS."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from osfmilter.storage import domains
from osfmilter.storage.schema import ScannedDomain
from tests.harness.dnsserver import DnsServer
from tests.harness.spfzone import ZONE as SPF_ZONE
from tests.web.conftest import (
    ACME_USER,
    BROWSER_ADDR,
    OPERATOR_USER,
    Portal,
    audit,
    post_form,
)

# Its SPF record includes the relay's: the SPF part is in place.
DOMAIN = "pass.example"


def domain_row(portal: Portal, name: str = DOMAIN) -> ScannedDomain:
    with portal.store.session() as session:
        row = session.scalars(select(ScannedDomain).where(ScannedDomain.domain == name)).one()
        session.expunge(row)
        return row


def code(page: str, element_id: str) -> str:
    match = re.search(rf'<code id="{element_id}">([^<]*)</code>', page)
    assert match, f"no {element_id} on the page"
    return html.unescape(match[1])


def add(browser: TestClient, domain: str = "Pass.Example") -> str:
    """Add through the form; the domain page's path."""
    answer = post_form(browser, "/domains", "/domains", domain=domain)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def test_a_domain_added_by_a_customer_is_pending_with_its_record_shown(
    portal: Portal, acme: TestClient
) -> None:
    page_path = add(acme)
    row = domain_row(portal)
    assert page_path == f"/domains/{row.id}"
    assert row.state == "pending" and row.verified_at is None and row.verification_token
    page = acme.get(page_path).text
    assert "added, pending verification" in page  # the flash message
    assert code(page, "record-name") == "_osfmilter.pass.example"
    assert code(page, "record-value") == f"osfmilter-verification={row.verification_token}"
    assert 'id="verify-domain"' in page and f'action="/domains/{row.id}/verify"' in page
    # The records to publish, each with whether it is in place.
    spf = re.search(r'<h3 id="part-spf">SPF: (.*?)</h3>', page)
    dmarc = re.search(r'<h3 id="part-dmarc">DMARC: (.*?)</h3>', page)
    assert spf and "in place" in spf[1] and "not in place" not in spf[1], page
    assert dmarc and "advice" in dmarc[1]
    assert "v=DMARC1; p=none; rua=mailto:postmaster@pass.example" in page
    assert 'id="part-dkim"' in page
    listed = acme.get("/domains").text
    table = re.search(r'<table id="domains">.*?</table>', listed, re.S)
    assert table and "pass.example" in table[0] and "pending" in table[0]
    assert audit(portal) == [
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "domain.add", "pass.example")
    ]


def test_verify_turns_it_verified_once_dns_holds_the_token(
    portal: Portal, acme: TestClient, dns: DnsServer
) -> None:
    page_path = add(acme)
    row = domain_row(portal)
    answer = post_form(acme, page_path, f"{page_path}/verify")
    assert answer.status_code == 303 and answer.headers["location"] == page_path
    page = acme.get(page_path).text
    assert "is not verified yet: no TXT record at _osfmilter.pass.example" in page
    assert domain_row(portal).state == "pending"

    dns.serve(
        SPF_ZONE
        + f'_osfmilter.pass.example. 300 IN TXT "osfmilter-verification={row.verification_token}"\n'
    )
    answer = post_form(acme, page_path, f"{page_path}/verify")
    assert answer.status_code == 303
    page = acme.get(page_path).text
    assert "Domain pass.example is verified" in page
    assert 'id="verify-domain"' not in page
    verified = domain_row(portal)
    assert verified.state == "verified" and verified.verified_at == portal.clock.now()
    assert [entry[4] for entry in audit(portal)] == ["domain.add", "domain.verify"]
    # Again: it says so, and records nothing more.
    post_form(acme, page_path, f"{page_path}/verify")
    assert "is verified already" in acme.get(page_path).text
    assert len(audit(portal)) == 2


def test_another_customers_domain_is_refused_without_naming_it(
    portal: Portal, acme: TestClient
) -> None:
    with portal.store.session(locked=True) as session:
        domains.add_domain(session, "globex.example", "globex", portal.clock.now())
    for taken in ("globex.example", "mail.globex.example"):
        answer = post_form(acme, "/domains", "/domains", domain=taken)
        assert answer.status_code == 422
        error = re.search(r'<p class="error" role="alert">(.*?)</p>', answer.text, re.S)
        assert error and "registered" in error[1] and "globex'" not in error[1], error
    answer = post_form(acme, "/domains", "/domains", domain="not a domain")
    assert answer.status_code == 422 and 'value="not a domain"' in answer.text
    assert audit(portal) == []
    # acme's list does not show globex's domain.
    assert "globex.example" not in acme.get("/domains").text


def test_remove_takes_the_domain_away(portal: Portal, acme: TestClient) -> None:
    page_path = add(acme)
    answer = post_form(acme, page_path, f"{page_path}/remove")
    assert answer.status_code == 303 and answer.headers["location"] == "/domains"
    assert "Domain pass.example removed." in acme.get("/domains").text
    assert acme.get(page_path).status_code == 404
    assert [entry[4] for entry in audit(portal)] == ["domain.add", "domain.remove"]


def test_an_operator_adds_a_domain_pending_for_the_customer_chosen(portal: Portal) -> None:
    portal.add_user(OPERATOR_USER, None)
    operator = portal.login(OPERATOR_USER)
    answer = post_form(operator, "/domains", "/domains", domain="shop.example", customer="globex")
    assert answer.status_code == 303
    row = domain_row(portal, "shop.example")
    assert row.state == "pending" and row.customer_id is not None
    assert audit(portal)[-1][3:] == ("globex", "domain.add", "shop.example")
