"""/refusals and /history: the customer's own rows, newest first, filtered, paged by keyset."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind
from osfmilter.storage import admin
from osfmilter.storage.schema import Event, StateChange
from tests.web.conftest import ACME_NET, NOW, Portal

QUEUE_ID = re.compile(r"<td>(Q\d{5})</td>")


def seed_events(portal: Portal, count: int) -> dict[str, Event]:
    """``count`` events of acme's (every fifth an accept) and some of globex's, by queue id.

    Three events share each minute, so the order needs the id to break ties.
    """
    made: dict[str, Event] = {}
    with portal.store.session() as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        for i in range(count):
            customer = globex if i % 7 == 6 else acme
            action = "accept" if i % 5 == 0 else ("reject" if i % 2 else "tempfail")
            event = Event(
                at=NOW - timedelta(minutes=(count - i) // 3),
                node="relay1",
                queue_id=f"Q{i:05d}",
                stage="rcpt",
                client_ip="81.2.69.1",
                identity=f"server:{ACME_NET}" if i % 3 else "sasl:shop@acme.example",
                customer_id=customer.id,
                envelope_sender="a@acme.example",
                header_from_domain="",
                rcpt_count=1,
                size=0,
                action=action,
                reason="rate_limit" if i % 4 else "spam",
                smtp_code=451 if action == "tempfail" else 550,
                enhanced_code="4.7.1" if action == "tempfail" else "5.7.1",
            )
            session.add(event)
            made[event.queue_id] = event
        session.flush()
        session.expunge_all()
    return made


def acme_refusals(made: dict[str, Event]) -> list[str]:
    """acme's non-accepts, newest first."""
    acme_id = min(e.customer_id or 0 for e in made.values())
    rows = [e for e in made.values() if e.action != "accept" and e.customer_id == acme_id]
    return [e.queue_id for e in sorted(rows, key=lambda e: (e.at, e.id), reverse=True)]


def pages_of(browser: TestClient, url: str) -> list[str]:
    """Each page, following the "older" links to the end."""
    texts = []
    while url:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        texts.append(page.text)
        link = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = html.unescape(link[1]) if link else ""
    return texts


def pages(browser: TestClient, url: str) -> list[list[str]]:
    """The queue ids of each page."""
    return [QUEUE_ID.findall(text) for text in pages_of(browser, url)]


def test_refusals_page_on_without_a_row_twice_or_missed(portal: Portal, acme: TestClient) -> None:
    made = seed_events(portal, 320)
    expected = acme_refusals(made)
    assert len(expected) > 200
    seen = pages(acme, "/refusals")
    assert [len(page) for page in seen] == [100, 100, len(expected) - 200]
    assert [qid for page in seen for qid in page] == expected  # in order, each once
    text = acme.get("/refusals").text
    assert '<table id="refusals">' in text
    newest = made[expected[0]]
    assert f"<td>{newest.enhanced_code}</td>" in text and "<td>rate_limit</td>" in text


def test_refusal_filters_narrow_and_keep_through_the_pages(
    portal: Portal, acme: TestClient
) -> None:
    made = seed_events(portal, 320)
    expected = acme_refusals(made)
    rejects = [q for q in expected if made[q].action == "reject"]
    seen = pages(acme, "/refusals?action=reject")
    assert [q for page in seen for q in page] == rejects and len(seen) == 2
    spam_sasl = [
        q
        for q in expected
        if made[q].reason == "spam" and made[q].identity == "sasl:shop@acme.example"
    ]
    shown = pages(acme, "/refusals?reason=spam&identity=sasl%3Ashop%40acme.example")
    assert [q for page in shown for q in page] == spam_sasl
    first_day = (NOW - timedelta(minutes=30)).date().isoformat()
    since = [q for q in expected if made[q].at >= NOW.replace(hour=0, minute=0)]
    assert [q for page in pages(acme, f"/refusals?since={first_day}") for q in page] == since
    assert acme.get("/refusals?since=yesterday").status_code == 422
    assert acme.get("/refusals?action=accept").status_code == 422
    assert pages(acme, "/refusals?reason=no_such_reason") == [[]]


def test_the_history_pages_newest_first_with_the_states_explained(
    portal: Portal, acme: TestClient
) -> None:
    config = portal.app.state.context.config
    with portal.store.session() as session:
        server = admin.add_server(session, ACME_NET, "acme", config.registration, NOW)
        other = admin.add_server(session, "81.2.70.0/24", "globex", config.registration, NOW)
        session.flush()
        for i in range(260):  # alternately one of acme's and one of globex's
            session.add(
                StateChange(
                    at=NOW - timedelta(hours=300 - i // 6),  # three of acme's share an hour
                    smtp_server_id=server.id if i % 2 else other.id,
                    old_state="veilig",
                    new_state="verdacht",
                    reason=f"change {i:03d}",
                    actor="system",
                )
            )
        server_id = server.id
    reputation = portal.app.state.context.reputation
    reputation.record_incident(IdentityKind.SERVER, server_id, IncidentKind.SPAM, "spam score 12")
    first = acme.get("/history")
    assert first.status_code == 200
    text = first.text
    for term in ("veilig", "verdacht", "onveilig"):
        assert f'<span class="state state-{term}">{term}</span>' in text
    # acme's server is verdacht now: when it is veilig again, by itself.
    not_veilig = re.search(r'<table id="not-veilig">.*?</table>', text, re.S)
    assert not_veilig and "2026-12-03 12:00 UTC" in not_veilig[0]
    reasons = [
        reason
        for page in pages_of(acme, "/history")
        for reason in re.findall(r"<td>(change \d{3}|spam[^<]*)</td>", page)
    ]
    acme_rows = [f"change {i:03d}" for i in range(259, 0, -2)]
    assert reasons[0].startswith("spam") and reasons[1:] == acme_rows  # each once, in order
    assert len(pages_of(acme, "/history")) == 2
