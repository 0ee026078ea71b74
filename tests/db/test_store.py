"""Identity lookups and event records against a real database (both backends)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text

from osfmilter.errors import StorageError
from osfmilter.events import EventRecord
from osfmilter.model import IdentityKind
from osfmilter.storage import admin
from osfmilter.storage.db import transaction
from osfmilter.storage.schema import Event
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RULES = TEST_REGISTRATION


@pytest.fixture
def store(acme: SqlStore) -> SqlStore:
    with acme.session() as s:
        admin.add_customer(s, "bigco", "paid", NOW)
        admin.add_server(s, "192.0.2.0/24", "acme", RULES, NOW)
        admin.add_server(s, "192.0.2.128/25", "acme", RULES, NOW)
        admin.add_server(s, "192.0.2.200", "acme", RULES, NOW)
        admin.add_server(s, "198.51.100.0/24", "bigco", RULES, NOW)
        admin.add_server(s, "2001:db8:1::/64", "bigco", RULES, NOW)
        admin.add_sasl(s, "alice@example.com", "acme", NOW)
    return acme


def lookup(store: SqlStore, ip: str | None, login: str = "") -> str | None:
    found = store.find_identity(ipaddress.ip_address(ip) if ip else None, login)
    return found.label if found else None


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.0.2.0", "server:192.0.2.0/24"),
        ("192.0.2.127", "server:192.0.2.0/24"),
        ("192.0.2.128", "server:192.0.2.128/25"),
        ("192.0.2.200", "server:192.0.2.200/32"),
        ("192.0.2.255", "server:192.0.2.128/25"),
        ("192.0.3.0", None),
        ("192.0.1.255", None),
        ("198.51.100.9", "server:198.51.100.0/24"),
        ("2001:db8:1::1", "server:2001:db8:1::/64"),
        ("2001:db8:1:0:ffff:ffff:ffff:ffff", "server:2001:db8:1::/64"),
        ("2001:db8:2::1", None),
        # An IPv6 address whose bits equal an IPv4 registration is another host.
        ("::c000:201", None),
    ],
)
def test_longest_prefix_match(store: SqlStore, ip: str, expected: str | None) -> None:
    assert lookup(store, ip) == expected


def test_identity_carries_customer_plan_and_domains(store: SqlStore) -> None:
    found = store.find_identity(ipaddress.ip_address("198.51.100.1"), "")
    assert found is not None
    assert (found.customer, found.plan, found.state) == ("bigco", "paid", "veilig")
    found = store.find_identity(None, "alice@example.com")
    assert found is not None and found.kind is IdentityKind.SASL
    assert found.scanned_domains == frozenset({"example.com"})


def test_unregistered_login_does_not_fall_back_to_the_address(store: SqlStore) -> None:
    assert lookup(store, "192.0.2.1", login="mallory") is None


def test_event_rows_keep_hostile_text_storable(store: SqlStore, engine: Engine) -> None:
    identity = store.find_identity(ipaddress.ip_address("192.0.2.1"), "")
    store.record(
        EventRecord(
            at=NOW,
            node="n1",
            queue_id="4ABC",
            stage="eom",
            client_ip="192.0.2.1",
            identity=identity,
            envelope_sender="a\x00b@example.com" + "x" * 400,
            header_from_domain="example.com",
            rcpt_count=2,
            size=1234,
            action="accept",
            reason="accepted",
            smtp_code=250,
            enhanced_code="2.0.0",
        )
    )
    with store.session() as s:
        row = s.scalars(select(Event)).one()
        assert row.at == NOW
        assert "\x00" not in row.envelope_sender and len(row.envelope_sender) <= 320
        assert (row.identity, row.customer_id, row.rcpt_count) == (
            "server:192.0.2.0/24",
            identity.customer_id if identity else None,
            2,
        )


def test_undecodable_bytes_are_stored_as_escapes(store: SqlStore) -> None:
    raw = b"a@ex\xe4mple.com".decode("utf-8", "surrogateescape")
    store.record(
        EventRecord(
            at=NOW,
            node="n1",
            queue_id="Q",
            stage="eom",
            client_ip="192.0.2.1",
            identity=None,
            envelope_sender=raw,
            header_from_domain="ex\udce4mple.com",
            rcpt_count=1,
            size=1,
            action="accept",
            reason="accepted",
            smtp_code=250,
            enhanced_code="2.0.0",
        )
    )
    with store.session() as s:
        row = s.scalars(select(Event)).one()
        assert row.envelope_sender == "a@ex\\xe4mple.com"


def test_a_transaction_commits_at_its_end_and_undoes_all_on_an_error(engine: Engine) -> None:
    add = text("INSERT INTO customers (name, plan, created_at) VALUES (:name, 'free', :at)")
    with transaction(engine, write=True) as connection:
        connection.execute(add, {"name": "kept", "at": NOW})
    with pytest.raises(StorageError) as failed, transaction(engine, write=True) as connection:
        connection.execute(add, {"name": "undone", "at": NOW})
        connection.execute(add, {"name": "kept", "at": NOW})  # unique name: refused
    assert "\n" not in str(failed.value) and "INSERT" not in str(failed.value)
    with transaction(engine) as connection:
        names = connection.scalars(text("SELECT name FROM customers ORDER BY name")).all()
    assert names == ["kept"]
