"""/notifications: a customer's contacts and webhooks, added and removed through the portal
(an operator's for a customer chosen), each audited; a webhook's secret shown once."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from osfmilter.storage import contacts
from osfmilter.storage.contacts import MAX_CONTACTS, MAX_WEBHOOKS
from osfmilter.storage.schema import Webhook
from tests.web.conftest import (
    ACME_USER,
    BROWSER_ADDR,
    OPERATOR_USER,
    Portal,
    audit,
    post_form,
    shown_once,
)

PAGE = "/notifications"
HOOK = "https://hooks.acme.example/osfmilter"


def test_a_contact_is_added_listed_and_removed(portal: Portal, acme: TestClient) -> None:
    page = acme.get(PAGE)
    assert page.status_code == 200
    assert '<a href="/notifications"' in page.text and ">Notifications</a>" in page.text
    assert '<label for="email">' in page.text and '<label for="url">' in page.text
    added = post_form(acme, PAGE, "/notifications/contacts", email="Ops@ACME.example")
    assert added.status_code == 303 and added.headers["location"] == PAGE
    listed = acme.get(PAGE).text
    assert "ops@acme.example" in listed and 'id="flash"' in listed
    match = re.search(r'action="/notifications/contacts/(\d+)/remove"', listed)
    assert match
    removed = post_form(acme, PAGE, f"/notifications/contacts/{match[1]}/remove")
    assert removed.status_code == 303
    with portal.store.session() as session:
        assert contacts.contacts(session, "acme") == []
    assert audit(portal) == [
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "contact.add", "ops@acme.example"),
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "contact.remove", "ops@acme.example"),
    ]


def test_a_bad_or_duplicate_contact_is_422(portal: Portal, acme: TestClient) -> None:
    bad = post_form(acme, PAGE, "/notifications/contacts", email="not an address")
    assert bad.status_code == 422 and "is not a valid e-mail address" in bad.text
    assert (
        post_form(acme, PAGE, "/notifications/contacts", email="a@acme.example").status_code == 303
    )
    again = post_form(acme, PAGE, "/notifications/contacts", email="a@acme.example")
    assert again.status_code == 422 and "already a contact" in again.text
    assert [row[4] for row in audit(portal)] == ["contact.add"]


def test_a_webhook_secret_is_shown_once_and_never_on_a_get(
    portal: Portal, acme: TestClient
) -> None:
    made = post_form(acme, PAGE, "/notifications/webhooks", url=HOOK)
    assert made.status_code == 200
    secret = shown_once(made.text, "new-webhook-secret")
    assert len(secret) == 64 and "X-Osfmilter-Signature" in made.text
    with portal.store.session() as session:
        webhook = session.scalars(select(Webhook)).one()
        assert (webhook.url, webhook.secret, webhook.public_only) == (HOOK, secret, True)
        webhook_id = webhook.id
    later = acme.get(PAGE).text
    assert HOOK in later and secret not in later and 'id="new-webhook-secret"' not in later
    assert "2026-12-01 12:00 UTC" in later  # its created time
    removed = post_form(acme, PAGE, f"/notifications/webhooks/{webhook_id}/remove")
    assert removed.status_code == 303
    assert f"<td><code>{HOOK}</code></td>" not in acme.get(PAGE).text
    entries = audit(portal)
    assert entries == [
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "webhook.add", HOOK),
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "webhook.remove", HOOK),
    ]
    assert all(secret not in str(entry) for entry in entries)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.acme.example/", "is plain http: use https"),
        ("http://127.0.0.1:8080/hook", "is plain http: use https"),
        ("https://127.0.0.1:8443/hook", "is not a public address"),
        ("https://10.0.0.7/hook", "is not a public address"),
        ("https://localhost/hook", "names this host"),
    ],
)
def test_an_http_or_internal_webhook_is_422_naming_it(
    portal: Portal, acme: TestClient, url: str, message: str
) -> None:
    answer = post_form(acme, PAGE, "/notifications/webhooks", url=url)
    assert answer.status_code == 422
    assert message in answer.text and url in answer.text
    assert 'id="new-webhook-secret"' not in answer.text
    assert audit(portal) == []
    with portal.store.session() as session:
        assert session.scalars(select(Webhook)).all() == []


def test_the_limits_are_422(portal: Portal, acme: TestClient) -> None:
    now = portal.clock.now()
    with portal.store.session() as session:
        for i in range(MAX_CONTACTS):
            contacts.add_contact(session, "acme", f"c{i}@acme.example", now)
        for i in range(MAX_WEBHOOKS):
            contacts.add_webhook(session, "acme", f"https://h{i}.acme.example/", now)
    contact = post_form(acme, PAGE, "/notifications/contacts", email="one@acme.example")
    assert contact.status_code == 422
    assert f"has {MAX_CONTACTS} contacts, the most" in contact.text
    webhook = post_form(acme, PAGE, "/notifications/webhooks", url=HOOK)
    assert webhook.status_code == 422 and f"has {MAX_WEBHOOKS} webhooks, the most" in webhook.text
    assert 'id="new-webhook-secret"' not in webhook.text
    assert audit(portal) == []


def test_an_operator_chooses_the_customer(portal: Portal) -> None:
    portal.add_user(OPERATOR_USER, None)
    operator = portal.login(OPERATOR_USER)
    unchosen = post_form(operator, PAGE, "/notifications/webhooks", url=HOOK)
    assert unchosen.status_code == 422 and "Choose the customer" in unchosen.text
    made = post_form(operator, PAGE, "/notifications/webhooks", url=HOOK, customer="globex")
    assert made.status_code == 200 and shown_once(made.text, "new-webhook-secret")
    added = post_form(
        operator, PAGE, "/notifications/contacts", email="ops@globex.example", customer="globex"
    )
    assert added.status_code == 303
    page = operator.get(PAGE).text
    assert "globex" in page and "ops@globex.example" in page and HOOK in page
    assert [row[3:] for row in audit(portal)] == [
        ("globex", "webhook.add", HOOK),
        ("globex", "contact.add", "ops@globex.example"),
    ]
    with portal.store.session() as session:
        assert session.scalars(select(Webhook.public_only)).one() is True
