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

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Global unicast space: the API never registers documentation or private networks.
ACME_NET = "81.2.69.0/28"
GLOBEX_NET = "81.2.70.0/24"


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return 0.0


@dataclass
class Api:
    """A TestClient and the bearer headers of acme's, globex's and the operator's tokens."""

    client: TestClient
    store: SqlStore
    acme: dict[str, str]
    globex: dict[str, str]
    operator: dict[str, str]
    clock: FixedClock


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(store: SqlStore, customer: str | None) -> str:
    made = tokens.generate()
    with store.session() as session:
        users.add_token(session, made.prefix, made.hash, customer, NOW, created_by="tests")
    return made.token


def web_config(db_url: str, tmp_path: Path, **sections: dict[str, object]) -> Config:
    return config_from_dict({"state_dir": str(tmp_path), "database": {"url": db_url}, **sections})


@pytest.fixture
def api(db_url: str, engine: Engine, tmp_path: Path) -> Iterator[Api]:
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "globex", "paid", NOW)
    clock = FixedClock()
    app = create_app(web_config(db_url, tmp_path), clock)
    with TestClient(app) as client:
        yield Api(
            client,
            store,
            bearer(make_token(store, "acme")),
            bearer(make_token(store, "globex")),
            bearer(make_token(store, None)),
            clock,
        )
