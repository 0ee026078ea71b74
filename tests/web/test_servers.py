"""``/api/v1/servers`` on both backends: the command line's registration rules, as JSON."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from sqlalchemy import select

from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind
from osfmilter.storage.schema import AuditEntry, SmtpServer
from tests.web.conftest import ACME_NET, GLOBEX_NET, NOW, Api

SERVERS = "/api/v1/servers"


def add(api: Api, headers: dict[str, str], network: str, **fields: object) -> dict[str, object]:
    response = api.client.post(SERVERS, json={"network": network, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_customer_adds_lists_gets_and_deletes_its_server(api: Api) -> None:
    created = add(api, api.acme, "81.2.69.7", description="the web shop")
    assert created["network"] == "81.2.69.7/32"
    assert created["state"] == "veilig"
    assert created["customer"] == "acme"
    assert created["description"] == "the web shop"
    server_id = created["id"]

    listed = api.client.get(SERVERS, headers=api.acme)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()] == [server_id]

    one = api.client.get(f"{SERVERS}/{server_id}", headers=api.acme)
    assert one.status_code == 200 and one.json() == created

    deleted = api.client.delete(f"{SERVERS}/{server_id}", headers=api.acme)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.client.get(f"{SERVERS}/{server_id}", headers=api.acme).status_code == 404
    assert api.client.get(SERVERS, headers=api.acme).json() == []


def test_the_network_is_stored_canonical(api: Api) -> None:
    created = add(api, api.acme, " 2a00:1450:4001::/48 ")
    assert created["network"] == "2a00:1450:4001::/48"
    with api.store.session() as session:
        stored = session.scalars(select(SmtpServer.network)).all()
    assert stored == ["2a00:1450:4001::/48"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "network"),
        ({"network": 7}, "network"),
        ({"network": "not an address"}, "network"),
        ({"network": "81.2.69.1/24"}, "network"),  # host bits set
        ({"network": "81.2.69.7", "description": "x" * 201}, "description"),
        ({"network": "81.2.69.7", "description": "two\nlines"}, "description"),
        ({"network": "81.2.69.7", "colour": "red"}, "colour"),
    ],
)
def test_invalid_input_is_422_naming_the_field(api: Api, body: object, field: str) -> None:
    response = api.client.post(SERVERS, json=body, headers=api.acme)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}: "), response.json()
    assert set(response.json()) == {"error"}


def test_a_body_that_is_not_json_is_422(api: Api) -> None:
    response = api.client.post(
        SERVERS, content=b"{nope", headers={**api.acme, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "error" in response.json()


@pytest.mark.parametrize(
    "network",
    ["10.1.2.3", "192.168.0.0/24", "127.0.0.1", "203.0.113.7", "100.64.0.1", "fd00::1", "::1"],
)
def test_a_customer_can_never_register_a_non_global_network(
    api: Api, db_url: str, tmp_path: object, network: str
) -> None:
    response = api.client.post(SERVERS, json={"network": network}, headers=api.acme)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error.startswith("network: ")
    assert "--allow-non-global" not in error  # the command line's option, not the API's


def test_allow_non_global_in_the_config_does_not_reach_customers(
    api: Api, db_url: str, tmp_path: object
) -> None:
    from fastapi.testclient import TestClient

    from osfmilter.web import create_app
    from tests.web.conftest import web_config

    config = web_config(db_url, tmp_path, registration={"allow_non_global": True})  # type: ignore[arg-type]
    with TestClient(create_app(config)) as client:
        refused = client.post(SERVERS, json={"network": "10.0.0.1"}, headers=api.acme)
        assert refused.status_code == 422
        # The operator's setting still holds for the operator.
        allowed = client.post(
            SERVERS, json={"network": "10.0.0.1", "customer": "acme"}, headers=api.operator
        )
        assert allowed.status_code == 201, allowed.text


def test_a_network_wider_than_the_minimum_prefix_is_refused(api: Api) -> None:
    response = api.client.post(SERVERS, json={"network": "81.0.0.0/8"}, headers=api.acme)
    assert response.status_code == 422
    assert response.json()["error"].startswith("network: ")
    assert "/16 or narrower" in response.json()["error"]


def test_an_overlap_with_another_customer_is_409_without_naming_it(api: Api) -> None:
    add(api, api.globex, GLOBEX_NET)
    for network in (GLOBEX_NET, "81.2.70.9", "81.2.0.0/16"):
        response = api.client.post(SERVERS, json={"network": network}, headers=api.acme)
        assert response.status_code == 409, response.text
        assert "globex" not in response.text
        assert "another customer" in response.json()["error"]


def test_a_customer_cannot_overlap_its_own_registration_either(api: Api) -> None:
    add(api, api.acme, ACME_NET)
    for network in (ACME_NET, "81.2.69.3", "81.2.69.0/24"):
        response = api.client.post(SERVERS, json={"network": network}, headers=api.acme)
        assert response.status_code == 409, response.text


def test_a_customer_cannot_register_for_another_customer(api: Api) -> None:
    response = api.client.post(
        SERVERS, json={"network": "81.2.69.7", "customer": "globex"}, headers=api.acme
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("customer: ")
    unknown = api.client.post(
        SERVERS, json={"network": "81.2.69.7", "customer": "nobody"}, headers=api.acme
    )
    # Another customer's name and an unknown one are told alike.
    assert unknown.json()["error"].replace("'nobody'", "'globex'") == response.json()["error"]
    ok = api.client.post(
        SERVERS, json={"network": "81.2.69.7", "customer": "acme"}, headers=api.acme
    )
    assert ok.status_code == 201


def test_an_operator_names_the_customer_and_sees_and_filters_everyone(api: Api) -> None:
    missing = api.client.post(SERVERS, json={"network": "81.2.69.7"}, headers=api.operator)
    assert missing.status_code == 422
    assert missing.json()["error"].startswith("customer: ")
    unknown = api.client.post(
        SERVERS, json={"network": "81.2.69.7", "customer": "nobody"}, headers=api.operator
    )
    assert unknown.status_code == 422 and "nobody" in unknown.json()["error"]

    acme = add(api, api.operator, ACME_NET, customer="acme")
    globex = add(api, api.operator, GLOBEX_NET, customer="globex")
    assert (acme["customer"], globex["customer"]) == ("acme", "globex")

    everyone = api.client.get(SERVERS, headers=api.operator).json()
    assert [s["network"] for s in everyone] == [ACME_NET, GLOBEX_NET]
    only = api.client.get(SERVERS, params={"customer": "globex"}, headers=api.operator).json()
    assert [s["network"] for s in only] == [GLOBEX_NET]
    nobody = api.client.get(SERVERS, params={"customer": "nobody"}, headers=api.operator)
    assert nobody.status_code == 422 and nobody.json()["error"].startswith("customer: ")

    # A customer's list is its own, whatever it asks for.
    assert [s["network"] for s in api.client.get(SERVERS, headers=api.acme).json()] == [ACME_NET]
    other = api.client.get(SERVERS, params={"customer": "globex"}, headers=api.acme)
    assert other.status_code == 422

    for server in (acme, globex):
        assert api.client.get(f"{SERVERS}/{server['id']}", headers=api.operator).status_code == 200
    assert api.client.delete(f"{SERVERS}/{globex['id']}", headers=api.operator).status_code == 204


def test_history_lists_the_state_changes(api: Api) -> None:
    created = add(api, api.acme, ACME_NET)
    server_id = int(str(created["id"]))
    empty = api.client.get(f"{SERVERS}/{server_id}/history", headers=api.acme)
    assert empty.status_code == 200 and empty.json() == []

    reputation = api.client.app.state.context.reputation  # type: ignore[attr-defined]
    reputation.record_incident(IdentityKind.SERVER, server_id, IncidentKind.SPAM, "score 12")
    changes = api.client.get(f"{SERVERS}/{server_id}/history", headers=api.acme).json()
    assert len(changes) == 1
    [change] = changes
    assert (change["old_state"], change["new_state"], change["actor"]) == (
        "veilig",
        "verdacht",
        "system",
    )
    assert set(change) == {"at", "old_state", "new_state", "reason", "actor"}
    assert api.client.get(f"{SERVERS}/{server_id}", headers=api.acme).json()["state"] == "verdacht"

    # Looking is observing: the recovery that fell due is recorded, dated when it did.
    api.clock.moment = NOW + timedelta(days=3)
    later = api.client.get(f"{SERVERS}/{server_id}/history", headers=api.acme).json()
    assert [c["new_state"] for c in later] == ["verdacht", "veilig"]


def test_a_change_reaches_the_milter_through_the_registry_version(api: Api) -> None:
    client = ipaddress.ip_address("81.2.69.3")
    assert api.store.find_identity(client, "") is None
    created = add(api, api.acme, ACME_NET)
    found = api.store.find_identity(client, "")
    assert found is not None and found.customer_id == created_customer_id(api)
    api.client.delete(f"{SERVERS}/{created['id']}", headers=api.acme)
    assert api.store.find_identity(client, "") is None


def created_customer_id(api: Api) -> int:
    with api.store.session() as session:
        return session.scalars(select(SmtpServer.customer_id)).one()


def test_each_change_is_audited_under_the_token_that_made_it(api: Api) -> None:
    server_id = add(api, api.acme, "81.2.69.7")["id"]
    api.client.delete(f"{SERVERS}/{server_id}", headers=api.acme)
    token = api.acme["Authorization"].removeprefix("Bearer ")
    prefix = "osf_" + token.removeprefix("osf_").partition("_")[0]
    with api.store.session() as session:
        logged = [
            (e.actor, e.via, e.remote_addr, e.customer, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    # TestClient's peer is "testclient"; behind uvicorn it is the client's address.
    assert logged == [
        (f"token:{prefix}", "api", "testclient", "acme", "server.add", "81.2.69.7/32"),
        (f"token:{prefix}", "api", "testclient", "acme", "server.remove", "81.2.69.7/32"),
    ]
    assert all(token not in " ".join(row) for row in logged)
