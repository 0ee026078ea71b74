"""A whole portal flow: no password, token or session secret in any log line."""

from __future__ import annotations

import logging

import pytest

from tests.web.conftest import (
    ACME_USER,
    PASSWORD,
    Portal,
    bearer,
    post_form,
    post_login,
    shown_once,
)


def test_no_password_or_token_in_the_logs_of_a_whole_flow(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    portal.add_user(ACME_USER, "acme")
    browser = portal.client()
    assert post_login(browser, ACME_USER, "a wrong password").status_code == 401
    assert post_login(browser, ACME_USER, PASSWORD).status_code == 303
    secrets = [PASSWORD, "a wrong password", browser.cookies["osfmilter_session"]]
    made = post_form(browser, "/sasl", "/sasl", login="shop@acme.example")
    secrets.append(shown_once(made.text, "new-password"))
    token = shown_once(post_form(browser, "/tokens", "/tokens", name="ci").text, "new-token")
    secrets.append(token)
    browser.get("/api/v1/servers", headers=bearer(token))
    post_form(browser, "/servers", "/servers", network="81.2.69.7")
    browser.get("/")
    post_form(browser, "/", "/logout")
    assert caplog.records  # something was logged, so the check means something
    for secret in secrets:
        assert secret not in caplog.text
