"""The operator's console: customers, search, plan, release and block, reports, the audit log."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from osfmilter import reports
from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind, Rules
from osfmilter.storage import admin, domains
from osfmilter.storage.audit import Actor, record
from osfmilter.storage.schema import Customer, MonthlyVolume, SmtpServer, StateChange
from tests.web.conftest import (
    ACME_NET,
    ACME_USER,
    BROWSER_ADDR,
    GLOBEX_NET,
    NOW,
    OPERATOR_USER,
    Portal,
    audit,
    csrf_of,
    post_form,
)
from tests.web.test_portal_accessibility import check

HASH = "{ARGON2ID}not-a-real-hash"


def seed(portal: Portal) -> dict[str, int]:
    """acme: a network, a SASL account, a domain, a user; globex: a network. Their ids."""
    config = portal.app.state.context.config
    with portal.store.session(locked=True) as session:
        server = admin.add_server(session, ACME_NET, "acme", config.registration, NOW)
        account = admin.add_sasl(session, "shop@acme.example", "acme", NOW, password_hash=HASH)
        admin.add_server(session, GLOBEX_NET, "globex", config.registration, NOW)
        domains.add_domain(session, "acme.example", "acme", NOW)
        session.flush()
        ids = {"server": server.id, "sasl": account.id}
    portal.add_user(ACME_USER, "acme")
    return ids


def operator(portal: Portal) -> TestClient:
    portal.add_user(OPERATOR_USER, None)
    return portal.login(OPERATOR_USER)


def table(page: str, element_id: str) -> str:
    found = re.search(rf'<table id="{element_id}">.*?</table>', page, re.S)
    assert found, f"no table {element_id}"
    return found[0]


def cells(row_html: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row_html, re.S)
    ]


def body_rows(table_html: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", table_html, re.S)
    assert body
    return [cells(row) for row in re.findall(r"<tr>(.*?)</tr>", body[1], re.S)]


def test_every_operator_page_is_404_to_a_customers_user(portal: Portal) -> None:
    ids = seed(portal)
    acme = portal.login(ACME_USER)
    for url in (
        "/operator",
        "/operator/customers/acme",
        "/operator/search?q=acme",
        "/operator/reports",
        "/operator/audit",
    ):
        assert acme.get(url).status_code == 404, url
    token = csrf_of(acme.get("/").text)
    for url, data in (
        ("/operator/customers/acme/plan", {"plan": "paid"}),
        (f"/operator/identities/server/{ids['server']}/block", {"reason": "x"}),
        (f"/operator/identities/sasl/{ids['sasl']}/block", {"reason": "x"}),
        (f"/operator/identities/server/{ids['server']}/release", {"reason": "x"}),
    ):
        assert acme.post(url, data={**data, "csrf_token": token}).status_code == 404, url
    with portal.store.session() as session:
        assert session.scalars(select(Customer.plan).where(Customer.name == "acme")).one() == "free"
        assert session.scalars(select(SmtpServer.state).where(SmtpServer.network == ACME_NET)).one()
    assert audit(portal) == []
    assert "/operator" not in acme.get("/").text  # no link to it either


def test_the_console_and_a_customers_page_show_its_objects(portal: Portal) -> None:
    ids = seed(portal)
    reputation = portal.app.state.context.reputation
    reputation.record_incident(IdentityKind.SASL, ids["sasl"], IncidentKind.VIRUS, "Eicar")
    browser = operator(portal)
    customers = body_rows(table(browser.get("/operator").text, "customers"))
    assert customers == [
        ["acme", "free", "1", "1", "1", "1"],
        ["globex", "paid", "1", "0", "0", "0"],
    ]
    page = browser.get("/operator/customers/acme").text
    assert ACME_NET in table(page, "servers") and GLOBEX_NET not in page
    sasl = table(page, "sasl")
    assert "shop@acme.example" in sasl and "verdacht" in sasl and "2026-12-03 12:00 UTC" in sasl
    assert "acme.example" in table(page, "domains") and ACME_USER in table(page, "users")
    assert browser.get("/operator/customers/nobody").status_code == 404


def test_release_and_block_change_the_state_with_history_and_audit(portal: Portal) -> None:
    ids = seed(portal)
    browser = operator(portal)
    page = "/operator/customers/acme"
    block = f"/operator/identities/server/{ids['server']}/block"
    answer = post_form(browser, page, block, reason="spam run reported by abuse desk")
    assert answer.status_code == 303 and answer.headers["location"] == page
    assert f"SMTP server {ACME_NET}: veilig → onveilig." in browser.get(page).text
    post_form(browser, page, block, reason="again")
    assert "is onveilig already: nothing to block" in browser.get(page).text
    # No reason: refused, nothing changed.
    release = f"/operator/identities/server/{ids['server']}/release"
    post_form(browser, page, release, reason="  ")
    assert "Give the reason to release" in browser.get(page).text
    post_form(browser, page, release, reason="customer cleaned the host")
    post_form(browser, page, f"/operator/identities/sasl/{ids['sasl']}/block", reason="leak")
    with portal.store.session() as session:
        history = [
            (c.old_state, c.new_state, c.actor, c.reason)
            for c in session.scalars(select(StateChange).order_by(StateChange.id))
        ]
    assert history == [
        ("veilig", "onveilig", OPERATOR_USER, "spam run reported by abuse desk"),
        ("onveilig", "veilig", OPERATOR_USER, "customer cleaned the host"),
        ("veilig", "onveilig", OPERATOR_USER, "leak"),
    ]
    assert audit(portal) == [
        (OPERATOR_USER, "portal", BROWSER_ADDR, "acme", "server.block", ACME_NET),
        (OPERATOR_USER, "portal", BROWSER_ADDR, "acme", "server.release", ACME_NET),
        (OPERATOR_USER, "portal", BROWSER_ADDR, "acme", "sasl.block", "shop@acme.example"),
    ]
    for missing in ("/operator/identities/server/999999/block", "/operator/identities/x/1/block"):
        assert post_form(browser, page, missing, reason="r").status_code == 404


def test_search_finds_by_address_login_domain_and_name(portal: Portal) -> None:
    seed(portal)
    browser = operator(portal)

    def found(q: str) -> list[list[str]]:
        page = browser.get("/operator/search", params={"q": q}).text
        assert 'id="search"' in page and 'name="q"' in page
        return body_rows(table(page, "results")) if 'id="results"' in page else []

    assert found("81.2.69.5") == [["SMTP server", ACME_NET, "veilig", "acme"]]  # inside /28
    assert found("81.2.70.200") == [["SMTP server", GLOBEX_NET, "veilig", "globex"]]
    assert found("192.0.2.1") == []
    assert found("SHOP@") == [["SASL account", "shop@acme.example", "veilig", "acme"]]
    assert ["domain", "acme.example", "verified", "acme"] in found("mail.acme.example")
    assert found("glob") == [["customer", "globex", "paid", "globex"]]
    assert ["portal user", ACME_USER, "-", "acme"] in found("alice")
    assert 'href="/operator/customers/acme"' in browser.get("/operator/search?q=acme").text
    assert found("%") == []  # a LIKE wildcard is text


def test_a_plan_change_is_made_and_audited(portal: Portal) -> None:
    browser = operator(portal)
    page = "/operator/customers/acme"
    answer = post_form(browser, page, f"{page}/plan", plan="paid")
    assert answer.status_code == 303
    assert "acme moved from the free plan to the paid plan." in browser.get(page).text
    with portal.store.session() as session:
        assert admin.get_customer(session, "acme").plan == "paid"
    assert audit(portal)[-1][3:] == ("acme", "customer.plan", "acme")
    post_form(browser, page, f"{page}/plan", plan="gold")
    assert admin_plan(portal) == "paid" and len(audit(portal)) == 1


def admin_plan(portal: Portal) -> str:
    with portal.store.session() as session:
        return admin.get_customer(session, "acme").plan


def test_the_reports_are_the_command_lines_figures(portal: Portal) -> None:
    ids = seed(portal)
    context = portal.app.state.context
    with portal.store.session() as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        for customer, domain, size in (
            (acme, "acme.example", 12_345),
            (acme, "", 999),
            (globex, "", 2_500_000_001),
        ):
            session.add(
                MonthlyVolume(
                    month="2026-12",
                    direction="outbound",
                    customer_id=customer.id,
                    domain=domain,
                    messages=7,
                    bytes=size,
                )
            )
    context.reputation.record_incident(IdentityKind.SERVER, ids["server"], IncidentKind.SPAM)
    browser = operator(portal)
    page = browser.get("/operator/reports?month=2026-12")
    assert page.status_code == 200
    with portal.store.session() as session:
        volume = reports.volume(session, "2026-12", context.config.plans)
        bill = reports.bill(session, "2026-12", context.config.billing)
        states = reports.states(session, Rules.from_config(context.config.reputation))
    assert body_rows(table(page.text, "volume")) == [
        [
            r.customer,
            r.plan,
            r.domain or "(unknown senders)",
            str(r.messages),
            str(r.bytes),
            str(r.inbound_bytes) if r.domain else "-",
            "unlimited" if r.allowance is None else str(r.allowance),
            "-" if r.use_percent is None else f"{r.use_percent:.1f}%",
        ]
        for r in volume
    ]
    assert body_rows(table(page.text, "bill")) == [
        [r.customer, r.plan, str(r.messages), str(r.bytes), str(r.extra_gb), f"{r.amount} EUR"]
        for r in bill
    ]
    assert bill[1].amount == 30  # globex: 2.5 GB on the paid plan
    assert f"{sum(r.amount for r in bill)} EUR" in page.text
    assert [row[0] for row in body_rows(table(page.text, "states"))] == [
        r.identity for r in states.identities
    ]
    assert browser.get("/operator/reports?month=2026-13").status_code == 422


def test_the_audit_log_pages_newest_first_and_filters_by_customer(portal: Portal) -> None:
    with portal.store.session() as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        for i in range(150):
            record(
                session,
                Actor("ann@acme.example", "api"),
                "server.add",
                NOW + timedelta(seconds=i),
                customer=globex if i % 3 == 0 else acme,
                target=f"81.2.69.{i}",
            )
    browser = operator(portal)
    seen: list[str] = []
    url = "/operator/audit"
    while url:
        text = browser.get(url).text
        seen += [row[6] for row in body_rows(table(text, "audit"))]
        link = re.search(r'<a href="([^"]+)" rel="next">', text)
        url = html.unescape(link[1]) if link else ""
    assert seen == [f"81.2.69.{i}" for i in range(149, -1, -1)]
    text = browser.get("/operator/audit?customer=globex").text
    assert [row[6] for row in body_rows(table(text, "audit"))] == [
        f"81.2.69.{i}" for i in range(147, -1, -3)
    ]
    assert browser.get("/operator/audit?customer=nobody").status_code == 422


def test_the_new_pages_are_labelled_and_well_formed(portal: Portal) -> None:
    seed(portal)
    browser = operator(portal)
    made = post_form(browser, "/domains", "/domains", domain="pass.example", customer="acme")
    pages = (
        "/domains",
        made.headers["location"],
        "/refusals",
        "/refusals?since=bad",
        "/history",
        "/operator",
        "/operator/customers/acme",
        "/operator/search?q=acme",
        "/operator/search?q=81.2.69.1",
        "/operator/reports",
        "/operator/reports?month=x",
        "/operator/audit",
    )
    for page in pages:
        response = browser.get(page)
        assert response.status_code in (200, 422), page
        check(response.text, logged_in=True)
    check(post_form(browser, "/domains", "/domains", domain="x y", customer="acme").text, True)
    customer = portal.login(ACME_USER)
    for page in ("/domains", "/refusals", "/history"):
        check(customer.get(page).text, logged_in=True)
