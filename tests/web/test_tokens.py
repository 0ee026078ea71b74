"""``/api/v1/tokens``: a customer's own tokens, the operator's, shown once, revoked at once."""

from __future__ import annotations

from tests.web.conftest import Api, bearer
from tests.web.helpers import actor, audited, created, error_of

TOKENS = "/api/v1/tokens"


def test_a_customer_creates_lists_and_revokes_its_tokens(api: Api) -> None:
    made = created(api, TOKENS, api.acme, name="deploy")
    secret = made.pop("token")
    assert made["customer"] == "acme" and made["name"] == "deploy"
    assert secret.startswith(made["prefix"] + "_")
    assert made["created_by"] == actor(api.acme)
    # The new token works, and is never shown again.
    listed = api.client.get(TOKENS, headers=bearer(secret))
    assert listed.status_code == 200
    assert {t["customer"] for t in listed.json()} == {"acme"}
    assert made["id"] in [t["id"] for t in listed.json()] and secret not in listed.text
    assert api.client.delete(f"{TOKENS}/{made['id']}", headers=api.acme).status_code == 204
    error_of(api.client.get(TOKENS, headers=bearer(secret)), 401)
    [revoked] = [
        t for t in api.client.get(TOKENS, headers=api.acme).json() if t["id"] == made["id"]
    ]
    assert revoked["revoked_at"] is not None
    # Revoking again changes and records nothing.
    assert api.client.delete(f"{TOKENS}/{made['id']}", headers=api.acme).status_code == 204
    assert audited(api) == [
        (actor(api.acme), "api", "acme", "token.create", made["prefix"]),
        (actor(api.acme), "api", "acme", "token.revoke", made["prefix"]),
    ]


def test_a_customer_never_reaches_another_customers_or_the_operators_tokens(api: Api) -> None:
    theirs = created(api, TOKENS, api.globex)
    operators = created(api, TOKENS, api.operator, name="ops")
    for token in (theirs, operators):
        error_of(api.client.delete(f"{TOKENS}/{token['id']}", headers=api.acme), 404)
    error = error_of(api.client.post(TOKENS, json={"customer": "globex"}, headers=api.acme), 422)
    assert error.startswith("customer: ")
    error_of(api.client.get(TOKENS, params={"customer": "globex"}, headers=api.acme), 422)
    assert api.client.get(TOKENS, headers=bearer(theirs["token"])).status_code == 200


def test_an_operator_manages_operator_tokens_and_any_customers(api: Api) -> None:
    ops = created(api, TOKENS, api.operator, name="ops")
    assert ops["customer"] is None
    theirs = created(api, TOKENS, api.operator, customer="globex", name="for globex")
    assert theirs["customer"] == "globex"
    mine = api.client.get(TOKENS, headers=api.operator).json()
    assert {t["customer"] for t in mine} == {None} and ops["id"] in [t["id"] for t in mine]
    globex = api.client.get(TOKENS, params={"customer": "globex"}, headers=api.operator).json()
    assert theirs["id"] in [t["id"] for t in globex] and {t["customer"] for t in globex} == {
        "globex"
    }
    assert api.client.delete(f"{TOKENS}/{theirs['id']}", headers=api.operator).status_code == 204
    error_of(api.client.get(TOKENS, headers=bearer(theirs["token"])), 401)
    error = error_of(api.client.post(TOKENS, json={"name": "x" * 101}, headers=api.operator), 422)
    assert error.startswith("name: ")
    error = error_of(api.client.post(TOKENS, json={"name": "a\nb"}, headers=api.operator), 422)
    assert error.startswith("name: ")
