"""Tenant isolation in the portal: another customer's id in any URL is 404, like a missing one.

The table must name every portal route with an id in its path: a new one
fails this test until it is added, with the kind of object it takes.
"""

from __future__ import annotations

from sqlalchemy import func, select

from osfmilter import tokens
from osfmilter.storage import admin, contacts, domains, users
from osfmilter.storage.schema import (
    ApiToken,
    CustomerContact,
    SaslAccount,
    ScannedDomain,
    SmtpServer,
    Webhook,
)
from tests.web.conftest import ACME_USER, GLOBEX_NET, Portal, csrf_of, portal_routes

HASH = "{ARGON2ID}not-a-real-hash"
# (method, path) -> the kind of object its {id} names.
WITH_ID = {
    ("POST", "/servers/{server_id}/remove"): "server",
    ("POST", "/sasl/{account_id}/password"): "sasl",
    ("POST", "/sasl/{account_id}/remove"): "sasl",
    ("POST", "/tokens/{token_id}/revoke"): "token",
    ("POST", "/notifications/contacts/{contact_id}/remove"): "contact",
    ("POST", "/notifications/webhooks/{webhook_id}/remove"): "webhook",
    ("GET", "/domains/{domain_id}"): "domain",
    ("POST", "/domains/{domain_id}/verify"): "domain",
    ("POST", "/domains/{domain_id}/remove"): "domain",
    # The operator's: 404 to every customer's user, whatever the path names
    # (tests/web/test_portal_operator.py).
    ("GET", "/operator/customers/{name}"): "operator",
    ("POST", "/operator/customers/{name}/plan"): "operator",
    ("POST", "/operator/identities/{kind}/{identity_id}/{action}"): "operator",
}


def test_every_portal_route_with_an_id_is_in_the_table(portal: Portal) -> None:
    served = portal_routes(portal.app)
    assert ("GET", "/servers") in served  # the routes were found at all
    with_id = {(method, path) for method, path in served if "{" in path}
    assert with_id == set(WITH_ID), "update WITH_ID in tests/web/test_portal_isolation.py"


def test_another_customers_ids_are_404_like_missing_ones(portal: Portal) -> None:
    config = portal.app.state.context.config
    now = portal.clock.now()
    with portal.store.session() as session:
        server = admin.add_server(session, GLOBEX_NET, "globex", config.registration, now)
        account = admin.add_sasl(session, "app@globex.example", "globex", now, password_hash=HASH)
        made = tokens.generate()
        token = users.add_token(session, made.prefix, made.hash, "globex", now, created_by="t")
        contacts.add_contact(session, "globex", "ops@globex.example", now)
        webhook, _ = contacts.add_webhook(
            session, "globex", "https://hooks.globex.example/", now, public_only=True
        )
        domain = domains.add_domain(session, "globex.example", "globex", now, pending=True)
        session.flush()
        [contact] = server.customer.contacts
        ids = {
            "server": server.id,
            "sasl": account.id,
            "token": token.id,
            "contact": contact.id,
            "webhook": webhook.id,
            "domain": domain.id,
        }
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    csrf = csrf_of(browser.get("/").text)
    for (method, path), kind in WITH_ID.items():
        if kind == "operator":
            continue
        answers = []
        for other in (ids[kind], ids[kind] + 1000, 2**40):
            url = path.replace("{" + path.split("{")[1].split("}")[0] + "}", str(other))
            response = browser.request(method, url, data={"csrf_token": csrf})
            assert response.status_code == 404, (method, url, response.text)
            answers.append(response.text)
        assert answers[0] == answers[1] == answers[2], path
        assert "globex" not in answers[0]
    with portal.store.session() as session:
        assert session.scalar(select(func.count()).select_from(SmtpServer)) == 1
        assert session.scalar(select(func.count()).select_from(SaslAccount)) == 1
        assert session.scalars(select(SaslAccount.password_hash)).one() == HASH
        assert session.scalars(select(ApiToken.revoked_at)).one() is None
        assert session.scalar(select(func.count()).select_from(CustomerContact)) == 1
        assert session.scalar(select(func.count()).select_from(Webhook)) == 1
        assert session.scalars(select(ScannedDomain.state)).one() == "pending"
    # Nor do acme's lists show globex's objects.
    pages = ("/servers", "/sasl", "/tokens", "/notifications", "/", "/domains", "/refusals")
    for page in (*pages, "/history"):
        text = browser.get(page).text
        assert "globex" not in text and GLOBEX_NET not in text and made.prefix not in text
