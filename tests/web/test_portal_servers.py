"""/servers: list, add (the rules explained, errors as 422 with the input kept), remove."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from osfmilter.storage import admin
from osfmilter.storage.schema import SmtpServer
from tests.web.conftest import (
    ACME_USER,
    BROWSER_ADDR,
    Portal,
    audit,
    post_form,
)


def test_a_customer_adds_and_removes_a_server(portal: Portal, acme: TestClient) -> None:
    page = acme.get("/servers")
    assert page.status_code == 200
    assert '<table id="servers">' in page.text
    assert '<form id="add-server" method="post" action="/servers"' in page.text
    assert 'id="network"' in page.text and 'id="description"' in page.text
    assert "veilig" in page.text and "verdacht" in page.text and "onveilig" in page.text

    added = post_form(acme, "/servers", "/servers", network="81.2.69.7", description="the shop")
    assert added.status_code == 303 and added.headers["location"] == "/servers"
    listed = acme.get("/servers")
    assert '<p id="flash" class="flash" role="status">Server 81.2.69.7/32 added.</p>' in listed.text
    assert "<td>81.2.69.7/32</td>" in listed.text and "<td>the shop</td>" in listed.text
    # The message is shown once.
    assert 'id="flash"' not in acme.get("/servers").text

    with portal.store.session() as session:
        server_id = session.scalars(select(SmtpServer.id)).one()
    removed = post_form(acme, "/servers", f"/servers/{server_id}/remove")
    assert removed.status_code == 303
    after = acme.get("/servers")
    assert "81.2.69.7/32 removed" in after.text and "<td>81.2.69.7/32</td>" not in after.text
    assert audit(portal) == [
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "server.add", "81.2.69.7/32"),
        (ACME_USER, "portal", BROWSER_ADDR, "acme", "server.remove", "81.2.69.7/32"),
    ]


@pytest.mark.parametrize(
    ("network", "description", "message"),
    [
        ("", "", "Enter an IP address"),
        ("not an address", "", "not"),
        ("10.0.0.1", "", "private-use"),
        ("81.0.0.0/8", "", "/16"),
        ("81.2.69.7", "two\nlines", "one line"),
        ("81.2.69.7", "x" * 201, "at most 200"),
    ],
)
def test_an_invalid_server_is_422_with_the_input_kept(
    portal: Portal, acme: TestClient, network: str, description: str, message: str
) -> None:
    answer = post_form(acme, "/servers", "/servers", network=network, description=description)
    assert answer.status_code == 422
    error = re.search(r'<p class="error" role="alert">([^<]*)</p>', answer.text)
    assert error and message in html.unescape(error[1])
    assert f'value="{html.escape(network)}"' in answer.text
    assert audit(portal) == []


def test_an_overlap_with_another_customer_is_refused_without_naming_it(
    portal: Portal, acme: TestClient
) -> None:
    with portal.store.session() as session:
        admin.add_server(
            session,
            "81.2.70.0/24",
            "globex",
            portal.app.state.context.config.registration,
            portal.clock.now(),
        )
    answer = post_form(acme, "/servers", "/servers", network="81.2.70.7")
    assert answer.status_code == 422
    assert "another customer" in answer.text and "globex" not in answer.text


def test_a_description_is_escaped(portal: Portal, acme: TestClient) -> None:
    post_form(acme, "/servers", "/servers", network="81.2.69.7", description="<script>x()</script>")
    page = acme.get("/servers").text
    assert "<script>" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
