"""The portal's login: the password check, the throttle, sessions that rotate, expire and end."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from osfmilter.storage import admin, users
from osfmilter.storage.schema import LoginFailure, WebSession
from osfmilter.storage.store import SqlStore
from osfmilter.web import create_app
from osfmilter.web.portal import csrf, sessions, throttle
from tests.web.conftest import (
    ACME_USER,
    NOW,
    PASSWORD,
    FixedClock,
    Portal,
    csrf_of,
    password_hash,
    post_form,
    post_login,
    web_config,
)

WRONG = "Wrong e-mail address or password."
THROTTLED = "Too many failed logins. Try again in 15 minutes."


def session_rows(portal: Portal) -> int:
    with portal.store.session() as session:
        return session.scalar(select(func.count()).select_from(WebSession)) or 0


def test_the_login_form_has_the_fields_of_the_contract(portal: Portal) -> None:
    page = portal.client().get("/login")
    assert page.status_code == 200
    html = page.text
    assert '<form method="post" action="/login"' in html
    assert 'name="email" id="email"' in html
    assert 'type="password" name="password" id="password"' in html
    assert '<label for="email">' in html and '<label for="password">' in html
    assert 'type="hidden" name="csrf_token"' in html and '<button type="submit">' in html


def test_a_page_without_a_session_redirects_to_the_login(portal: Portal) -> None:
    browser = portal.client()
    assert browser.get("/").headers["location"] == "/login"
    answer = browser.get("/?view=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2F%3Fview%3D1"


def test_login_opens_a_new_session_and_goes_to_the_dashboard(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.client()
    response = post_login(browser, ACME_USER.upper(), PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert sessions.COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http, cookie_secure not set
    dashboard = browser.get("/")
    assert dashboard.status_code == 200 and "<h1>Dashboard</h1>" in dashboard.text
    # Logged in, the login page sends one on.
    assert browser.get("/login").headers["location"] == "/"


def test_login_goes_back_to_a_same_site_next_only(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.client()
    page = browser.get("/login?next=//evil.example/x")
    assert "evil" not in page.text
    token = csrf_of(browser.get("/login?next=/tokens").text)
    response = browser.post(
        "/login",
        data={"email": ACME_USER, "password": PASSWORD, "csrf_token": token, "next": "/tokens"},
    )
    assert response.headers["location"] == "/tokens"


def test_a_wrong_password_and_an_unknown_account_get_the_same_401(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.client()
    wrong = post_login(browser, ACME_USER, "not the password")
    unknown = post_login(browser, "nobody@acme.example", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401 and WRONG in response.text
        assert sessions.COOKIE not in response.headers.get("set-cookie", "")
        assert "not the password" not in response.text
    assert session_rows(portal) == 0


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "non-existent"])
def test_the_sixth_attempt_for_an_account_is_429_either_way(portal: Portal, exists: bool) -> None:
    email = ACME_USER if exists else "nobody@acme.example"
    if exists:
        portal.add_user(ACME_USER, "acme")
    for attempt in range(5):
        # From five addresses: this is the account's count, not an address's.
        answer = post_login(portal.client(f"192.0.2.{attempt + 1}"), email, "wrong password")
        assert answer.status_code == 401
    throttled = post_login(portal.client("192.0.2.99"), email, PASSWORD)
    assert throttled.status_code == 429 and THROTTLED in throttled.text
    assert WRONG not in throttled.text and throttled.headers["retry-after"] == "900"
    assert session_rows(portal) == 0
    # 15 minutes later the failures no longer count, and are gone.
    portal.clock.moment += throttle.WINDOW + timedelta(seconds=1)
    if exists:
        assert post_login(portal.client("192.0.2.99"), email, PASSWORD).status_code == 303
    else:
        assert post_login(portal.client("192.0.2.99"), email, "x").status_code == 401
    with portal.store.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == (
            0 if exists else 1
        )


def test_five_failures_from_one_address_throttle_every_account_there(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.client("198.51.100.7")
    for number in range(5):
        assert post_login(browser, f"guess{number}@acme.example", "x").status_code == 401
    throttled = post_login(browser, ACME_USER, PASSWORD)
    assert throttled.status_code == 429 and THROTTLED in throttled.text
    # Another address is not held back.
    assert post_login(portal.client("198.51.100.8"), ACME_USER, PASSWORD).status_code == 303


def test_a_success_does_not_reset_the_address_count(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.client("198.51.100.9")
    for number in range(4):
        assert post_login(browser, f"guess{number}@acme.example", "x").status_code == 401
    assert post_login(browser, ACME_USER, PASSWORD).status_code == 303
    assert post_login(portal.client("198.51.100.9"), "guess@acme.example", "x").status_code == 401
    assert post_login(portal.client("198.51.100.9"), ACME_USER, PASSWORD).status_code == 429


def test_a_throttled_answer_is_delayed(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "DELAY_SECONDS", 0.2)
    browser = portal.client("198.51.100.10")
    for number in range(5):
        post_login(browser, f"guess{number}@acme.example", "x")
    started = time.monotonic()
    assert post_login(browser, "guess@acme.example", "x").status_code == 429
    assert time.monotonic() - started >= 0.2


def test_the_session_id_rotates_at_login(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    first = browser.cookies[sessions.COOKIE]
    assert session_rows(portal) == 1
    # Logging in again with the old cookie (the form fetched by another browser:
    # a logged-in one is sent on from /login).
    token = csrf_of(portal.client().get("/login").text)
    browser.cookies.set(csrf.LOGIN_COOKIE, token)
    again = browser.post(
        "/login", data={"email": ACME_USER, "password": PASSWORD, "csrf_token": token}
    )
    assert again.status_code == 303
    second = browser.cookies[sessions.COOKIE]
    assert second != first
    # The old session's row is gone: one row, the new one.
    assert session_rows(portal) == 1
    with portal.store.session() as session:
        hashes = session.scalars(select(WebSession.token_hash)).all()
    assert hashes == [sessions.hash_secret(second)]
    stale = portal.client()
    stale.cookies.set(sessions.COOKIE, first)
    assert stale.get("/").status_code == 303


def test_logout_deletes_the_session(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    secret = browser.cookies[sessions.COOKIE]
    html = browser.get("/").text
    assert '<form method="post" action="/logout"' in html
    assert 'id="logout"' in html
    response = post_form(browser, "/", "/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert session_rows(portal) == 0
    replay = portal.client()
    replay.cookies.set(sessions.COOKIE, secret)
    assert replay.get("/").status_code == 303


def test_a_session_ends_when_idle_and_at_its_expiry(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = portal.login(ACME_USER)
    start = portal.clock.moment
    # Used every 59 minutes it lives on, until 12 hours after the login.
    while portal.clock.moment + timedelta(minutes=59) < start + timedelta(hours=12):
        portal.clock.moment += timedelta(minutes=59)
        assert browser.get("/").status_code == 200
    portal.clock.moment = start + timedelta(hours=12)
    assert browser.get("/").status_code == 303
    assert session_rows(portal) == 0

    again = portal.login(ACME_USER)
    portal.clock.moment += timedelta(minutes=59)
    assert again.get("/").status_code == 200
    portal.clock.moment += timedelta(minutes=60)  # idle for the whole hour
    assert again.get("/").status_code == 303
    assert session_rows(portal) == 0


def test_the_session_cookie_is_secure_over_https(portal: Portal) -> None:
    portal.add_user(ACME_USER, "acme")
    browser = TestClient(portal.app, base_url="https://testserver", follow_redirects=False)
    response = post_login(browser, ACME_USER, PASSWORD)
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_cookie_secure_marks_the_cookies_secure_over_plain_http(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        users.add_user(session, ACME_USER, "acme", password_hash(), NOW)
    app = create_app(web_config(db_url, tmp_path, web={"cookie_secure": True}), FixedClock())
    with TestClient(app, follow_redirects=False) as browser:
        login_page = browser.get("/login")
        assert "Secure" in login_page.headers["set-cookie"]
        token = csrf_of(login_page.text)
        # A client sends a Secure cookie over https only: as the TLS proxy would.
        response = browser.post(
            "/login",
            data={"email": ACME_USER, "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"{csrf.LOGIN_COOKIE}={token}"},
        )
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]
        assert "strict-transport-security" not in response.headers  # still plain http


def test_a_trusted_proxy_names_the_client_and_the_scheme(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    store = SqlStore(engine)
    config = web_config(db_url, tmp_path, web={"trusted_proxies": ["127.0.0.1"]})
    app = create_app(config, FixedClock())

    def via(proxy: str, client: str, base_url: str = "https://testserver") -> TestClient:
        headers = {"X-Forwarded-For": client, "X-Forwarded-Proto": "https"}
        return TestClient(
            app, base_url, client=(proxy, 40000), headers=headers, follow_redirects=False
        )

    with TestClient(app):
        # The proxy took the request over https: Secure cookies, HSTS.
        page = via("127.0.0.1", "198.51.100.7", "http://testserver").get("/login")
        assert "Secure" in page.headers["set-cookie"]
        assert "strict-transport-security" in page.headers
        untrusted = via("192.0.2.50", "198.51.100.7", "http://testserver").get("/login")
        assert "strict-transport-security" not in untrusted.headers

        for number in range(5):
            answer = post_login(via("127.0.0.1", "198.51.100.7"), f"g{number}@acme.example", "x")
            assert answer.status_code == 401
        # That client is throttled; another behind the same proxy is not.
        assert (
            post_login(via("127.0.0.1", "198.51.100.7"), "a@acme.example", "x").status_code == 429
        )
        assert (
            post_login(via("127.0.0.1", "198.51.100.8"), "a@acme.example", "x").status_code == 401
        )
        # An untrusted client's X-Forwarded-For is not believed.
        assert (
            post_login(via("192.0.2.50", "198.51.100.9"), "a@acme.example", "x").status_code == 401
        )
    with store.session() as session:
        addresses = set(session.scalars(select(LoginFailure.remote_addr)))
    assert addresses == {"198.51.100.7", "198.51.100.8", "192.0.2.50"}
