"""The accept's unit of work: the event, the month's volume and the rate slots.

With the SQL rate windows the slots are counted in the accept's own
transaction; with Redis they are counted right after it, and a failure
there leaves the accept standing (the slot's reservation expires instead,
and that is logged): the customer would otherwise retry a message already
counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from osfmilter.errors import DependencyError
from osfmilter.events import EventRecord
from osfmilter.limits.rate import CommitsInTransaction, RateLimiter, Reservation
from osfmilter.limits.volume import VolumeCharge, VolumeDenied

log = logging.getLogger(__name__)


class AcceptStore(Protocol):
    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Any], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None: ...


class AcceptLedger:
    def __init__(self, store: AcceptStore, limiter: RateLimiter) -> None:
        self.store, self.limiter = store, limiter
        # Asked once: a runtime Protocol check costs ~10 µs, per message otherwise.
        self._in_transaction = isinstance(limiter, CommitsInTransaction)

    def accept(
        self,
        record: EventRecord,
        charge: VolumeCharge,
        reservations: Sequence[Reservation],
        in_time: Callable[[], bool],
    ) -> VolumeDenied | None:
        if self._in_transaction and reservations:
            limiter = cast(CommitsInTransaction, self.limiter)  # checked in __init__

            def count_slots(connection: Any) -> None:
                limiter.commit_in(connection, reservations)

            return self.store.record_accept(record, charge, count_slots, in_time)
        denied = self.store.record_accept(record, charge, None, in_time)
        if denied is None:
            self._count_after(record, reservations)
        return denied

    def _count_after(self, record: EventRecord, reservations: Sequence[Reservation]) -> None:
        """The message is accepted and recorded: its rate slots now count."""
        try:
            for reservation in reservations:
                self.limiter.commit(reservation)
        except Exception as exc:
            log.error(
                "rate slots of qid=%s not committed: %s",
                record.queue_id or "-",
                exc,
                exc_info=not isinstance(exc, DependencyError),
            )
