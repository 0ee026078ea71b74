"""The count per key the database keeps for the rate windows (migration 0007).

The admission reads ``rate_counts`` instead of counting the window, so the
row must equal the key's number of ``rate_slots`` rows after any change,
whoever makes it: the limiter, retention, an operator's SQL, a migration.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, text

from osfmilter.config import Config
from osfmilter.limits.rate import Bucket, RateDenied, Reservation
from osfmilter.storage import retention
from osfmilter.storage.db import _alembic_config, make_engine
from osfmilter.storage.rate import SqlRateLimiter
from tests.fakes import FixedClock
from tests.harness.database import reset_database

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BUCKETS = (Bucket("all", 5), Bucket("unknown", 3))


def counts(engine: Engine) -> dict[str, int]:
    """rate_counts, without the keys that have no slots left."""
    with engine.connect() as connection:
        rows = connection.execute(text('SELECT "key", used FROM rate_counts')).all()
    return {key: used for key, used in rows if used}


def slots(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text('SELECT "key", count(*) FROM rate_slots GROUP BY "key"')
        ).all()
    return {key: int(n) for key, n in rows}


def admitted(outcome: Reservation | RateDenied) -> Reservation:
    assert isinstance(outcome, Reservation), outcome
    return outcome


def test_the_count_follows_the_limiter_retention_and_plain_sql(engine: Engine) -> None:
    clock = FixedClock(NOW)
    limiter = SqlRateLimiter(engine, clock, 300.0, 900.0)
    first = [admitted(limiter.reserve("server:192.0.2.1/32", BUCKETS)) for _ in range(3)]
    other = admitted(limiter.reserve("sasl:bob", BUCKETS[:1]))
    assert (
        counts(engine)
        == slots(engine)
        == {"server:192.0.2.1/32|all": 3, "server:192.0.2.1/32|unknown": 3, "sasl:bob|all": 1}
    )

    limiter.commit(first[0])
    limiter.release(first[1])
    assert (
        counts(engine)
        == slots(engine)
        == {"server:192.0.2.1/32|all": 2, "server:192.0.2.1/32|unknown": 2, "sasl:bob|all": 1}
    )
    # The "unknown" bucket is full at 3: pending and counting slots both count.
    admitted(limiter.reserve("server:192.0.2.1/32", BUCKETS))
    assert isinstance(limiter.reserve("server:192.0.2.1/32", BUCKETS), RateDenied)

    # Past the window and the reservations' lifetime: a full bucket makes the admission prune.
    clock.advance(1000)
    admitted(limiter.reserve("server:192.0.2.1/32", BUCKETS))
    assert (
        counts(engine)
        == slots(engine)
        == {"server:192.0.2.1/32|all": 1, "server:192.0.2.1/32|unknown": 1, "sasl:bob|all": 1}
    )

    # A reservation that expired and was pruned is admitted again, then counted.
    limiter.commit(first[2])  # without the renewal: nothing to count
    assert counts(engine)["server:192.0.2.1/32|all"] == 1
    limiter.commit(admitted(limiter.renew(first[2])))
    assert (
        counts(engine)
        == slots(engine)
        == {"server:192.0.2.1/32|all": 2, "server:192.0.2.1/32|unknown": 2, "sasl:bob|all": 1}
    )

    # Retention takes bob's long-dead slot, and the count goes with it.
    clock.advance(3600)
    cutoff = retention.slot_cutoff(clock.now(), 300.0, 900.0)
    assert retention.purge(engine, NOW - timedelta(days=400), cutoff).rate_slots == 5
    assert counts(engine) == slots(engine) == {}

    # An operator's own SQL: insert, move to another key, delete.
    with engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO rate_slots ("key", reservation, pending, at) VALUES '
                "('x|all', 'r1', false, 1), ('x|all', 'r2', false, 2), ('y|all', 'r3', false, 3)"
            )
        )
        connection.execute(text("UPDATE rate_slots SET \"key\" = 'y|all' WHERE reservation = 'r1'"))
        connection.execute(text("UPDATE rate_slots SET at = 5 WHERE reservation = 'r2'"))
    assert counts(engine) == slots(engine) == {"x|all": 1, "y|all": 2}
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM rate_slots WHERE \"key\" = 'y|all'"))
    assert counts(engine) == slots(engine) == {"x|all": 1}
    limiter.release(other)  # already gone: nothing to give back


def test_a_full_window_is_denied_from_the_count(engine: Engine) -> None:
    """The limiter trusts rate_counts: a count the table says is full denies."""
    limiter = SqlRateLimiter(engine, FixedClock(NOW), 300.0, 900.0)
    limiter.commit(admitted(limiter.reserve("sasl:bob", BUCKETS[:1])))
    with engine.begin() as connection:
        connection.execute(text("UPDATE rate_counts SET used = 5"))
    denied = limiter.reserve("sasl:bob", BUCKETS[:1])
    # The oldest counting slot leaves the window in 300 s.
    assert denied == RateDenied("all", 5, 300)


@pytest.mark.postgres
def test_truncate_clears_the_counts(pg_server_url: str) -> None:
    engine = make_engine(pg_server_url, Config().database.timeout)
    try:
        reset_database(engine)
        limiter = SqlRateLimiter(engine, FixedClock(NOW), 300.0, 900.0)
        admitted(limiter.reserve("sasl:bob", BUCKETS))
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE rate_slots"))
        assert counts(engine) == {}
    finally:
        engine.dispose()


def test_the_migration_counts_the_slots_already_there(engine: Engine) -> None:
    command.downgrade(_alembic_config(engine), "0006")
    with engine.begin() as connection:
        connection.execute(
            text(
                'INSERT INTO rate_slots ("key", reservation, pending, at) VALUES '
                "('x|all', 'r1', false, 1), ('x|all', 'r2', true, 2), ('y|all', 'r3', false, 3)"
            )
        )
    command.upgrade(_alembic_config(engine), "head")
    assert counts(engine) == slots(engine) == {"x|all": 2, "y|all": 1}


def test_expired_slots_are_pruned_only_when_a_bucket_looks_full(engine: Engine) -> None:
    """Below the limit the admission reads the count alone; a full count is checked again."""
    clock = FixedClock(NOW)
    limiter = SqlRateLimiter(engine, clock, 300.0, 900.0)
    bucket = (Bucket("all", 3),)
    for _ in range(2):
        limiter.commit(admitted(limiter.reserve("sasl:bob", bucket)))
    clock.advance(301)  # both out of the window
    limiter.commit(admitted(limiter.reserve("sasl:bob", bucket)))
    assert counts(engine) == slots(engine) == {"sasl:bob|all": 3}  # admitted at a count of 2
    # The count says full; two of the three no longer count: pruned, admitted.
    admitted(limiter.reserve("sasl:bob", bucket))
    assert counts(engine) == slots(engine) == {"sasl:bob|all": 2}
    admitted(limiter.reserve("sasl:bob", bucket))
    assert isinstance(limiter.reserve("sasl:bob", bucket), RateDenied)


def test_a_bucket_filled_by_this_very_admission_does_not_cut_it_short(engine: Engine) -> None:
    """The admitting INSERT reads the counts from before it: its own first slot
    (which makes 'all' full) must not keep it from inserting the second."""
    limiter = SqlRateLimiter(engine, FixedClock(NOW), 300.0, 900.0)
    admitted(limiter.reserve("sasl:bob", (Bucket("all", 2),)))
    admitted(limiter.reserve("sasl:bob", (Bucket("all", 2), Bucket("unknown", 5))))
    assert counts(engine) == slots(engine) == {"sasl:bob|all": 2, "sasl:bob|unknown": 1}
