"""Rate windows in the SQL database every milter process and relay node shares.

Each admission runs in one short transaction that holds a per-identity lock
(PostgreSQL: a transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``),
admits on the count the database keeps per key (migration 0007): the same
few rows however many events, slots or senders the database holds, and
however full the window. That count includes slots that have expired since
the key was last pruned, so it can only overstate the window: a message it
admits is admitted rightly. Only when a bucket looks full are the key's
expired slots deleted (two index ranges) and the count read again.

A reservation due for renewal is admitted again the same way, in one
transaction under the same lock that first gives back its old slots.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from functools import cache

from sqlalchemy import Engine

from osfmilter.clock import Clock
from osfmilter.errors import StorageError
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key
from osfmilter.storage.direct import Cursor, DirectSql, Statement
from osfmilter.storage.writer import UNLOCKED, Later, Order

# Nothing here may weaken the transaction's durability (synchronous_commit):
# the group commit shares it with other sessions' accepts (storage.writer).
_ADVISORY_LOCK = Statement("SELECT pg_advisory_xact_lock(:lock_id)")
_COMMIT = Statement(
    "UPDATE rate_slots SET pending = :pending, at = :at WHERE reservation = :reservation"
)
_RELEASE = Statement("DELETE FROM rate_slots WHERE reservation = :reservation")
# The index on (key, pending, at) answers it with one seek.
_OLDEST_COUNTING = Statement('SELECT min(at) FROM rate_slots WHERE "key" = :key AND pending = :no')


@cache
def _window_statements(keys: int) -> tuple[Statement, Statement, Statement, Statement]:
    """Prune (two statements), admit and count, for a number of keys (one per bucket).

    Each prune is one range of the index on (key, pending, at): the expired
    pending slots, and the committed ones older than the window. The count
    is the database's own per key (rate_counts, kept by triggers): one row,
    however full the window. The admission inserts a slot in every bucket
    or, if any bucket is full, in none: the counts it reads are those from
    before the statement, on both databases.
    """
    marks = ", ".join(f":k{i}" for i in range(keys))  # placeholders only
    buckets = ", ".join(f"(CAST(:k{i} AS VARCHAR), CAST(:l{i} AS INTEGER))" for i in range(keys))
    expired_reservations = Statement(
        f'DELETE FROM rate_slots WHERE "key" IN ({marks}) '  # noqa: S608
        "AND pending = :yes AND at < :now"
    )
    out_of_window = Statement(
        f'DELETE FROM rate_slots WHERE "key" IN ({marks}) '  # noqa: S608
        "AND pending = :no AND at <= :cutoff"
    )
    admit = Statement(
        'INSERT INTO rate_slots ("key", reservation, pending, at) '  # noqa: S608
        f"SELECT wanted.column1, :reservation, :yes, :expires FROM (VALUES {buckets}) AS wanted "
        f"WHERE NOT EXISTS (SELECT 1 FROM (VALUES {buckets}) AS bucket "
        'LEFT JOIN rate_counts ON rate_counts."key" = bucket.column1 '
        "WHERE COALESCE(rate_counts.used, 0) >= bucket.column2) "
        'RETURNING "key"'
    )
    usage = Statement(f'SELECT "key", used FROM rate_counts WHERE "key" IN ({marks})')  # noqa: S608
    return expired_reservations, out_of_window, admit, usage


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
        return self._admit(identity, buckets, replacing=None)

    def renew(self, reservation: Reservation) -> Reservation | RateDenied:
        return self._admit(reservation.identity, reservation.buckets, replacing=reservation)

    def _admit(
        self, identity: str, buckets: Sequence[Bucket], replacing: Reservation | None
    ) -> Reservation | RateDenied:
        now = self.clock.now().timestamp()
        # Not durable: a power loss ends the transactions that hold these
        # slots, and an accept's commit makes them durable anyway.
        return self.sql.transact_later(
            lambda cursor: self._reserve_in(cursor, identity, buckets, now, replacing),
            order=Order.sender_lock(advisory_lock_id(identity)),
            durable=False,
        )

    def _reserve_in(
        self,
        cursor: Cursor,
        identity: str,
        buckets: Sequence[Bucket],
        now: float,
        replacing: Reservation | None = None,
    ) -> Later[Reservation | RateDenied]:
        """Sends every statement of the admission, and reads its outcome Later.

        So on PostgreSQL a reservation adds no wait of its own to the
        group commit's batch (storage.writer).
        """
        _lock(cursor, identity)
        if replacing is not None:
            cursor.execute(_RELEASE, {"reservation": replacing.id})
        by_key = {slot_key(identity, b.name): b for b in buckets}
        keys = {f"k{i}": key for i, key in enumerate(by_key)}
        limits = {f"l{i}": bucket.limit for i, bucket in enumerate(by_key.values())}
        expired_reservations, out_of_window, admit, usage = _window_statements(len(keys))
        reservation = Reservation(
            uuid.uuid4().hex, identity, tuple(by_key), now + self.reservation_ttl, tuple(buckets)
        )
        wanted = {
            **keys,
            **limits,
            "reservation": reservation.id,
            "yes": True,
            "expires": reservation.expires,
        }
        admitted = cursor.another().execute(admit, wanted)

        def outcome() -> Reservation | RateDenied:
            if len(admitted.all()) == len(by_key):
                return reservation
            # The counts still hold the slots that expired since the key was
            # last full: take them out, and look again.
            cursor.execute(expired_reservations, {**keys, "yes": True, "now": now})
            cursor.execute(out_of_window, {**keys, "no": False, "cutoff": now - self.window})
            if len(cursor.execute(admit, wanted).all()) == len(by_key):
                return reservation
            for key, used in cursor.execute(usage, keys).all():
                bucket = by_key[key]
                if used >= bucket.limit:
                    oldest = cursor.execute(_OLDEST_COUNTING, {"key": key, "no": False}).one()[0]
                    return RateDenied(
                        bucket.name, bucket.limit, retry_after(oldest, now, self.window)
                    )
            # A bucket with limit 0 has no rows to count and admits nothing.
            for bucket in by_key.values():
                if bucket.limit <= 0:
                    return RateDenied(bucket.name, bucket.limit, 60)
            raise StorageError("rate_counts disagrees with the admission it refused")

        return Later(outcome)

    def commit(self, reservation: Reservation) -> None:
        self.sql.transact(lambda cursor: self.commit_in(cursor, (reservation,)), order=UNLOCKED)

    def commit_in(self, cursor: Cursor, reservations: Sequence[Reservation]) -> None:
        """Count the slots from now, inside the caller's transaction (the accept's).

        No advisory lock: a commit changes no count (the slot was counted
        while pending), and the row it updates is locked by the update
        itself. A slot that is gone (its reservation expired and was pruned)
        is not put back: only :meth:`renew`, under the lock, may admit it
        again, so a late accept can never count past the limit.
        """
        now = self.clock.now().timestamp()
        for reservation in reservations:
            cursor.execute(_COMMIT, {"pending": False, "at": now, "reservation": reservation.id})

    def release(self, reservation: Reservation) -> None:
        def give_back(cursor: Cursor) -> None:
            _lock(cursor, reservation.identity)
            cursor.execute(_RELEASE, {"reservation": reservation.id})

        lock = Order.sender_lock(advisory_lock_id(reservation.identity))
        self.sql.transact(give_back, order=lock, durable=False)


def _lock(cursor: Cursor, identity: str) -> None:
    """PostgreSQL: the identity's lock, held to the commit. (SQLite has one writer.)

    Every change to an identity's counts is made under it, in the group
    commit's order, so two nodes never wait for each other's count rows.
    """
    if cursor.dialect == "postgresql":
        cursor.execute(_ADVISORY_LOCK, {"lock_id": advisory_lock_id(identity)})
