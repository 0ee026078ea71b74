"""The flash cookie: a message this session signed, and nothing else, is shown."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from osfmilter.web.portal import flash, sessions
from tests.web.conftest import Portal

KEY = "the session's csrf token"


def test_a_signed_message_decodes() -> None:
    assert flash.decode(KEY, flash.encode(KEY, "Server added.")) == "Server added."


@pytest.mark.parametrize(
    "mac",
    ["é" * 64, "0" * 63, "0" * 65, "g" * 64, "A" * 64, "", "\u0660" * 64],
)
def test_a_tampered_mac_is_no_message_and_no_error(mac: str) -> None:
    body = flash.encode(KEY, "Server added.").partition(".")[0]
    assert flash.decode(KEY, f"{body}.{mac}") is None


def test_a_non_ascii_flash_cookie_does_not_break_the_page(acme: TestClient, portal: Portal) -> None:
    body = flash.encode(KEY, "planted").partition(".")[0]
    session = acme.cookies[sessions.COOKIE]
    # Raw bytes, as a hostile browser may send them (httpx would refuse the text).
    cookie = f"{sessions.COOKIE}={session}; {flash.COOKIE}={body}.{'é' * 64}".encode()
    browser = portal.client()
    page = browser.get("/servers", headers={b"Cookie": cookie})
    assert page.status_code == 200 and "planted" not in page.text
