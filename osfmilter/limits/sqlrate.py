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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.clock import Clock
from osfmilter.errors import StorageError
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key
from osfmilter.storage.db import describe
from osfmilter.storage.schema import RateSlot

# Built once: building a statement costs more than running it on SQLite.
_ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("lock_id")))
_PRUNE = delete(RateSlot).where(
    RateSlot.key.in_(bindparam("keys", expanding=True)),
    or_(
        and_(RateSlot.pending, RateSlot.at < bindparam("now")),
        and_(~RateSlot.pending, RateSlot.at <= bindparam("cutoff")),
    ),
)
_USAGE = (
    select(RateSlot.key, func.count(), func.min(RateSlot.at).filter(~RateSlot.pending))
    .where(RateSlot.key.in_(bindparam("keys", expanding=True)))
    .group_by(RateSlot.key)
)
_INSERT = insert(RateSlot)
_COMMIT = (
    update(RateSlot)
    .where(RateSlot.reservation == bindparam("rid"))
    .values(pending=False, at=bindparam("accepted_at"))
)
_SLOTS_OF = select(RateSlot.key).where(RateSlot.reservation == bindparam("rid"))
_RELEASE = delete(RateSlot).where(RateSlot.reservation == bindparam("rid"))


def advisory_lock_id(text: str) -> int:
    """A stable signed 64-bit number for pg_advisory_xact_lock."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlRateLimiter:
    def __init__(self, engine: Engine, clock: Clock, window: float, reservation_ttl: float) -> None:
        self.engine = engine
        self.clock = clock
        self.window = window
        self.reservation_ttl = reservation_ttl

    @contextmanager
    def _locked(self, identity: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as plain:
                connection = plain.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(_ADVISORY_LOCK,
                                           {"lock_id": advisory_lock_id(identity)})
                    yield connection
        except SQLAlchemyError as exc:
            raise StorageError(describe(exc)) from exc

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        now = self.clock.now().timestamp()
        keys = {slot_key(identity, b.name): b for b in buckets}
        with self._locked(identity) as connection:
            connection.execute(
                _PRUNE, {"keys": list(keys), "now": now, "cutoff": now - self.window}
            )
            for key, used, oldest in connection.execute(_USAGE, {"keys": list(keys)}):
                bucket = keys[key]
                if used >= bucket.limit:
                    return RateDenied(bucket.name, bucket.limit,
                                      retry_after(oldest, now, self.window))
            # A bucket with limit 0 has no rows to count and admits nothing.
            for bucket in buckets:
                if bucket.limit <= 0:
                    return RateDenied(bucket.name, bucket.limit, 60)
            reservation = Reservation(uuid.uuid4().hex, tuple(keys))
            connection.execute(
                _INSERT,
                [
                    {"key": key, "reservation": reservation.id, "pending": True,
                     "at": now + self.reservation_ttl}
                    for key in reservation.keys
                ],
            )
        return reservation

    def commit(self, reservation: Reservation) -> None:
        identity = reservation.keys[0].rpartition("|")[0]
        with self._locked(identity) as connection:
            self._commit_in(connection, reservation)

    def commit_in(self, connection: Connection, reservations: Sequence[Reservation]) -> None:
        """Commit inside the caller's transaction (the one recording the accept).

        One write transaction less per message; on PostgreSQL the identity's
        advisory lock is taken here, after the caller's row locks, in the
        same order every accept takes them.
        """
        for reservation in reservations:
            if connection.dialect.name == "postgresql":
                identity = reservation.keys[0].rpartition("|")[0]
                connection.execute(_ADVISORY_LOCK, {"lock_id": advisory_lock_id(identity)})
            self._commit_in(connection, reservation)

    def _commit_in(self, connection: Connection, reservation: Reservation) -> None:
        now = self.clock.now().timestamp()
        updated = connection.execute(
            _COMMIT, {"rid": reservation.id, "accepted_at": now}
        ).rowcount
        if updated < len(reservation.keys):
            # The reservation expired (a transaction longer than its TTL):
            # the message was accepted all the same, so it counts.
            present = set(connection.scalars(_SLOTS_OF, {"rid": reservation.id}))
            connection.execute(_INSERT, [
                {"key": key, "reservation": reservation.id, "pending": False, "at": now}
                for key in reservation.keys if key not in present
            ])

    def release(self, reservation: Reservation) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(_RELEASE, {"rid": reservation.id})
        except SQLAlchemyError as exc:
            raise StorageError(describe(exc)) from exc
