"""Tenant isolation: every endpoint that takes an id answers another customer's id with 404.

The table below must name every route under /api/v1 (as the OpenAPI
document lists them): a new endpoint fails this test until it is added,
with the request that tries it on globex's id.
"""

from __future__ import annotations

from tests.web.conftest import ACME_NET, GLOBEX_NET, Api

# (method, path) -> JSON body; {id} is filled with the other customer's id.
WITH_ID: dict[tuple[str, str], object] = {
    ("GET", "/api/v1/servers/{server_id}"): None,
    ("DELETE", "/api/v1/servers/{server_id}"): None,
    ("GET", "/api/v1/servers/{server_id}/history"): None,
}
# Routes without an id: checked by what they list or accept (test_servers.py
# and the listing check below).
WITHOUT_ID = {
    ("GET", "/api/v1/servers"),
    ("POST", "/api/v1/servers"),
}


def api_routes(api: Api) -> set[tuple[str, str]]:
    """Every (method, path) the application serves under /api/v1, from its OpenAPI document."""
    document = api.client.get("/api/v1/openapi.json").json()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    }


def test_every_api_route_is_in_the_isolation_table(api: Api) -> None:
    routes = api_routes(api)
    missing = routes - set(WITH_ID) - WITHOUT_ID
    assert not missing, f"add these routes to tests/web/test_isolation.py: {sorted(missing)}"
    assert set(WITH_ID) | WITHOUT_ID <= routes  # no stale rows either


def test_another_customers_ids_are_404_like_missing_ones(api: Api) -> None:
    acme = api.client.post("/api/v1/servers", json={"network": ACME_NET}, headers=api.acme)
    globex = api.client.post("/api/v1/servers", json={"network": GLOBEX_NET}, headers=api.globex)
    acme_id, globex_id = acme.json()["id"], globex.json()["id"]
    missing_id = max(acme_id, globex_id) + 1000
    for (method, path), body in WITH_ID.items():
        answers = []
        for other in (globex_id, missing_id):
            url = path.replace("{server_id}", str(other))
            response = api.client.request(method, url, json=body, headers=api.acme)
            assert response.status_code == 404, (method, url, response.text)
            answers.append(response.json())
        # Another customer's id and a missing one are told alike.
        assert answers[0] == answers[1], (method, path)
        assert "globex" not in str(answers)
    # globex's server is untouched, and acme's own still answers.
    assert api.client.get(f"/api/v1/servers/{globex_id}", headers=api.globex).status_code == 200
    assert api.client.get(f"/api/v1/servers/{acme_id}", headers=api.acme).status_code == 200
    listed = api.client.get("/api/v1/servers", headers=api.acme).json()
    assert [s["id"] for s in listed] == [acme_id]
