"""The API on a test database of each backend, with a customer's and an operator's token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from osfmilter import tokens
from osfmilter.config import Config, config_from_dict
from osfmilter.storage import admin, users
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
