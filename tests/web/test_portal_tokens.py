"""/tokens: a token made, shown once, working on the API, and revoked."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.web.conftest import (
    Portal,
    audit,
    bearer,
    post_form,
    shown_once,
)


def test_a_token_is_made_shown_once_works_and_is_revoked(portal: Portal, acme: TestClient) -> None:
    page = acme.get("/tokens")
    assert (
        '<table id="tokens">' in page.text
        and '<form id="add-token" method="post" action="/tokens"' in page.text
    )
    made = post_form(acme, "/tokens", "/tokens", name="deploy <script>")
    assert made.status_code == 200
    token = shown_once(made.text, "new-token")
    assert "deploy &lt;script&gt;" in made.text
    assert acme.get("/api/v1/servers", headers=bearer(token)).status_code == 200
    later = acme.get("/tokens").text
    assert token not in later and 'id="new-token"' not in later

    match = re.search(r'action="/tokens/(\d+)/revoke"', later)
    assert match
    revoked = post_form(acme, "/tokens", f"/tokens/{match[1]}/revoke")
    assert revoked.status_code == 303
    assert acme.get("/api/v1/servers", headers=bearer(token)).status_code == 401
    prefix = token.split("_")[1]
    assert [row[4:] for row in audit(portal)] == [
        ("token.create", f"osf_{prefix}"),
        ("token.revoke", f"osf_{prefix}"),
    ]


def test_a_bad_token_name_is_422(portal: Portal, acme: TestClient) -> None:
    answer = post_form(acme, "/tokens", "/tokens", name="x" * 101)
    assert answer.status_code == 422 and 'class="error"' in answer.text
    assert 'id="new-token"' not in answer.text
