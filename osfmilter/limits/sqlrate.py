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

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from osfmilter.clock import Clock
from osfmilter.errors import StorageError
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key
from osfmilter.storage.db import describe
from osfmilter.storage.schema import RateSlot


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
                        connection.execute(select(func.pg_advisory_xact_lock(
                            advisory_lock_id(identity)
                        )))
                    yield connection
        except SQLAlchemyError as exc:
            raise StorageError(describe(exc)) from exc

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        now = self.clock.now().timestamp()
        keys = {slot_key(identity, b.name): b for b in buckets}
        with self._locked(identity) as connection:
            connection.execute(
                delete(RateSlot).where(
                    RateSlot.key.in_(keys),
                    or_(
                        and_(RateSlot.pending, RateSlot.at < now),
                        and_(~RateSlot.pending, RateSlot.at <= now - self.window),
                    ),
                )
            )
            usage = connection.execute(
                select(
                    RateSlot.key,
                    func.count(),
                    func.min(RateSlot.at).filter(~RateSlot.pending),
                )
                .where(RateSlot.key.in_(keys))
                .group_by(RateSlot.key)
            )
            for key, used, oldest in usage:
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
                insert(RateSlot),
                [
                    {"key": key, "reservation": reservation.id, "pending": True,
                     "at": now + self.reservation_ttl}
                    for key in reservation.keys
                ],
            )
        return reservation

    def commit(self, reservation: Reservation) -> None:
        now = self.clock.now().timestamp()
        identity = reservation.keys[0].rpartition("|")[0]
        with self._locked(identity) as connection:
            updated = connection.execute(
                update(RateSlot)
                .where(RateSlot.reservation == reservation.id)
                .values(pending=False, at=now)
            ).rowcount
            if updated < len(reservation.keys):
                # The reservation expired (a transaction longer than its TTL):
                # the message was accepted all the same, so it counts.
                present = set(connection.scalars(
                    select(RateSlot.key).where(RateSlot.reservation == reservation.id)
                ))
                connection.execute(insert(RateSlot), [
                    {"key": key, "reservation": reservation.id, "pending": False, "at": now}
                    for key in reservation.keys if key not in present
                ])

    def release(self, reservation: Reservation) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(RateSlot).where(RateSlot.reservation == reservation.id))
        except SQLAlchemyError as exc:
            raise StorageError(describe(exc)) from exc
