"""``osfmilter db purge``: old events go in batches; monthly totals and history stay."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, insert, select, text
from sqlalchemy.orm import Session

from osfmilter.cli import main
from osfmilter.storage import admin, retention
from osfmilter.storage.db import make_engine
from osfmilter.storage.rate import advisory_lock_id
from osfmilter.storage.schema import Event, MonthlyVolume, RateSlot, StateChange
from tests.db.conftest import Run
from tests.fakes import TEST_REGISTRATION
from tests.harness.database import reset_database

NOW = datetime.now(UTC)


def event_row(when: datetime, action: str = "accept") -> dict[str, object]:
    return dict(
        at=when,
        node="relay1",
        queue_id="4XyZ1",
        stage="eom",
        client_ip="192.0.2.10",
        identity="server:192.0.2.0/24",
        customer_id=None,
        envelope_sender="a@example.com",
        header_from_domain="example.com",
        rcpt_count=1,
        size=1000,
        action=action,
        reason="accepted" if action == "accept" else "rate_limit",
        smtp_code=None,
        enhanced_code="",
    )


def slot(key: str, at: float, pending: bool = False) -> dict[str, object]:
    return dict(key=key, reservation=f"r{at}", pending=pending, at=at)


def add_events(engine: Engine, old: int, recent: int) -> None:
    rows = [event_row(NOW - timedelta(days=500, minutes=i)) for i in range(old)] + [
        event_row(NOW - timedelta(days=399, minutes=i)) for i in range(recent)
    ]
    with engine.begin() as connection:
        connection.execute(insert(Event), rows)


def count(engine: Engine, table: type[Event] | type[RateSlot]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def deletes(engine: Engine) -> Iterator[list[int]]:
    """The number of ids in each DELETE statement run on the engine."""
    sizes: list[int] = []

    def listen(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            values = parameters.values() if isinstance(parameters, dict) else parameters
            sizes.append(len(list(values)))

    event.listen(engine, "before_cursor_execute", listen)
    yield sizes
    event.remove(engine, "before_cursor_execute", listen)


def test_purge_deletes_in_batches(engine: Engine, deletes: list[int]) -> None:
    add_events(engine, old=12, recent=3)
    result = retention.purge(engine, NOW - timedelta(days=400), 0.0, batch_size=5)
    assert result == retention.PurgeResult(events=12, rate_slots=0, batches=3)
    assert deletes == [5, 5, 2]
    assert count(engine, Event) == 3
    with engine.connect() as connection:
        oldest = connection.execute(select(func.min(Event.at))).scalar_one()
    assert oldest > NOW - timedelta(days=400)

    assert retention.purge(engine, NOW - timedelta(days=400), 0.0, batch_size=5) == (
        retention.PurgeResult(0, 0, 0)
    )


def test_purge_batch_of_exact_size_ends(engine: Engine) -> None:
    add_events(engine, old=10, recent=0)
    result = retention.purge(engine, NOW - timedelta(days=400), 0.0, batch_size=5)
    assert (result.events, result.batches) == (10, 2)
    assert count(engine, Event) == 0


def test_long_expired_rate_slots_go(engine: Engine) -> None:
    now = NOW.timestamp()
    with engine.begin() as connection:
        connection.execute(
            insert(RateSlot),
            [
                slot("a", now - 5000),
                slot("b", now - 1300),
                slot("b", now - 1300, pending=True),
                slot("a", now - 100),  # committed, still in its window
                slot("c", now - 600, pending=True),  # expired reservation, recently
                slot("c", now + 800, pending=True),  # reserved now
            ],
        )
    cutoff = retention.slot_cutoff(NOW, window=300, reservation_ttl=900)
    assert cutoff == now - 1200
    assert retention.count(engine, NOW - timedelta(days=400), cutoff).rate_slots == 3
    result = retention.purge(engine, NOW - timedelta(days=400), cutoff, batch_size=2)
    assert (result.events, result.rate_slots, result.batches) == (0, 3, 2)
    with engine.connect() as connection:
        kept = sorted(connection.execute(select(RateSlot.at)).scalars())
    assert kept == [now - 600, now - 100, now + 800]


def test_cli_purge_and_totals_survive(engine: Engine, run: Run) -> None:
    with Session(engine) as session, session.begin():
        acme = admin.add_customer(session, "acme", "paid", NOW - timedelta(days=600))
        server = admin.add_server(
            session, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW - timedelta(days=600)
        )
        month = (NOW - timedelta(days=500)).strftime("%Y-%m")
        session.add_all(
            [
                MonthlyVolume(
                    month=month,
                    direction="outbound",
                    customer_id=acme.id,
                    domain="",
                    messages=12,
                    bytes=12_000,
                ),
                StateChange(
                    at=NOW - timedelta(days=500),
                    smtp_server_id=server.id,
                    old_state="veilig",
                    new_state="verdacht",
                    reason="spam",
                    actor="system",
                ),
            ]
        )
    add_events(engine, old=12, recent=3)
    with engine.begin() as connection:
        connection.execute(
            insert(RateSlot), [slot("a", NOW.timestamp() - 5000), slot("a", NOW.timestamp() - 10)]
        )
    bill_before = run("report", "bill", "--month", month, "--json")[1]
    volume_before = run("report", "volume", "--month", month, "--csv")[1]

    status, out, _ = run("db", "purge", "--older-than", "400d", "--dry-run")
    assert status == 0
    assert out.startswith("would remove 12 event(s) older than ")
    assert out.endswith(" and 1 expired rate slot(s)\n")
    assert count(engine, Event) == 15 and count(engine, RateSlot) == 2

    status, out, _ = run("db", "purge", "--older-than", "400d", "--batch-size", "5")
    assert status == 0
    assert out.startswith("removed 12 event(s) older than ")
    assert out.endswith(" and 1 expired rate slot(s) in 4 batch(es)\n")
    assert count(engine, Event) == 3 and count(engine, RateSlot) == 1

    # The monthly totals (and so the bill) and the state history are untouched.
    assert run("report", "bill", "--month", month, "--json")[1] == bill_before
    assert run("report", "volume", "--month", month, "--csv")[1] == volume_before
    assert "12000" in volume_before
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(StateChange)).scalar() == 1

    status, out, _ = run("db", "purge", "--older-than", "1h")
    assert status == 0 and out.startswith("removed 3 event(s)")


@pytest.mark.parametrize("value", ["400", "0d", "-5d", "400w", "d", "1.5d", "abc", "", "40 0d"])
def test_bad_age_is_one_line_and_status_2(run: Run, engine: Engine, value: str) -> None:
    add_events(engine, old=2, recent=0)
    status, out, err = run("db", "purge", f"--older-than={value}")
    assert status == 2 and out == ""
    assert "is not a duration (Nd or Nh" in err and err.count("\n") == 1
    assert count(engine, Event) == 2


@pytest.mark.parametrize(
    "args", [(), ("--older-than",), ("--older-than", "400d", "--batch-size", "0")]
)
def test_bad_arguments_are_usage_errors(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["db", "purge", *args])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


OLD_SLOT = NOW.timestamp() - 5000
SLOT_CUTOFF = NOW.timestamp() - 1200


@pytest.fixture
def pg_engine(pg_server_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_server_url, timeout=5)
    reset_database(engine)
    yield engine
    engine.dispose()


def add_dead_slots(engine: Engine, *keys: str) -> Engine:
    with engine.begin() as connection:
        connection.execute(
            insert(RateSlot), [slot(key, OLD_SLOT - i) for i, key in enumerate(keys)]
        )
    return engine


def purge_while(
    engine: Engine, hold: Callable[[Connection], object]
) -> list[retention.PurgeResult]:
    """A purge run while a milter's transaction holds what ``hold`` takes; it must not wait."""
    with engine.connect() as milter, milter.begin():
        hold(milter)
        done: list[retention.PurgeResult] = []
        worker = threading.Thread(
            target=lambda: done.append(
                retention.purge(engine, NOW - timedelta(days=400), SLOT_CUTOFF)
            )
        )
        worker.start()
        worker.join(timeout=3)
    return done


