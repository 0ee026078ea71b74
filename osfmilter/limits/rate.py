"""The 5-minute rate limit: a true sliding window with reservations.

A message takes a slot at MAIL FROM (so parallel transactions cannot all slip
under the limit) and keeps it until it is accepted, when the slot starts to
count for one window from that moment, or until it is refused or aborted,
when the slot is given back. A key never holds more than its limit of
pending plus counting slots, so at no instant have more than *limit*
messages been accepted in the preceding window.

A transaction may outlive its reservation (RCPT gaps, a slow DATA, a long
end of message: MAIL to the end of message can exceed ``reservation_ttl``),
and an expired reservation's slots may be gone. Such a message is admitted
again, under the identity's lock like a new one, before it is accepted
(:meth:`RateLimiter.renew`) when it could expire before its accept commits;
it is never counted past the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Bucket:
    """One window a message counts in: ``all`` messages, or those of ``unknown`` senders."""

    name: str
    limit: int


# How far relay nodes' clocks may disagree: a reservation this close to its
# expiry may already have lost its slots to another node's prune.
EXPIRY_MARGIN = 60.0


@dataclass(frozen=True)
class Reservation:
    id: str
    identity: str
    keys: tuple[str, ...]
    expires: float  # epoch seconds: its pending slots stop counting then
    # The buckets it was admitted to, to admit it again if it outlives itself.
    buckets: tuple[Bucket, ...] = ()

    def due_for_renewal(self, when: float) -> bool:
        """Its slots may be gone by ``when``, here or on another node: admit it again first."""
        return when >= self.expires - EXPIRY_MARGIN


@dataclass(frozen=True)
class RateDenied:
    bucket: str
    limit: int
    retry_after: int  # seconds until a slot frees up, at the earliest


class RateLimiter(Protocol):
    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        """Take one slot in every bucket, or none if any bucket is full."""

    def renew(self, reservation: Reservation) -> Reservation | RateDenied:
        """Admit again a reservation due for renewal, exactly as a new one; the old one is gone.

        Denied, the message must not be accepted: the window filled while
        its slots were expired.
        """

    def commit(self, reservation: Reservation) -> None:
        """The message was accepted: its slots count from now for one window.

        Only slots still held count: a reservation due for renewal must be
        renewed first, or its message may go uncounted.
        """

    def release(self, reservation: Reservation) -> None:
        """The message was not accepted: give its slots back."""


@runtime_checkable
class CommitsInTransaction(Protocol):
    """A limiter whose commit can join the database transaction that records the accept."""

    def commit_in(self, connection: Any, reservations: Sequence[Reservation]) -> None: ...


def slot_key(identity: str, bucket: str) -> str:
    return f"{identity}|{bucket}"


def identity_of(key: str) -> str:
    """The identity a slot key belongs to (bucket names have no '|')."""
    return key.rpartition("|")[0] or key


def retry_after(oldest_counting: float | None, now: float, window: float) -> int:
    """When the oldest counting slot leaves the window; a minute if only pending ones fill it."""
    if oldest_counting is None:
        return 60
    return max(1, math.ceil(oldest_counting + window - now))
