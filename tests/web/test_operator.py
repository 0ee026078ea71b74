"""The operator's endpoints: customers, plans, the audit log, release and block; 403 otherwise."""

from __future__ import annotations

import pytest

from osfmilter.config import Plans
from tests.web.conftest import ACME_NET, Api
from tests.web.helpers import actor, audited, created, error_of

CUSTOMERS = "/api/v1/customers"
OPERATOR_ONLY = [
    ("GET", CUSTOMERS, None),
    ("POST", CUSTOMERS, {"name": "initech"}),
    ("GET", f"{CUSTOMERS}/acme", None),
    ("DELETE", f"{CUSTOMERS}/acme", None),
    ("PUT", f"{CUSTOMERS}/acme/plan", {"plan": "paid"}),
    ("GET", "/api/v1/plans", None),
    ("GET", "/api/v1/audit", None),
    ("POST", f"/api/v1/identities/server/{ACME_NET}/block", {"by": "me", "reason": "x"}),
    ("POST", "/api/v1/identities/sasl/a@acme.example/release", {"by": "me", "reason": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ONLY)
def test_a_customer_token_on_an_operator_endpoint_is_403(
    api: Api, method: str, path: str, body: object
) -> None:
    error = error_of(api.client.request(method, path, json=body, headers=api.acme), 403)
    assert error == "this endpoint needs an operator token"
    assert audited(api) == []


def test_customers_are_added_listed_replanned_and_removed(api: Api) -> None:
    customer = created(api, CUSTOMERS, api.operator, name="initech")
    assert customer == {
        "name": "initech",
        "plan": "free",
        "created_at": customer["created_at"],
        "domains": 0,
        "servers": 0,
        "sasl_accounts": 0,
    }
    names = [c["name"] for c in api.client.get(CUSTOMERS, headers=api.operator).json()]
    assert names == ["acme", "globex", "initech"]
    replanned = api.client.put(
        f"{CUSTOMERS}/initech/plan", json={"plan": "paid"}, headers=api.operator
    )
    assert replanned.status_code == 200 and replanned.json()["plan"] == "paid"
    assert api.client.get(f"{CUSTOMERS}/initech", headers=api.operator).json()["plan"] == "paid"
    assert api.client.delete(f"{CUSTOMERS}/initech", headers=api.operator).status_code == 204
    error_of(api.client.get(f"{CUSTOMERS}/initech", headers=api.operator), 404)
    who = actor(api.operator)
    assert audited(api) == [
        (who, "api", "initech", "customer.add", "initech"),
        (who, "api", "initech", "customer.plan", "initech"),
        (who, "api", "initech", "customer.remove", "initech"),
    ]


def test_customer_errors_are_404_409_and_422_naming_the_field(api: Api) -> None:
    post = api.client.post
    assert "already exists" in error_of(
        post(CUSTOMERS, json={"name": "acme"}, headers=api.operator), 409
    )
    assert error_of(
        post(CUSTOMERS, json={"name": "two words"}, headers=api.operator), 422
    ).startswith("name: ")
    assert error_of(
        post(CUSTOMERS, json={"name": "x", "plan": "gold"}, headers=api.operator), 422
    ).startswith("plan: ")
    put = api.client.put
    assert error_of(
        put(f"{CUSTOMERS}/acme/plan", json={"plan": "gold"}, headers=api.operator), 422
    ).startswith("plan: ")
    error_of(put(f"{CUSTOMERS}/nobody/plan", json={"plan": "paid"}, headers=api.operator), 404)
    error_of(api.client.delete(f"{CUSTOMERS}/nobody", headers=api.operator), 404)
    created(api, "/api/v1/servers", api.acme, network=ACME_NET)
    error = error_of(api.client.delete(f"{CUSTOMERS}/acme", headers=api.operator), 409)
    assert "still has 1 server(s)" in error


def test_the_plans_are_the_configurations(api: Api) -> None:
    plans = api.client.get("/api/v1/plans", headers=api.operator).json()
    assert [p.pop("name") for p in plans] == ["free", "paid"]
    assert plans == [Plans().free.model_dump(), Plans().paid.model_dump()]


def test_the_audit_log_is_newest_first_paged_and_filtered(api: Api) -> None:
    for i in range(5):
        created(api, "/api/v1/sasl-accounts", api.acme, login=f"a{i}@acme.example")
    created(api, "/api/v1/sasl-accounts", api.globex, login="g@globex.example")
    first = api.client.get("/api/v1/audit", params={"limit": 4}, headers=api.operator).json()
    assert [e["target"] for e in first["entries"]] == [
        "g@globex.example",
        "a4@acme.example",
        "a3@acme.example",
        "a2@acme.example",
    ]
    entry = first["entries"][0]
    assert (entry["actor"], entry["via"], entry["action"], entry["customer"]) == (
        actor(api.globex),
        "api",
        "sasl.add",
        "globex",
    )
    rest = api.client.get(first["next"], headers=api.operator).json()
    assert [e["target"] for e in rest["entries"]] == ["a1@acme.example", "a0@acme.example"]
    assert rest["next"] is None
    only = api.client.get("/api/v1/audit", params={"customer": "globex"}, headers=api.operator)
    assert [e["target"] for e in only.json()["entries"]] == ["g@globex.example"]


def test_release_and_block_as_the_command_line_with_history_and_audit(api: Api) -> None:
    server = created(api, "/api/v1/servers", api.acme, network=ACME_NET)
    body = {"by": "ann", "reason": "spam run"}
    # The key is the network, or an address it holds, as `osfmilter server block` takes it.
    blocked = api.client.post(
        "/api/v1/identities/server/81.2.69.3/block", json=body, headers=api.operator
    )
    assert blocked.status_code == 200, blocked.text
    document = blocked.json()
    assert (document["identity"], document["customer"], document["state"]) == (
        f"server:{ACME_NET}",
        "acme",
        "onveilig",
    )
    assert [
        (c["old_state"], c["new_state"], c["actor"], c["reason"]) for c in document["changes"]
    ] == [("veilig", "onveilig", "ann", "spam run")]
    again = api.client.post(
        f"/api/v1/identities/server/{ACME_NET}/block", json=body, headers=api.operator
    )
    assert again.json()["changes"] == [] and again.json()["state"] == "onveilig"
    history = api.client.get(f"/api/v1/servers/{server['id']}/history", headers=api.acme).json()
    assert [h["new_state"] for h in history] == ["onveilig"]

    account = created(api, "/api/v1/sasl-accounts", api.acme, login="app@acme.example")
    path = "/api/v1/identities/sasl/app@acme.example"
    api.client.post(f"{path}/block", json=body, headers=api.operator)
    released = api.client.post(
        f"{path}/release", json={"by": "ann", "reason": "fixed"}, headers=api.operator
    )
    assert released.json()["state"] == "veilig"
    assert (
        api.client.get(f"/api/v1/sasl-accounts/{account['id']}", headers=api.acme).json()["state"]
        == "veilig"
    )
    assert [a[3:] for a in audited(api) if a[3].endswith(("block", "release"))] == [
        ("server.block", ACME_NET),
        ("sasl.block", "app@acme.example"),
        ("sasl.release", "app@acme.example"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "status", "start"),
    [
        ("server/81.2.70.1/block", {"by": "a", "reason": "r"}, 404, "identity not found"),
        ("sasl/nobody@x.example/block", {"by": "a", "reason": "r"}, 404, "identity not found"),
        ("robot/81.2.69.3/block", {"by": "a", "reason": "r"}, 422, "kind: "),
        ("server/81.2.69.3/block", {"reason": "r"}, 422, "by: "),
        ("server/81.2.69.3/block", {"by": "a"}, 422, "reason: "),
        ("server/81.2.69.3/block", {"by": "system", "reason": "r"}, 422, "by: "),
        ("server/81.2.69.3/block", {"by": "a", "reason": "x" * 401}, 422, "reason: "),
    ],
)
def test_release_and_block_errors(
    api: Api, path: str, body: object, status: int, start: str
) -> None:
    created(api, "/api/v1/servers", api.acme, network=ACME_NET)
    response = api.client.post(f"/api/v1/identities/{path}", json=body, headers=api.operator)
    assert error_of(response, status).startswith(start)


def test_a_network_key_may_be_percent_encoded_and_bad_bodies_from_customers_are_403(
    api: Api,
) -> None:
    created(api, "/api/v1/servers", api.acme, network=ACME_NET)
    encoded = ACME_NET.replace("/", "%2F")
    body = {"by": "ann", "reason": "spam run"}
    response = api.client.post(
        f"/api/v1/identities/server/{encoded}/block", json=body, headers=api.operator
    )
    assert response.status_code == 200 and response.json()["state"] == "onveilig"
    # A customer learns nothing from an operator endpoint, not even what its body lacks.
    error_of(api.client.post(CUSTOMERS, json={}, headers=api.acme), 403)
