"""Rate windows in the SQL database every milter process and relay node shares.

Each admission runs in one short transaction that holds a per-identity lock
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``),
prunes the identity's expired slots (two index ranges) and reads the count
the database keeps per key (migration 0007): the same few rows however many
events, slots or senders the database holds, and however full the window.
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
# The index on (key, pending, at) answers it with one seek.
_OLDEST_COUNTING = Statement(
    'SELECT min(at) FROM rate_slots WHERE "key" = :key AND pending = :no'
)


@cache
def _window_statements(keys: int) -> tuple[Statement, Statement, Statement]:
    """Prune (two statements) and count for a number of keys (one per bucket: one or two).

    Each prune is one range of the index on (key, pending, at): the expired
    pending slots, and the committed ones older than the window. The count
    is the database's own per key (rate_counts, kept by triggers): one row,
    however full the window.
    """
    marks = ", ".join(f":k{i}" for i in range(keys))  # placeholders only
    expired_reservations = Statement(
        f'DELETE FROM rate_slots WHERE "key" IN ({marks}) '  # noqa: S608
        "AND pending = :yes AND at < :now"
    )
    out_of_window = Statement(
        f'DELETE FROM rate_slots WHERE "key" IN ({marks}) '  # noqa: S608
        "AND pending = :no AND at <= :cutoff"
    )
    usage = Statement(f'SELECT "key", used FROM rate_counts WHERE "key" IN ({marks})')  # noqa: S608
    return expired_reservations, out_of_window, usage


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
                                 order=_locked_order(identity))

    def _reserve_in(self, cursor: Cursor, identity: str, buckets: Sequence[Bucket],
                    now: float) -> Reservation | RateDenied:
        _lock(cursor, identity)
        by_key = {slot_key(identity, b.name): b for b in buckets}
        keys = {f"k{i}": key for i, key in enumerate(by_key)}
        expired_reservations, out_of_window, usage = _window_statements(len(keys))
        cursor.execute(expired_reservations, {**keys, "yes": True, "now": now})
        cursor.execute(out_of_window, {**keys, "no": False, "cutoff": now - self.window})
        for key, used in cursor.execute(usage, keys).all():
            bucket = by_key[key]
            if used >= bucket.limit:
                oldest = cursor.execute(_OLDEST_COUNTING, {"key": key, "no": False}).one()[0]
                return RateDenied(bucket.name, bucket.limit, retry_after(oldest, now, self.window))
        # A bucket with limit 0 has no rows to count and admits nothing.
        for bucket in buckets:
            if bucket.limit <= 0:
                return RateDenied(bucket.name, bucket.limit, 60)
        reservation = Reservation(uuid.uuid4().hex, identity, tuple(by_key))
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
        Only a reservation that expired before its message was accepted is
        counted again here; its count row is then taken after the batch's
        locks, which could meet another node's batch head-on (PostgreSQL
        then fails one of the two, and its sessions answer 451: retried,
        never lost).
        """
        now = self.clock.now().timestamp()
        for reservation in reservations:
            cursor.execute(_COMMIT, {"pending": False, "at": now, "reservation": reservation.id})
            for key in reservation.keys:
                cursor.execute(_RECOUNT, {"key": key, "reservation": reservation.id,
                                          "pending": False, "at": now})

    def release(self, reservation: Reservation) -> None:
        def give_back(cursor: Cursor) -> None:
            _lock(cursor, reservation.identity)
            cursor.execute(_RELEASE, {"reservation": reservation.id})

        self.sql.transact(give_back, order=_locked_order(reservation.identity))


def _locked_order(identity: str) -> tuple[int, int]:
    """The group commit's order for work under the identity's lock (storage.writer)."""
    return (0, advisory_lock_id(identity))


def _lock(cursor: Cursor, identity: str) -> None:
    """PostgreSQL: the identity's lock, held to the commit. (SQLite has one writer.)

    Every change to an identity's counts is made under it, in the group
    commit's order, so two nodes never wait for each other's count rows.
    (The one exception, a late accept re-counting an expired reservation,
    takes no lock after a count row; see commit_in.)
    """
    if cursor.dialect == "postgresql":
        cursor.execute(_ADVISORY_LOCK, {"lock_id": advisory_lock_id(identity)})
