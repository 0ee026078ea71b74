"""The portal's guards: CSRF on every form route, security headers everywhere, error pages."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from osfmilter.web.portal import PAGES, csrf
from osfmilter.web.portal.headers import CONTENT_SECURITY_POLICY
from tests.web.conftest import ACME_USER, Portal, make_token, portal_routes

REFUSED = "The form has expired or did not come from this site."


def portal_posts(portal: Portal) -> list[str]:
    """Every POST route the application serves outside the API, its ids filled with 1."""
    posts = sorted(path for method, path in portal_routes(portal.app) if method == "POST")
    return [re.sub(r"\{[^}]+\}", "1", path) for path in posts]


def test_the_served_portal_routes_are_the_page_modules_routes(portal: Portal) -> None:
    pages = {
        (method, route.path)
        for page in PAGES
        for route in page.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert ("POST", "/login") in pages
    assert portal_routes(portal.app) == pages


def test_every_portal_post_refuses_a_missing_or_wrong_csrf_token(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    paths = portal_posts(portal)
    assert {"/login", "/logout"} <= set(paths)
    for path in paths:
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            response = browser.post(path, data=data)
            assert response.status_code == 403, (path, data, response.text)
            assert REFUSED in response.text, path
    # The session survived all of that: refusals change nothing.
    assert browser.get("/").status_code == 200


def test_the_login_form_checks_its_double_submit_cookie(portal: Portal) -> None:
    browser = portal.client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert token is not None
    browser.cookies.delete(csrf.LOGIN_COOKIE)
    answer = browser.post(
        "/login", data={"email": ACME_USER, "password": "x", "csrf_token": token[1]}
    )
    assert answer.status_code == 403 and REFUSED in answer.text


def test_security_headers_on_a_page_and_on_an_api_answer(portal: Portal) -> None:
    browser = portal.client()
    token = make_token(portal.store, "acme")
    for response in (
        browser.get("/login"),
        browser.get("/api/v1/servers", headers={"Authorization": f"Bearer {token}"}),
        browser.get("/api/v1/servers"),  # a 401
        browser.get("/no-such-page"),  # a 404 page
    ):
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in headers  # plain http
    css = browser.get("/static/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"


def test_pages_use_no_script_and_no_inline_style(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    for html in (portal.client().get("/login").text, browser.get("/").text):
        assert "<script" not in html and "style=" not in html and "<style" not in html
        assert 'lang="en"' in html and 'href="#main"' in html


def test_an_unknown_page_is_an_html_404_and_the_api_keeps_json(portal: Portal) -> None:
    browser = portal.client()
    page = browser.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    api = browser.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json() == {"error": "not found"}


def test_an_internal_error_is_a_page_with_the_headers_and_no_traceback(
    portal: Portal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from osfmilter.web.portal.pages import servers

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    monkeypatch.setattr(servers, "servers_of", broken)
    client = TestClient(portal.app, raise_server_exceptions=False, cookies=browser.cookies)
    response = client.get("/servers")
    assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert "secret internals" in caplog.text