@pytest.mark.postgres
def test_purge_skips_a_slot_a_milter_holds(pg_engine: Engine) -> None:
    """PostgreSQL: a rate slot locked by a milter's transaction is left, and nobody waits."""
    pg_with_slots = add_dead_slots(pg_engine, "a", "b")
    done = purge_while(
        pg_with_slots,
        lambda milter: milter.execute(text("SELECT id FROM rate_slots WHERE key = 'a' FOR UPDATE")),
    )
    assert done == [retention.PurgeResult(0, 1, 1)]  # it did not wait for the lock
    with pg_with_slots.connect() as connection:
        assert connection.execute(select(RateSlot.key)).scalars().all() == ["a"]


@pytest.mark.postgres
def test_purge_leaves_a_sender_a_milter_holds_to_that_milter(pg_engine: Engine) -> None:
    """PostgreSQL: slots of a sender whose lock a milter holds stay, and nobody waits."""
    pg_with_slots = add_dead_slots(pg_engine, "sasl:bob|all", "sasl:eve|all")
    done = purge_while(
        pg_with_slots,
        lambda milter: milter.execute(
            select(func.pg_advisory_xact_lock(advisory_lock_id("sasl:bob")))
        ),
    )
    assert done == [retention.PurgeResult(0, 1, 1)]  # eve's went; bob's waits
    assert retention.purge(pg_with_slots, NOW - timedelta(days=400), SLOT_CUTOFF).rate_slots == 1
    with pg_with_slots.connect() as connection:
        assert connection.execute(select(func.count()).select_from(RateSlot)).scalar() == 0
        assert connection.execute(text("SELECT sum(used) FROM rate_counts")).scalar() == 0
