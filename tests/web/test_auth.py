"""Bearer tokens: no, malformed, wrong, revoked or orphaned tokens get the same 401 JSON."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from osfmilter import tokens
from osfmilter.storage import users
from osfmilter.storage.schema import ApiToken
from tests.web.conftest import NOW, Api, bearer, make_token

SERVERS = "/api/v1/servers"


def assert_401(response: object) -> None:
    assert response.status_code == 401, response.text  # type: ignore[attr-defined]
    assert response.headers["WWW-Authenticate"] == "Bearer"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and body["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer osf_aaaaaaaa_" + "a" * 31},
        {"Authorization": "Token osf_aaaaaaaa_" + "a" * 32},
    ],
    ids=["none", "empty", "no-token", "basic", "malformed", "short", "other-scheme"],
)
def test_no_or_malformed_token_is_401(api: Api, headers: dict[str, str]) -> None:
    assert_401(api.client.get(SERVERS, headers=headers))
    assert_401(api.client.post(SERVERS, json={"network": "81.2.69.7"}, headers=headers))


def test_a_wrong_secret_is_401(api: Api) -> None:
    token = api.acme["Authorization"].removeprefix("Bearer ")
    prefix, secret = tokens.parse(token) or ("", "")
    wrong = f"osf_{prefix}_{'b' * 32 if secret != 'b' * 32 else 'c' * 32}"
    assert_401(api.client.get(SERVERS, headers=bearer(wrong)))
    unknown = tokens.generate().token
    assert_401(api.client.get(SERVERS, headers=bearer(unknown)))


def test_a_revoked_token_is_401_at_once(api: Api) -> None:
    token = make_token(api.store, "acme")
    assert api.client.get(SERVERS, headers=bearer(token)).status_code == 200
    with api.store.session() as session:
        users.revoke_token(session, token, NOW)
    assert_401(api.client.get(SERVERS, headers=bearer(token)))


def test_the_token_is_never_echoed_and_its_use_is_recorded(api: Api) -> None:
    token = api.acme["Authorization"].removeprefix("Bearer ")
    response = api.client.get(SERVERS, headers=bearer(token + "x"))
    assert token not in response.text
    api.client.get(SERVERS, headers=api.acme)
    prefix = (tokens.parse(token) or ("", ""))[0]
    with api.store.session() as session:
        used = session.scalars(select(ApiToken.last_used_at).where(ApiToken.prefix == prefix))
        assert used.one() == NOW


def test_the_openapi_document_is_public_and_describes_the_servers(api: Api) -> None:
    response = api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert {"/api/v1/servers", "/api/v1/servers/{server_id}"} <= set(document["paths"])
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    # No docs UI: nothing loads scripts from a CDN.
    assert api.client.get("/docs").status_code == 404


def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    missing = api.client.get("/api/v1/nothing", headers=api.acme)
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
    method = api.client.put(SERVERS, headers=api.acme)
    assert method.status_code == 405 and set(method.json()) == {"error"}
    bad_id = api.client.get(f"{SERVERS}/abc", headers=api.acme)
    assert bad_id.status_code == 422 and bad_id.json()["error"].startswith("server_id: ")


def test_an_internal_error_is_500_without_a_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from osfmilter.web.api import servers

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    api.client.post(SERVERS, json={"network": "81.2.69.7"}, headers=api.acme)
    monkeypatch.setattr(servers, "_out", broken)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get(SERVERS, headers=api.acme)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret internals" not in response.text and "Traceback" not in response.text
    # The log has the failure, never the token.
    token = api.acme["Authorization"].removeprefix("Bearer ")
    assert "secret internals" in caplog.text and token not in caplog.text
