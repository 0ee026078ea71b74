"""Everything outside the session, as the small interfaces it needs, injected."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from osfmilter.addresses import IPAddress
from osfmilter.clock import Clock
from osfmilter.config import Config
from osfmilter.decisionlog import DecisionLog
from osfmilter.events import EventRecord
from osfmilter.limits.rate import RateLimiter, Reservation
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.metrics import Metrics
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.notify.notices import Notice
from osfmilter.policy.context import SpfLookup
from osfmilter.reputation.transitions import IncidentKind
from osfmilter.scanners.service import ScanService


class Directory(Protocol):
    def begin_transaction(self) -> None:
        """A mail transaction starts: its lookups may share one look at the registry."""
        ...

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None: ...

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None: ...


class Reputation(Protocol):
    def observe(self, kind: IdentityKind, identity_id: int) -> ServerState: ...

    def record_incident(
        self, kind: IdentityKind, identity_id: int, incident_kind: IncidentKind, detail: str = ""
    ) -> ServerState: ...

    def record_limit_refusal(self, kind: IdentityKind, identity_id: int) -> ServerState: ...


class EventStore(Protocol):
    def record(self, record: EventRecord, notices: Sequence[Notice] = ()) -> None:
        """The event, and in its transaction the notices it may cause (the store drops
        those already written, and those the operator turned off)."""
        ...

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None: ...


class MessageSigner(Protocol):
    """One message's DKIM signature in the making: the body hashed as it streams in."""

    @property
    def algorithm(self) -> str: ...

    def body(self, chunk: bytes) -> None: ...

    def header(self, headers: Sequence[tuple[str, str]], timestamp: int) -> tuple[str, str]:
        """(DKIM-Signature, value) over these headers (as relayed) and the body so far."""
        ...


class Signing(Protocol):
    """DKIM keys (osfmilter.dkim.service): the customer's own active key for a domain."""

    def signer_for(self, customer_id: int, domain: str) -> MessageSigner | None:
        """A signer if ``domain`` is a verified domain of the customer with an active key."""
        ...


class Ledger(Protocol):
    """The accept's unit of work (storage.ledger)."""

    def accept(
        self,
        record: EventRecord,
        charge: VolumeCharge,
        reservations: Sequence[Reservation],
        in_time: Callable[[], bool],
    ) -> VolumeDenied | None:
        """Record the accept, charge its volume and count its rate slots: all or nothing.

        None when accepted (the reservations are used up); the denial when
        the volume would pass the month's allowance (nothing written).
        Raises errors.TooLate when ``in_time`` says the MTA stopped waiting.
        """
        ...


@dataclass(frozen=True)
class Services:
    """Everything outside the session, injected so tests can replace it."""

    config: Config
    directory: Directory
    events: EventStore
    ledger: Ledger
    limiter: RateLimiter
    scans: ScanService
    spf: SpfLookup | None
    reputation: Reputation
    metrics: Metrics
    clock: Clock
    decisions: DecisionLog
    node: str
    signing: Signing | None = None  # None: [dkim] sign is off
