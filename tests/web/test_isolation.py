"""Tenant isolation: every endpoint with a path parameter answers another customer's object
as it answers a missing one, and every list shows a customer only its own.

The tables below must name every route under /api/v1 (as the OpenAPI
document lists them): a new endpoint fails this test until it is added,
with the request that tries it on globex's objects.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from osfmilter.storage.schema import Customer, MonthlyVolume
from tests.web.conftest import ACME_NET, GLOBEX_NET, NOW, Api
from tests.web.helpers import created, event

BLOCK = {"by": "acme", "reason": "trying"}
# (method, path) -> (JSON body, the answer to a customer's token). 404: an
# object's id, another customer's told as a missing one; 403: the operator's.
WITH_PARAMS: dict[tuple[str, str], tuple[object, int]] = {
    ("GET", "/api/v1/servers/{server_id}"): (None, 404),
    ("DELETE", "/api/v1/servers/{server_id}"): (None, 404),
    ("GET", "/api/v1/servers/{server_id}/history"): (None, 404),
    ("GET", "/api/v1/sasl-accounts/{account_id}"): (None, 404),
    ("DELETE", "/api/v1/sasl-accounts/{account_id}"): (None, 404),
    ("POST", "/api/v1/sasl-accounts/{account_id}/password"): (None, 404),
    ("GET", "/api/v1/sasl-accounts/{account_id}/history"): (None, 404),
    ("GET", "/api/v1/domains/{domain_id}"): (None, 404),
    ("DELETE", "/api/v1/domains/{domain_id}"): (None, 404),
    ("POST", "/api/v1/domains/{domain_id}/verify"): (None, 404),
    ("DELETE", "/api/v1/tokens/{token_id}"): (None, 404),
    ("GET", "/api/v1/customers/{name}"): (None, 403),
    ("DELETE", "/api/v1/customers/{name}"): (None, 403),
    ("PUT", "/api/v1/customers/{name}/plan"): ({"plan": "free"}, 403),
    ("POST", "/api/v1/identities/{kind}/{key}/release"): (BLOCK, 403),
    ("POST", "/api/v1/identities/{kind}/{key}/block"): (BLOCK, 403),
}
# Routes without a path parameter: a list must show acme nothing of globex's
# (the check below), or the route is the operator's (403).
WITHOUT_PARAMS: dict[tuple[str, str], int] = {
    ("GET", "/api/v1/servers"): 200,
    ("POST", "/api/v1/servers"): 0,
    ("GET", "/api/v1/sasl-accounts"): 200,
    ("POST", "/api/v1/sasl-accounts"): 0,
    ("GET", "/api/v1/domains"): 200,
    ("POST", "/api/v1/domains"): 0,
    ("GET", "/api/v1/usage"): 200,
    ("GET", "/api/v1/bill"): 200,
    ("GET", "/api/v1/events"): 200,
    ("GET", "/api/v1/tokens"): 200,
    ("POST", "/api/v1/tokens"): 0,
    ("GET", "/api/v1/customers"): 403,
    ("POST", "/api/v1/customers"): 403,
    ("GET", "/api/v1/plans"): 403,
    ("GET", "/api/v1/audit"): 403,
}
# 0: creates; a customer names another customer there only to get 422
# (test_servers, test_sasl, test_domains, test_tokens).


def api_routes(api: Api) -> set[tuple[str, str]]:
    """Every (method, path) the application serves under /api/v1, from its OpenAPI document."""
    document = api.client.get("/api/v1/openapi.json").json()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }


def test_every_api_route_is_in_the_isolation_tables(api: Api) -> None:
    routes = api_routes(api)
    missing = routes - set(WITH_PARAMS) - set(WITHOUT_PARAMS)
    assert not missing, f"add these routes to tests/web/test_isolation.py: {sorted(missing)}"
    assert set(WITH_PARAMS) | set(WITHOUT_PARAMS) <= routes  # no stale rows either
    assert all("{" in path for _, path in WITH_PARAMS)
    assert all("{" not in path for _, path in WITHOUT_PARAMS)


def seed_globex(api: Api) -> dict[str, str]:
    """globex's server, SASL account, domain and token, its events and volume: path values."""
    server = created(api, "/api/v1/servers", api.globex, network=GLOBEX_NET)
    account = created(api, "/api/v1/sasl-accounts", api.globex, login="shop@globex.example")
    domain = created(api, "/api/v1/domains", api.globex, domain="globex.example")
    token = created(api, "/api/v1/tokens", api.globex, name="globex deploy")
    with api.store.session() as session:
        globex = session.scalars(select(Customer).where(Customer.name == "globex")).one()
        session.add(
            MonthlyVolume(
                month="2026-12",
                direction="outbound",
                customer_id=globex.id,
                domain="globex.example",
                messages=1,
                bytes=100,
            )
        )
        session.add(event(globex.id, NOW - timedelta(minutes=1), queue_id="GLOBEXQ"))
    return {
        "server_id": str(server["id"]),
        "account_id": str(account["id"]),
        "domain_id": str(domain["id"]),
        "token_id": str(token["id"]),
        "name": "globex",
        "kind": "server",
        "key": GLOBEX_NET,
    }


def fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


@pytest.mark.parametrize(("method", "path"), sorted(WITH_PARAMS))
def test_another_customers_objects_are_told_as_missing_ones(
    api: Api, method: str, path: str
) -> None:
    theirs = seed_globex(api)
    missing = {
        key: str(int(value) + 1000) if value.isdigit() else value for key, value in theirs.items()
    }
    missing.update(name="nobody", key="81.2.71.0/24")
    body, status = WITH_PARAMS[(method, path)]
    answers = []
    for values in (theirs, missing):
        response = api.client.request(method, fill(path, values), json=body, headers=api.acme)
        assert response.status_code == status, (method, path, response.text)
        answers.append(response.json())
    assert answers[0] == answers[1], (method, path)
    assert "globex" not in str(answers)
    # globex's objects are untouched.
    for check in ("servers/{server_id}", "sasl-accounts/{account_id}", "domains/{domain_id}"):
        assert (
            api.client.get(fill(f"/api/v1/{check}", theirs), headers=api.globex).status_code == 200
        )
    tokens = api.client.get("/api/v1/tokens", headers=api.globex).json()
    assert all(t["revoked_at"] is None for t in tokens)


def test_lists_show_a_customer_nothing_of_anothers(api: Api) -> None:
    seed_globex(api)
    created(api, "/api/v1/servers", api.acme, network=ACME_NET)
    for (method, path), status in WITHOUT_PARAMS.items():
        if not status:
            continue
        response = api.client.request(method, path, headers=api.acme)
        assert response.status_code == status, (path, response.text)
        assert "globex" not in response.text.lower(), path
        if status == 200:  # and the operator's view of globex holds globex's
            theirs = api.client.request(
                method, path, params={"customer": "globex"}, headers=api.operator
            )
            assert "globex" in theirs.text.lower(), path
