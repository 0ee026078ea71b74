"""``/api/v1/domains``: pending, verified through loopback DNS, checked, removed with its keys."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from osfmilter.dkim.keys import KeyFiles
from osfmilter.domains import check
from osfmilter.domains.advisor import document
from osfmilter.storage.dkim import create_key
from osfmilter.storage.schema import ScannedDomain
from tests.harness.spfzone import ZONE as SPF_ZONE
from tests.web.conftest import NOW, Api
from tests.web.helpers import actor, audited, created, error_of

DOMAINS = "/api/v1/domains"


def publish(api: Api, domain: str, value: str) -> None:
    api.dns.serve(SPF_ZONE + f'_osfmilter.{domain}. 300 IN TXT "{value}"\n')


def test_a_domain_is_added_pending_with_the_record_to_publish_then_verified(api: Api) -> None:
    domain = created(api, DOMAINS, api.acme, domain="Pass.Example.")
    assert (domain["domain"], domain["state"], domain["customer"]) == (
        "pass.example",
        "pending",
        "acme",
    )
    record = domain["verification"]
    assert record["name"] == "_osfmilter.pass.example" and record["type"] == "TXT"
    assert record["value"].startswith("osfmilter-verification=")
    verify = f"{DOMAINS}/{domain['id']}/verify"

    error = error_of(api.client.post(verify, headers=api.acme), 409)
    assert error == "domain pass.example not verified yet: no TXT record at _osfmilter.pass.example"
    publish(api, "pass.example", "osfmilter-verification=" + "0" * 32)
    assert "another token" in error_of(api.client.post(verify, headers=api.acme), 409)

    publish(api, "pass.example", record["value"])
    verified = api.client.post(verify, headers=api.acme)
    assert verified.status_code == 200, verified.text
    assert verified.json()["state"] == "verified" and verified.json()["verified_at"] is not None
    # Verifying a verified domain changes nothing more.
    assert api.client.post(verify, headers=api.acme).json() == verified.json()
    assert [a[3] for a in audited(api)] == ["domain.add", "domain.verify"]
    assert {a[0] for a in audited(api)} == {actor(api.acme)}
    listed = api.client.get(DOMAINS, headers=api.acme).json()
    assert [(d["domain"], d["state"]) for d in listed] == [("pass.example", "verified")]


def test_dns_that_does_not_answer_is_503(api: Api) -> None:
    domain = created(api, DOMAINS, api.acme, domain="silent.example")
    error = error_of(api.client.post(f"{DOMAINS}/{domain['id']}/verify", headers=api.acme), 503)
    assert error == "DNS unavailable, try again later"
    with api.store.session() as session:
        assert session.scalars(select(ScannedDomain.state)).one() == "pending"


def test_one_domain_has_the_advice_of_domain_check(api: Api) -> None:
    domain = created(api, DOMAINS, api.acme, domain="pass.example")
    publish(api, "pass.example", domain["verification"]["value"])
    answer = api.client.get(f"{DOMAINS}/{domain['id']}", headers=api.acme)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    advice = shown.pop("check")
    assert shown == domain
    config = api.client.app.state.context.config  # type: ignore[attr-defined]
    with api.store.session() as session:
        found = check.registered(session, "pass.example", NOW)
    assert advice == document(check.run(config.spf, "pass.example", found))
    assert set(advice) == {"domain", "passes", "spf", "verification", "dkim", "dmarc"}
    assert advice["spf"]["passes"] is True and advice["verification"]["found"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "domain"),
        ({"domain": ""}, "domain"),
        ({"domain": "not a domain"}, "domain"),
        ({"domain": "a.example", "colour": "red"}, "colour"),
        ({"domain": "a.example", "customer": "globex"}, "customer"),
    ],
)
def test_invalid_input_is_422_naming_the_field(api: Api, body: object, field: str) -> None:
    error = error_of(api.client.post(DOMAINS, json=body, headers=api.acme), 422)
    assert error.startswith(f"{field}: ")


def test_a_domain_registered_or_nesting_is_409_naming_no_one(api: Api) -> None:
    created(api, DOMAINS, api.globex, domain="mail.globex.example")
    for name in ("mail.globex.example", "a.mail.globex.example", "globex.example"):
        error = error_of(api.client.post(DOMAINS, json={"domain": name}, headers=api.acme), 409)
        assert "'globex'" not in error
    created(api, DOMAINS, api.acme, domain="acme.example")
    error = error_of(
        api.client.post(DOMAINS, json={"domain": "acme.example"}, headers=api.acme), 409
    )
    assert "already registered to this customer" in error


def test_removing_a_domain_removes_its_key_files(api: Api) -> None:
    domain = created(api, DOMAINS, api.operator, domain="keys.example", customer="acme")
    config = api.client.app.state.context.config  # type: ignore[attr-defined]
    files = KeyFiles(config.dkim_key_path)
    path = files.write("keys.example", "s1", b"-----BEGIN PRIVATE KEY-----\n")
    with api.store.session() as session:
        row = session.get(ScannedDomain, domain["id"])
        assert row is not None
        row.state = "verified"  # a key is made for a verified domain only
        create_key(session, "keys.example", "s1", "ed25519-sha256", "AAAA", NOW)
    assert path.exists()
    assert api.client.delete(f"{DOMAINS}/{domain['id']}", headers=api.acme).status_code == 204
    assert not path.exists()
    error_of(api.client.get(f"{DOMAINS}/{domain['id']}", headers=api.acme), 404)
    assert [a[2:] for a in audited(api)] == [
        ("acme", "domain.add", "keys.example"),
        ("acme", "domain.remove", "keys.example"),
    ]
