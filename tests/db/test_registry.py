"""Identities kept in memory: every change to the registry is seen at the next lookup.

Changes come from the CLI, the reputation rules, another milter process, or
an operator's own SQL; the database's triggers raise registry_version for
all of them (migration 0005). Both backends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from osfmilter.config import Config, ReputationSection
from osfmilter.model import Identity, ServerState
from osfmilter.reputation.transitions import OperatorActionKind, Rules
from osfmilter.storage import admin, registry
from osfmilter.storage.db import make_engine
from osfmilter.storage.direct import Cursor
from osfmilter.storage.dkim import create_key, rotate
from osfmilter.storage.domains import add_domain, mark_verified
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION, FixedClock

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CLIENT = ipaddress.ip_address("192.0.2.10")


@pytest.fixture
def store(acme: SqlStore) -> SqlStore:
    with acme.session() as s:
        admin.add_server(s, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW)
        admin.add_sasl(s, "alice@example.com", "acme", NOW)
    return acme


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The keys the registry looked up in the database (not answered from memory)."""
    seen: list[tuple[str, str]] = []
    look_up = registry._look_up

    def counting(cursor: Cursor, key: tuple[str, str]) -> Identity | None:
        seen.append(key)
        return look_up(cursor, key)

    monkeypatch.setattr(registry, "_look_up", counting)
    return seen


def version(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT version FROM registry_version")).scalar_one())


def found(store: SqlStore, login: str = "") -> Identity:
    identity = store.find_identity(CLIENT, login)
    assert identity is not None
    return identity


def test_an_unchanged_registry_is_read_once_per_client(
    store: SqlStore, lookups: list[tuple[str, str]]
) -> None:
    for _ in range(5):
        assert found(store).label == "server:192.0.2.0/24"
        assert found(store, "alice@example.com").label == "sasl:alice@example.com"
        assert store.find_identity(ipaddress.ip_address("203.0.113.1"), "") is None
    assert len(lookups) == 3


SQL_CHANGES: dict[str, tuple[str, Callable[[Identity | None], bool]]] = {
    "plan": ("UPDATE customers SET plan = 'paid'", lambda i: i is not None and i.plan == "paid"),
    "state": (
        "UPDATE smtp_servers SET state = 'onveilig'",
        lambda i: i is not None and i.state is ServerState.ONVEILIG,
    ),
    "domain removed": (
        "DELETE FROM scanned_domains",
        lambda i: i is not None and not i.scanned_domains,
    ),
    "domain added": (
        "INSERT INTO scanned_domains (customer_id, domain, created_at) "
        "SELECT id, 'example.org', created_at FROM customers",
        lambda i: i is not None and "example.org" in i.scanned_domains,
    ),
    "server removed": ("DELETE FROM smtp_servers", lambda i: i is None),
}


@pytest.mark.parametrize("change", list(SQL_CHANGES))
def test_an_operators_own_sql_is_seen_at_the_next_lookup(
    store: SqlStore, engine: Engine, change: str
) -> None:
    statement, holds = SQL_CHANGES[change]
    found(store)
    before = version(engine)
    with engine.begin() as connection:
        connection.execute(text(statement))
    assert version(engine) > before
    assert holds(store.find_identity(CLIENT, ""))


def test_a_block_by_the_reputation_store_is_seen(store: SqlStore, engine: Engine) -> None:
    identity = found(store)
    rules = Rules.from_config(ReputationSection())
    ReputationStore(engine, FixedClock(NOW), rules).operator(
        identity.kind, identity.id, OperatorActionKind.BLOCK, "test", "abuse report"
    )
    assert found(store).state is ServerState.ONVEILIG


def test_a_client_registered_after_a_miss_is_found(store: SqlStore) -> None:
    other = ipaddress.ip_address("203.0.113.5")
    assert store.find_identity(other, "") is None
    with store.session() as s:
        admin.add_server(s, "203.0.113.0/28", "acme", TEST_REGISTRATION, NOW)
    assert store.find_identity(other, "") is not None


def test_a_change_made_by_another_process_is_seen(store: SqlStore, db_url: str) -> None:
    found(store)
    other = make_engine(db_url, Config().database.timeout)  # another milter process, or the CLI
    try:
        with SqlStore(other).session() as s:
            admin.set_plan(s, "acme", "paid")
    finally:
        other.dispose()
    assert found(store).plan == "paid"


def test_events_and_counters_do_not_empty_the_memory(
    store: SqlStore, engine: Engine, lookups: list[tuple[str, str]]
) -> None:
    found(store)
    before = version(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM rate_slots"))
        connection.execute(text("DELETE FROM monthly_volume"))
    found(store)
    assert version(engine) == before and len(lookups) == 1


def test_memory_is_bounded(store: SqlStore) -> None:
    small = registry.Registry(store.direct, size=2)
    for host in range(1, 6):
        small.find_identity(ipaddress.ip_address(f"192.0.2.{host}"), "")
    assert len(small._known) == 2


def test_a_recipient_domain_is_matched_to_the_longest_scanned_domain(
    store: SqlStore, engine: Engine
) -> None:
    with store.session() as s:
        admin.add_customer(s, "subsidiary", "free", NOW)
    # By SQL: add_domain refuses another customer's domain within example.com
    # now, but one registered before that rule (or by an operator) may nest.
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO scanned_domains (customer_id, domain, created_at) "
                "SELECT id, 'eu.example.com', created_at FROM customers WHERE name = 'subsidiary'"
            )
        )
    acme = store.find_scanned_domain("example.com")
    assert acme is not None and acme[1] == "example.com"
    assert store.find_scanned_domain("mail.example.com") == acme
    sub = store.find_scanned_domain("mx.eu.example.com")
    assert sub is not None and sub[1] == "eu.example.com" and sub[0] != acme[0]
    assert store.find_scanned_domain("example.org") is None
    assert store.find_scanned_domain("localhost") is None


