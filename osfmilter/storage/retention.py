"""Retention: old events and long-expired rate slots go; monthly totals and history stay.

Rows are deleted in batches, each its own short transaction that selects ids
and deletes by id, so the milter's own writes never wait long behind a purge.
On PostgreSQL the ids are taken ``FOR UPDATE SKIP LOCKED``: a rate slot that
a milter is pruning at that moment is left to it, and the purge never waits.
``monthly_volume`` and ``state_history`` are never touched.

Rate slots go one key at a time, and on PostgreSQL under the sender's lock,
as the milter changes them: a slot's delete also changes its key's count
(migration 0007), and taking count rows in the milter's order is what keeps
the two from waiting on each other. A key whose lock a milter holds is left
to that milter, which prunes it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from osfmilter.limits.rate import identity_of
from osfmilter.storage.db import transaction
from osfmilter.storage.rate import advisory_lock_id
from osfmilter.storage.schema import Event, RateSlot

BATCH_SIZE = 5000


@dataclass(frozen=True)
class PurgeResult:
    events: int
    rate_slots: int
    batches: int  # transactions that deleted rows


def slot_cutoff(now: datetime, window: float, reservation_ttl: float) -> float:
    """Epoch seconds before which no rate slot can still count.

    A committed slot counts until ``at`` + window, a pending one until its
    ``at`` (its expiry); a slot older than both periods together is dead
    however it is read.
    """
    return now.timestamp() - window - reservation_ttl


def _conditions(events_before: datetime, slots_before: float) -> tuple[Any, Any]:
    return Event.at < events_before, RateSlot.at < slots_before


def count(engine: Engine, events_before: datetime, slots_before: float) -> PurgeResult:
    """What :func:`purge` would remove now."""
    old_events, dead_slots = _conditions(events_before, slots_before)
    with transaction(engine) as connection:
        events = connection.execute(select(func.count()).where(old_events)).scalar_one()
        slots = connection.execute(select(func.count()).where(dead_slots)).scalar_one()
    return PurgeResult(int(events), int(slots), 0)


def purge(
    engine: Engine, events_before: datetime, slots_before: float, batch_size: int = BATCH_SIZE
) -> PurgeResult:
    """Delete events older than events_before and rate slots older than slots_before."""
    old_events, dead_slots = _conditions(events_before, slots_before)
    events, batches = _purge(engine, Event, old_events, batch_size)
    slots = 0
    with transaction(engine) as connection:
        keys = connection.scalars(select(RateSlot.key).where(dead_slots).distinct()).all()
    for key in keys:
        removed, key_batches = _purge(
            engine, RateSlot, dead_slots & (RateSlot.key == key), batch_size, lock=identity_of(key)
        )
        slots += removed
        batches += key_batches
    return PurgeResult(events, slots, batches)


def _purge(
    engine: Engine,
    table: type[Event] | type[RateSlot],
    condition: Any,
    batch_size: int,
    lock: str | None = None,
) -> tuple[int, int]:
    removed = batches = 0
    while True:
        with transaction(engine, write=True) as connection:
            if lock is not None and not _try_lock(connection, lock):
                break
            ids = connection.scalars(
                select(table.id)
                .where(condition)
                .order_by(table.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if ids:
                connection.execute(delete(table).where(table.id.in_(ids)))
        if not ids:
            break
        removed += len(ids)
        batches += 1
        if len(ids) < batch_size:
            break
    return removed, batches


def _try_lock(connection: Connection, identity: str) -> bool:
    """PostgreSQL: the sender's lock if it is free now (storage.rate); SQLite has one writer."""
    if connection.dialect.name != "postgresql":
        return True
    lock_id = advisory_lock_id(identity)
    return bool(connection.scalar(select(func.pg_try_advisory_xact_lock(lock_id))))
