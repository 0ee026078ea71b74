"""Rate windows in the SQL database every milter process and relay node shares.

Each admission runs in one short transaction that holds a per-identity lock
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``),
prunes the identity's expired slots and counts the rest. The count covers at
most the bucket's limit of rows through an index, however many events the
database holds.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from functools import cache

from sqlalchemy import Engine

from osfmilter.clock import Clock
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key
from osfmilter.storage.direct import Cursor, DirectSql, Statement

# Nothing here may weaken the transaction's durability (synchronous_commit):
# the group commit shares it with other sessions' accepts (storage.writer).
_ADVISORY_LOCK = Statement("SELECT pg_advisory_xact_lock(:lock_id)")
_INSERT = Statement(
    'INSERT INTO rate_slots ("key", reservation, pending, at) '
    "VALUES (:key, :reservation, :pending, :at)"
)
_COMMIT = Statement(
    "UPDATE rate_slots SET pending = :pending, at = :at WHERE reservation = :reservation"
)
# A slot whose reservation expired (and was pruned) is counted all the same:
# the message was accepted. Nothing is read back, so on PostgreSQL the
# commit does not wait for an answer of its own (storage.writer's pipeline).
# (The casts give PostgreSQL one type for a parameter used twice.)
_RECOUNT = Statement(
    'INSERT INTO rate_slots ("key", reservation, pending, at) '
    "SELECT CAST(:key AS VARCHAR), CAST(:reservation AS VARCHAR), :pending, :at "
    "WHERE NOT EXISTS (SELECT 1 FROM rate_slots WHERE "
    'reservation = CAST(:reservation AS VARCHAR) AND "key" = CAST(:key AS VARCHAR))'
)
_RELEASE = Statement("DELETE FROM rate_slots WHERE reservation = :reservation")


@cache
def _window_statements(keys: int, dialect: str) -> tuple[Statement, Statement]:
    """Prune and count for a number of keys (one per bucket: one or two).

    The count reads only the index on (key, pending, at). SQLite prunes
    with two range scans of it; PostgreSQL keeps the plain form, whose plan
    does not depend on how full the table was when psycopg prepared it.
    """
    marks = ", ".join(f":k{i}" for i in range(keys))  # placeholders only
    if dialect == "sqlite":
        prune = Statement(
            f"""DELETE FROM rate_slots WHERE id IN (
                SELECT id FROM rate_slots
                WHERE "key" IN ({marks}) AND pending = :yes AND at < :now
                UNION ALL
                SELECT id FROM rate_slots
                WHERE "key" IN ({marks}) AND pending = :no AND at <= :cutoff
            )"""  # noqa: S608
        )
    else:
        prune = Statement(
            f'DELETE FROM rate_slots WHERE "key" IN ({marks}) '  # noqa: S608
            "AND ((pending = :yes AND at < :now) OR (pending = :no AND at <= :cutoff))"
        )
    usage = Statement(
        f'SELECT "key", count(*), min(at) FILTER (WHERE pending = :no) '  # noqa: S608
        f'FROM rate_slots WHERE "key" IN ({marks}) GROUP BY "key"'
    )
    return prune, usage


def advisory_lock_id(text: str) -> int:
    """A stable signed 64-bit number for pg_advisory_xact_lock."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlRateLimiter:
    def __init__(self, engine: Engine, clock: Clock, window: float, reservation_ttl: float) -> None:
        self.sql = DirectSql(engine)
        self.clock = clock
        self.window = window
        self.reservation_ttl = reservation_ttl

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        now = self.clock.now().timestamp()
        return self.sql.transact(lambda cursor: self._reserve_in(cursor, identity, buckets, now),
                                 order=(0, advisory_lock_id(identity)))

    def _reserve_in(self, cursor: Cursor, identity: str, buckets: Sequence[Bucket],
                    now: float) -> Reservation | RateDenied:
        if cursor.dialect == "postgresql":
            cursor.execute(_ADVISORY_LOCK, {"lock_id": advisory_lock_id(identity)})
        by_key = {slot_key(identity, b.name): b for b in buckets}
        keys = {f"k{i}": key for i, key in enumerate(by_key)}
        prune, usage = _window_statements(len(keys), cursor.dialect)
        cursor.execute(prune, {**keys, "yes": True, "no": False, "now": now,
                               "cutoff": now - self.window})
        for key, used, oldest in cursor.execute(usage, {**keys, "no": False}).all():
            bucket = by_key[key]
            if used >= bucket.limit:
                return RateDenied(bucket.name, bucket.limit, retry_after(oldest, now, self.window))
        # A bucket with limit 0 has no rows to count and admits nothing.
        for bucket in buckets:
            if bucket.limit <= 0:
                return RateDenied(bucket.name, bucket.limit, 60)
        reservation = Reservation(uuid.uuid4().hex, tuple(by_key))
        cursor.executemany(_INSERT, [
            {"key": key, "reservation": reservation.id, "pending": True,
             "at": now + self.reservation_ttl}
            for key in reservation.keys
        ])
        return reservation

    def commit(self, reservation: Reservation) -> None:
        self.sql.transact(lambda cursor: self.commit_in(cursor, (reservation,)), order=(2,))

    def commit_in(self, cursor: Cursor, reservations: Sequence[Reservation]) -> None:
        """Count the slots from now, inside the caller's transaction (the accept's).

        No advisory lock: a commit changes no count (the slot was counted
        while pending), and the row it updates is locked by the update itself.
        """
        now = self.clock.now().timestamp()
        for reservation in reservations:
            cursor.execute(_COMMIT, {"pending": False, "at": now, "reservation": reservation.id})
            for key in reservation.keys:
                cursor.execute(_RECOUNT, {"key": key, "reservation": reservation.id,
                                          "pending": False, "at": now})

    def release(self, reservation: Reservation) -> None:
        self.sql.transact(lambda cursor: cursor.execute(_RELEASE, {"reservation": reservation.id}),
                          order=(2,))