def test_a_domain_owner_is_remembered_until_the_registry_changes(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str]] = []
    owner_of = registry._owner_of

    def counting(cursor: Cursor, key: tuple[str, str]) -> tuple[int, str] | None:
        asked.append(key)
        return owner_of(cursor, key)

    monkeypatch.setattr(registry, "_owner_of", counting)
    acme = store.find_scanned_domain("mail.example.com")
    assert acme is not None and store.find_scanned_domain("mail.example.com") == acme
    assert store.find_scanned_domain("other.example") is None
    assert store.find_scanned_domain("other.example") is None  # nobody's, remembered too
    assert asked == [("domain", "mail.example.com"), ("domain", "other.example")]
    with store.session() as s:
        admin.add_customer(s, "other", "free", NOW)
        add_domain(s, "other.example", "other", NOW)
    owner = store.find_scanned_domain("other.example")
    assert owner is not None and owner[1] == "other.example" and owner[0] != acme[0]
    assert len(asked) == 3


@pytest.mark.parametrize("domain", ["b\udce4d.example", "", "localhost", "-x-.example", "a" * 300])
def test_what_is_not_a_domain_name_is_nobodys_without_asking(store: SqlStore, domain: str) -> None:
    assert store.find_scanned_domain(domain) is None


def test_an_international_domain_is_looked_up_by_its_a_labels(store: SqlStore) -> None:
    with store.session() as s:
        add_domain(s, "bücher.example", "acme", NOW)
    owner = store.find_scanned_domain("mail.bücher.example")
    assert owner is not None and owner[1] == "xn--bcher-kva.example"


def test_a_pending_domain_makes_no_sender_known_and_protects_nothing(store: SqlStore) -> None:
    with store.session(locked=True) as s:
        add_domain(s, "pending.example", "acme", NOW, pending=True)
    assert "pending.example" not in found(store).scanned_domains
    assert "example.com" in found(store).scanned_domains
    assert store.find_scanned_domain("pending.example") is None
    assert store.find_scanned_domain("mx.pending.example") is None


def test_a_domain_verified_later_is_known_at_the_next_lookup(store: SqlStore) -> None:
    with store.session(locked=True) as s:
        token = add_domain(s, "later.example", "acme", NOW, pending=True).verification_token
    assert token is not None
    assert "later.example" not in found(store).scanned_domains
    with store.session() as s:
        mark_verified(s, "later.example", token, NOW)
    assert "later.example" in found(store).scanned_domains
    assert store.find_scanned_domain("later.example") is not None


def test_the_active_dkim_key_is_only_ever_the_customers_own(store: SqlStore) -> None:
    with store.session() as s:
        admin.add_customer(s, "other", "free", NOW)
        add_domain(s, "other.example", "other", NOW)
        add_domain(s, "pending.example", "acme", NOW, pending=True)
        create_key(s, "example.com", "s1", "ed25519-sha256", "AAAA", NOW)
        create_key(s, "other.example", "s1", "rsa-sha256", "AAAA", NOW)
    acme = found(store).customer_id
    active = store.registry.find_dkim_key(acme, "example.com")
    assert active is not None and active[1:] == ("s1", "ed25519-sha256", "AAAA")
    assert store.registry.find_dkim_key(acme, "other.example") is None  # another customer's
    assert store.registry.find_dkim_key(acme, "pending.example") is None
    with store.session() as s:
        rotate(s, "example.com", "s2", "rsa-sha256", "BBBB", NOW, timedelta(days=7))
    rotated = store.registry.find_dkim_key(acme, "example.com")
    assert rotated is not None and rotated[1:] == ("s2", "rsa-sha256", "BBBB")
    assert rotated.id != active.id


def test_a_mail_transaction_reads_the_version_once_and_sees_changes_at_the_next(
    store: SqlStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    read = store.direct.read

    def counting(job: Callable[[Cursor], object]) -> object:
        reads.append(1)
        return read(job)

    found(store)
    store.find_scanned_domain("example.com")  # both remembered now
    monkeypatch.setattr(store.direct, "read", counting)
    store.begin_transaction()
    acme = found(store)
    assert store.find_scanned_domain("mail.example.com") is not None  # a new key: asked
    assert store.find_scanned_domain("example.com") is not None
    assert store.registry.find_dkim_key(acme.customer_id, "example.com") is None
    assert store.find_scanned_domain("example.com") is not None
    assert len(reads) == 3  # the first look, the new key, the key not yet known
    with engine.begin() as connection:  # a change in the middle of the transaction
        connection.execute(text("UPDATE smtp_servers SET state = 'verdacht'"))
    assert found(store).state is ServerState.VEILIG  # this transaction's view
    store.begin_transaction()
    assert found(store).state is ServerState.VERDACHT  # seen at the next message
