"""Fixtures shared by the database tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from osfmilter.storage import admin
from osfmilter.storage.store import SqlStore

REGISTERED_AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def acme(engine: Engine) -> SqlStore:
    """A store with one customer, acme (free plan), and its scanned domain example.com."""
    store = SqlStore(engine)
    with store.session() as s:
        admin.add_customer(s, "acme", "free", REGISTERED_AT)
        admin.add_domain(s, "example.com", "acme", REGISTERED_AT)
    return store
