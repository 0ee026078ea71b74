"""/sasl: add, a new password shown once and never again, remove."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from osfmilter import passwords
from osfmilter.storage import admin
from osfmilter.storage.schema import SaslAccount
from tests.web.conftest import (
    ACME_USER,
    BROWSER_ADDR,
    Portal,
    audit,
    post_form,
    shown_once,
)


def test_a_sasl_password_is_shown_once_and_never_again(portal: Portal, acme: TestClient) -> None:
    page = acme.get("/sasl")
    assert (
        '<table id="sasl-accounts">' in page.text
        and '<form id="add-sasl" method="post" action="/sasl"' in page.text
    )
    made = post_form(acme, "/sasl", "/sasl", login="shop@acme.example")
    assert made.status_code == 200
    password = shown_once(made.text, "new-password")
    assert "shown only this once" in made.text
    with portal.store.session() as session:
        account = session.scalars(select(SaslAccount)).one()
        assert passwords.verify(account.password_hash or "", password)
        account_id = account.id
    later = acme.get("/sasl")
    assert password not in later.text and 'id="new-password"' not in later.text
    assert "<td>shop@acme.example</td>" in later.text

    renewed = post_form(acme, "/sasl", f"/sasl/{account_id}/password")
    assert renewed.status_code == 200
    second = shown_once(renewed.text, "new-password")
    assert second != password
    with portal.store.session() as session:
        stored = session.scalars(select(SaslAccount.password_hash)).one()
    assert stored is not None and passwords.verify(stored, second)
    assert not passwords.verify(stored, password)

    removed = post_form(acme, "/sasl", f"/sasl/{account_id}/remove")
    assert removed.status_code == 303
    assert "shop@acme.example removed" in acme.get("/sasl").text
    assert [row[4:] for row in audit(portal)] == [
        ("sasl.add", "shop@acme.example"),
        ("sasl.passwd", "shop@acme.example"),
        ("sasl.remove", "shop@acme.example"),
    ]
    assert all(row[:4] == (ACME_USER, "portal", BROWSER_ADDR, "acme") for row in audit(portal))


def test_a_taken_or_bad_login_is_422(portal: Portal, acme: TestClient) -> None:
    with portal.store.session() as session:
        admin.add_sasl(session, "taken@globex.example", "globex", portal.clock.now())
    taken = post_form(acme, "/sasl", "/sasl", login="TAKEN@globex.example")
    assert taken.status_code == 422 and "already registered" in taken.text
    assert "globex" not in taken.text.replace("globex.example", "")
    bad = post_form(acme, "/sasl", "/sasl", login="two words")
    assert bad.status_code == 422 and 'value="two words"' in bad.text
    assert 'id="new-password"' not in taken.text + bad.text
