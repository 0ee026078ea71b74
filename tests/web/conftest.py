"""The API and the portal on a test database of each backend: customers, tokens, users."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import Engine, select

from osfmilter import passwords, tokens
from osfmilter.config import Config, config_from_dict
from osfmilter.storage import admin, users
from osfmilter.storage.schema import AuditEntry
from osfmilter.storage.store import SqlStore
from osfmilter.web import create_app
from tests.harness.dnsserver import DnsServer
from tests.harness.spfzone import INCLUDE, RELAY_V4, SILENT
from tests.harness.spfzone import ZONE as SPF_ZONE

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Global unicast space: the API never registers documentation or private networks.
ACME_NET = "81.2.69.0/28"
GLOBEX_NET = "81.2.70.0/24"


class FixedClock:
    """Wall clock and monotonic clock (the throttle's), each moved by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.moment = now
        self.seconds = 0.0

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.seconds


@dataclass
class Api:
    """A TestClient and the bearer headers of acme's, globex's and the operator's tokens."""

    client: TestClient
    store: SqlStore
    acme: dict[str, str]
    globex: dict[str, str]
    operator: dict[str, str]
    clock: FixedClock
    # The only DNS the API asks (domain checks and verification): on loopback.
    dns: DnsServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(store: SqlStore, customer: str | None) -> str:
    made = tokens.generate()
    with store.session() as session:
        users.add_token(session, made.prefix, made.hash, customer, NOW, created_by="tests")
    return made.token


def web_config(db_url: str, tmp_path: Path, **sections: dict[str, object]) -> Config:
    # Never the system's resolvers: a silent loopback port unless a test names its server.
    spf: dict[str, object] = {
        "outbound_ips": [RELAY_V4],
        "include": INCLUDE,
        "nameservers": ["127.0.0.1:9"],
    }
    spf.update(sections.pop("spf", {}))
    return config_from_dict(
        {"state_dir": str(tmp_path), "database": {"url": db_url}, "spf": spf, **sections}
    )


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer(SPF_ZONE, silent=SILENT) as server:
        yield server


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    """The loopback DNS server, answering from the SPF zone again at each test's start."""
    dns_server.serve(SPF_ZONE)
    return dns_server


@pytest.fixture
def api(db_url: str, engine: Engine, tmp_path: Path, dns: DnsServer) -> Iterator[Api]:
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "globex", "paid", NOW)
    clock = FixedClock()
    config = web_config(db_url, tmp_path, spf={"nameservers": [dns.nameserver], "timeout": 0.5})
    app = create_app(config, clock)
    with TestClient(app) as client:
        yield Api(
            client,
            store,
            bearer(make_token(store, "acme")),
            bearer(make_token(store, "globex")),
            bearer(make_token(store, None)),
            clock,
            dns,
        )


# The portal ------------------------------------------------------------------

PASSWORD = "correct horse battery staple"  # noqa: S105 (the test users')
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
BROWSER_ADDR = "192.0.2.10"  # Portal.client's address unless told otherwise
ACME_USER = "alice@acme.example"
GLOBEX_USER = "gus@globex.example"
OPERATOR_USER = "olga@relay.example"


@cache
def password_hash() -> str:
    """One Argon2 hash for every test user: hashing costs 0.3 s, so it is made once per run."""
    return passwords.hash_password(PASSWORD)


@dataclass
class Portal:
    """The application on a test database with customers acme and globex, and a way in."""

    app: FastAPI
    store: SqlStore
    clock: FixedClock

    def client(self, addr: str = BROWSER_ADDR) -> TestClient:
        """A browser of its own (its own cookies), from an address."""
        return TestClient(self.app, client=(addr, 50000), follow_redirects=False)

    def add_user(self, email: str, customer: str | None) -> None:
        with self.store.session() as session:
            users.add_user(session, email, customer, password_hash(), self.clock.now())

    def login(self, email: str, addr: str = BROWSER_ADDR) -> TestClient:
        """A browser logged in as ``email`` (a user made by add_user)."""
        browser = self.client(addr)
        response = post_login(browser, email, PASSWORD)
        assert response.status_code == 303, response.text
        return browser


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no csrf_token field on the page"
    return match[1]


def post_login(browser: TestClient, email: str, password: str) -> Response:
    token = csrf_of(browser.get("/login").text)
    return browser.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(browser: TestClient, page: str, action: str, **fields: str) -> Response:
    """Submit a form as a browser does: the CSRF token taken from the page it is on."""
    token = csrf_of(browser.get(page).text)
    return browser.post(action, data={**fields, "csrf_token": token})


@pytest.fixture
def portal(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dns: DnsServer
) -> Iterator[Portal]:
    from osfmilter.web.portal import throttle

    monkeypatch.setattr(throttle, "DELAY_SECONDS", 0.0)
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "globex", "paid", NOW)
    clock = FixedClock()
    # The domain pages ask DNS: the loopback server (``dns``), never a silent port's timeout.
    config = web_config(db_url, tmp_path, spf={"nameservers": [dns.nameserver], "timeout": 0.5})
    app = create_app(config, clock)
    with TestClient(app):  # runs the lifespan
        yield Portal(app, store, clock)


@pytest.fixture
def acme(portal: Portal) -> TestClient:
    """A browser logged in as acme's user."""
    portal.add_user(ACME_USER, "acme")
    return portal.login(ACME_USER)


def audit(portal: Portal) -> list[tuple[str, str, str, str, str, str]]:
    """Every audit entry, oldest first: (actor, via, remote_addr, customer, action, target)."""
    with portal.store.session() as session:
        return [
            (e.actor, e.via, e.remote_addr, e.customer, e.action, e.target)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def shown_once(page: str, element_id: str) -> str:
    """The secret in ``<code id=...>`` on the page that shows it once."""
    match = re.search(rf'<code id="{element_id}">([^<]+)</code>', page)
    assert match, f"no {element_id} on the page"
    return html.unescape(match[1])


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, full path) the application serves, through its included routers too.

    FastAPI 0.165 keeps an included router as one entry whose routes it
    resolves lazily (``effective_route_contexts``, not public API): the
    callers assert that known routes are found, so a change there fails
    loudly rather than checking nothing.
    """
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods or ()}
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                found |= {(method, context.path) for method in context.methods or ()}
    return found


def portal_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The served routes that are the portal's: all but the API's."""
    return {(m, p) for m, p in served_routes(app) if not p.startswith("/api/")}
