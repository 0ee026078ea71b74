"""/: each sender's state (why, since, recovery), this month's usage and the bill."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind
from osfmilter.storage import admin
from osfmilter.storage.schema import MonthlyVolume
from tests.web.conftest import (
    ACME_NET,
    ACME_USER,
    BROWSER_ADDR,
    OPERATOR_USER,
    Portal,
    audit,
    post_form,
)


def test_the_dashboard_shows_states_usage_and_the_bill(portal: Portal, acme: TestClient) -> None:
    config = portal.app.state.context.config
    with portal.store.session() as session:
        server = admin.add_server(
            session, "81.2.69.7", "acme", config.registration, portal.clock.now()
        )
        session.flush()
        server_id = server.id
        admin.add_sasl(session, "shop@acme.example", "acme", portal.clock.now())
        admin.add_server(session, "81.2.70.0/24", "globex", config.registration, portal.clock.now())
        customer_id = server.customer_id
        session.add(
            MonthlyVolume(
                month="2026-12",
                direction="outbound",
                customer_id=customer_id,
                domain="",
                messages=3,
                bytes=config.plans.free.monthly_volume_base // 2,
            )
        )
    reputation = portal.app.state.context.reputation
    reputation.record_incident(IdentityKind.SERVER, server_id, IncidentKind.SPAM, "spam score 12")

    page = acme.get("/")
    text = page.text
    assert page.status_code == 200 and "<h1>Dashboard</h1>" in text
    assert "81.2.69.7/32" in text and "shop@acme.example" in text
    assert "81.2.70.0/24" not in text  # globex's
    row = re.search(
        r"<tr>\s*<td><a href=\"/servers\">server</a> 81\.2\.69\.7/32</td>(.*?)</tr>", text, re.S
    )
    assert row, text
    assert "verdacht" in row[1] and "2026-12-01 12:00 UTC" in row[1]
    assert "2026-12-03 12:00 UTC" in row[1]  # veilig again after 48 hours
    assert "spam" in row[1]
    assert "<meter" in text and "50.0% of" in text
    assert "Usage in 2026-12" in text and "EUR" in text

    # 48 hours on (and logged in again), looking records the recovery.
    portal.clock.moment += timedelta(hours=48, minutes=1)
    later = portal.login(ACME_USER).get("/").text
    row = re.search(r"81\.2\.69\.7/32</td>(.*?)</tr>", later, re.S)
    assert row and "veilig" in row[1] and "verdacht" not in row[1]


def test_an_operator_sees_every_customer_with_a_customer_column(portal: Portal) -> None:
    config = portal.app.state.context.config
    with portal.store.session() as session:
        admin.add_server(session, ACME_NET, "acme", config.registration, portal.clock.now())
        admin.add_server(session, "81.2.70.0/24", "globex", config.registration, portal.clock.now())
    portal.add_user(OPERATOR_USER, None)
    operator = portal.login(OPERATOR_USER)
    page = operator.get("/servers").text
    assert '<th scope="col">Customer</th>' in page
    assert ACME_NET in page and "81.2.70.0/24" in page
    # An operator names the customer; without one the form is refused.
    refused = post_form(operator, "/servers", "/servers", network="81.2.71.7")
    assert refused.status_code == 422 and "Choose the customer" in refused.text
    added = post_form(operator, "/servers", "/servers", network="81.2.71.7", customer="globex")
    assert added.status_code == 303
    assert audit(portal)[-1] == (
        OPERATOR_USER,
        "portal",
        BROWSER_ADDR,
        "globex",
        "server.add",
        "81.2.71.7/32",
    )
    assert "globex" in operator.get("/").text
