"""Networks of different customers never overlap, however the registrations race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from osfmilter.config import Config
from osfmilter.errors import StorageError, UsageError
from osfmilter.storage import admin
from osfmilter.storage.db import _alembic_config, make_engine, upgrade
from osfmilter.storage.store import SqlStore
from tests.db.conftest import ALLOW_NON_GLOBAL, Run
from tests.db.races import race
from tests.fakes import TEST_REGISTRATION
from tests.harness.database import reset_database

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CUSTOMERS = ("c0", "c1", "c2", "c3")
# Each pair overlaps: 192.0.2.100 is in the /26, in the /25, in the /24.
NESTED = ("192.0.2.0/24", "192.0.2.0/25", "192.0.2.64/26", "192.0.2.100")


@pytest.mark.parametrize("networks", [NESTED, ("192.0.2.0/24",) * 4], ids=["nested", "same"])
def test_concurrent_overlapping_registrations_one_succeeds(
    run: Run, db_url: str, tmp_path: Path, networks: tuple[str, ...]
) -> None:
    for customer in CUSTOMERS:
        run("customer", "add", customer)
    config = tmp_path / "race.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n{ALLOW_NON_GLOBAL}')
    commands = [
        (customer, ["server", "add", network, "--customer", customer])
        for network, customer in zip(networks, CUSTOMERS, strict=True)
    ]
    outcomes = race(config, commands, ("osfmilter.storage.admin", "_overlapping"))

    winners = [customer for customer, status, _ in outcomes if status == 0]
    assert len(winners) == 1, outcomes
    for customer, status, err in outcomes:
        if customer not in winners:
            assert status == 2, outcomes
            assert err.startswith("osfmilter: error: ") and err.count("\n") == 1, err
            assert "overlaps" in err or "is already registered to" in err, err
            assert repr(winners[0]) in err, err
    listed = run("server", "list")[1].splitlines()[1:]
    assert len(listed) == 1 and winners[0] in listed[0]


def _insert(engine: Engine, network: str, customer: str, first: str, last: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("""
            INSERT INTO smtp_servers (customer_id, network, family, prefix_len, first_address,
                                      last_address, state, state_changed_at, created_at)
            SELECT id, :network, 4, :prefix, :first, :last, 'veilig', :now, :now
            FROM customers WHERE name = :customer
        """),
            {
                "network": network,
                "prefix": int(network.partition("/")[2]),
                "first": first,
                "last": last,
                "now": NOW.replace(tzinfo=None),
                "customer": customer,
            },
        )


@pytest.fixture
def two_customers(engine: Engine) -> Engine:
    with SqlStore(engine).session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "other", "free", NOW)
    _insert(engine, "192.0.2.0/24", "acme", "c0000200", "c00002ff")
    return engine


def test_the_database_refuses_an_overlap_whoever_inserts_it(two_customers: Engine) -> None:
    with pytest.raises(IntegrityError):
        _insert(two_customers, "192.0.2.64/26", "other", "c0000240", "c000027f")
    with pytest.raises(IntegrityError):
        _insert(two_customers, "192.0.0.0/16", "other", "c0000000", "c000ffff")
    # One customer's networks may nest; another customer's may sit beside them.
    _insert(two_customers, "192.0.2.64/26", "acme", "c0000240", "c000027f")
    _insert(two_customers, "192.0.3.0/24", "other", "c0000300", "c00003ff")


def test_the_database_refuses_an_update_into_an_overlap(two_customers: Engine) -> None:
    _insert(two_customers, "192.0.2.64/26", "acme", "c0000240", "c000027f")
    with pytest.raises(IntegrityError), two_customers.begin() as connection:
        connection.execute(
            text(
                "UPDATE smtp_servers"
                " SET customer_id = (SELECT id FROM customers WHERE name = 'other')"
                " WHERE network = '192.0.2.64/26'"
            )
        )


def test_the_upgrade_names_overlaps_registered_before_it(engine: Engine) -> None:
    command.downgrade(_alembic_config(engine), "0007")
    with SqlStore(engine).session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "other", "free", NOW)
    _insert(engine, "192.0.2.0/24", "acme", "c0000200", "c00002ff")
    _insert(engine, "192.0.2.64/26", "other", "c0000240", "c000027f")
    with pytest.raises(
        StorageError,
        match=r"192\.0\.2\.0/24 \('acme'\) overlaps "
        r"192\.0\.2\.64/26 \('other'\); remove one",
    ):
        upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM smtp_servers WHERE network = '192.0.2.64/26'"))
    upgrade(engine)


def test_a_refusal_the_check_cannot_name_is_still_one_line(
    two_customers: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database refuses, the check finds nothing to name: a UsageError, no traceback."""
    monkeypatch.setattr(admin, "_refuse_overlap", lambda *args: None)
    with (
        pytest.raises(UsageError, match=r"192\.0\.2\.64/26: the database refused"),
        SqlStore(two_customers).session() as session,
    ):
        admin.add_server(session, "192.0.2.64/26", "other", TEST_REGISTRATION, NOW)


@pytest.mark.postgres
def test_server_add_waits_for_another_server_add_in_flight_on_postgresql(
    pg_server_url: str,
) -> None:
    """The advisory lock: an add cannot run its overlap check while another add is open."""
    engine = make_engine(pg_server_url, Config().database.timeout)
    reset_database(engine)
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
    done = threading.Event()
    failed: list[BaseException] = []

    def add() -> None:
        try:
            with store.session() as session:
                admin.add_server(session, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
        done.set()

    try:
        with engine.connect() as holder:
            holder.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": admin.SERVER_REGISTRATIONS}
            )
            adder = threading.Thread(target=add)
            adder.start()
            assert not done.wait(1.0), "server add ran while another held the lock"
            holder.rollback()  # ends the holder's transaction, and so its lock
        assert done.wait(30) and not failed, failed
        adder.join()
    finally:
        engine.dispose()
