"""``/api/v1/sasl-accounts``: the password shown once, stored as its hash, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from osfmilter import passwords
from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind
from osfmilter.storage.schema import SaslAccount
from tests.web.conftest import Api
from tests.web.helpers import actor, audited, created, error_of

SASL = "/api/v1/sasl-accounts"


def stored_hash(api: Api, account_id: int) -> str:
    with api.store.session() as session:
        account = session.get(SaslAccount, account_id)
        assert account is not None and account.password_hash is not None
        return account.password_hash


def test_the_password_is_shown_once_and_the_stored_hash_verifies_it(api: Api) -> None:
    account = created(api, SASL, api.acme, login="shop@acme.example")
    assert account["login"] == "shop@acme.example" and account["customer"] == "acme"
    assert account["state"] == "veilig" and account["password_changed_at"] is not None
    password = account.pop("password")
    assert len(password) >= 16
    assert passwords.verify(stored_hash(api, account["id"]), password)

    one = api.client.get(f"{SASL}/{account['id']}", headers=api.acme)
    assert one.status_code == 200 and one.json() == account
    listed = api.client.get(SASL, headers=api.acme)
    assert listed.json() == [account]
    assert password not in one.text + listed.text

    renewed = api.client.post(f"{SASL}/{account['id']}/password", headers=api.acme)
    assert renewed.status_code == 200
    new = renewed.json()["password"]
    assert new != password
    assert passwords.verify(stored_hash(api, account["id"]), new)
    assert not passwords.verify(stored_hash(api, account["id"]), password)
    assert "password" not in api.client.get(f"{SASL}/{account['id']}", headers=api.acme).json()

    deleted = api.client.delete(f"{SASL}/{account['id']}", headers=api.acme)
    assert deleted.status_code == 204
    error_of(api.client.get(f"{SASL}/{account['id']}", headers=api.acme), 404)
    who = actor(api.acme)
    assert audited(api) == [
        (who, "api", "acme", "sasl.add", "shop@acme.example"),
        (who, "api", "acme", "sasl.passwd", "shop@acme.example"),
        (who, "api", "acme", "sasl.remove", "shop@acme.example"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "login"),
        ({"login": ""}, "login"),
        ({"login": "two words"}, "login"),
        ({"login": "x" * 256}, "login"),
        ({"login": "a@b.example", "colour": "red"}, "colour"),
        ({"login": "a@b.example", "customer": "globex"}, "customer"),
    ],
)
def test_invalid_input_is_422_naming_the_field(api: Api, body: object, field: str) -> None:
    error = error_of(api.client.post(SASL, json=body, headers=api.acme), 422)
    assert error.startswith(f"{field}: ")


def test_a_login_taken_is_409_naming_no_one(api: Api) -> None:
    created(api, SASL, api.globex, login="shop@example.com")
    for login in ("shop@example.com", "Shop@Example.com"):
        error = error_of(api.client.post(SASL, json={"login": login}, headers=api.acme), 409)
        assert "globex" not in error
    with api.store.session() as session:
        assert len(session.scalars(select(SaslAccount)).all()) == 1


def test_an_operator_names_the_customer(api: Api) -> None:
    error = error_of(
        api.client.post(SASL, json={"login": "a@x.example"}, headers=api.operator), 422
    )
    assert error.startswith("customer: ")
    account = created(api, SASL, api.operator, login="a@x.example", customer="globex")
    assert account["customer"] == "globex"
    assert [a["login"] for a in api.client.get(SASL, headers=api.operator).json()] == [
        "a@x.example"
    ]
    assert api.client.get(SASL, params={"customer": "acme"}, headers=api.operator).json() == []
    assert api.client.get(SASL, headers=api.acme).json() == []


def test_history_lists_the_state_changes(api: Api) -> None:
    account = created(api, SASL, api.acme, login="app@acme.example")
    path = f"{SASL}/{account['id']}/history"
    assert api.client.get(path, headers=api.acme).json() == []
    reputation = api.client.app.state.context.reputation  # type: ignore[attr-defined]
    reputation.record_incident(IdentityKind.SASL, account["id"], IncidentKind.VIRUS, "EICAR")
    [change] = api.client.get(path, headers=api.acme).json()
    assert (change["old_state"], change["new_state"]) == ("veilig", "verdacht")
