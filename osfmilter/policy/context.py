"""What the steps of the policy read: one transaction's state, the config, the ports.

A step reads the :class:`Context` and returns a refusal or ``None``. The
steps that need the world (the rate windows, SPF, the scanners, the
accept's commit) ask it through the small :class:`Ports`, and write what
they learn on the transaction (its reservations, its SPF result, its scan
report), so that later steps and the event row see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from osfmilter.clock import Clock
from osfmilter.config import Config, PlanLimits
from osfmilter.limits.rate import Bucket, RateDenied, Reservation
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.model import Envelope, Identity, domain_of, is_known_sender
from osfmilter.scanners.report import ScanReport
from osfmilter.spf.result import SpfOutcome
from osfmilter.spool import Spool
from osfmilter.verdict import Refused

# An accept must be committed this long before the MTA stops waiting (at most
# a tenth of [milter] content_timeout): the commit and the answer still take
# a moment after the last look at the clock.
ACCEPT_MARGIN = 1.0


@dataclass
class TransactionState:
    """One mail transaction, MAIL FROM to its end, as the session has gathered it so far."""

    envelope: Envelope
    identity: Identity | None
    limits: PlanLimits
    queue_id: str
    recipients: list[str] = field(default_factory=list)
    recipients_refused: int = 0
    header_from_domains: list[str] = field(default_factory=list)
    spool: Spool | None = None
    # Rate slots held for this message until it is accepted or given up.
    reservations: list[Reservation] = field(default_factory=list)
    counted_as_unknown: bool = False
    scan: ScanReport = field(default_factory=ScanReport)
    spf: SpfOutcome | None = None
    rate_denied: RateDenied | None = None
    # Occurrences of our own header the client sent, by their name as sent.
    forged_headers: list[tuple[str, int]] = field(default_factory=list)
    header_counts: dict[str, int] = field(default_factory=dict)
    # The answer that ended the transaction early; repeated if the MTA goes on anyway.
    refused: Refused | None = None
    # When the milter last answered during the content phase (monotonic): the
    # MTA sends the end of message right after, and starts its clock then.
    content_answered: float | None = None
    # The steps that ran, in order, each once; after a refusal the last one refused.
    checks: list[str] = field(default_factory=list)
    # Whose each domain asked about is: (customer id, verified domain) or None.
    owners: dict[str, tuple[int, str] | None] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.spool.size if self.spool else 0

    @property
    def header_from_domain(self) -> str:
        return self.header_from_domains[0] if self.header_from_domains else ""

    def envelope_sender_known(self) -> bool:
        if self.identity is None:
            return False
        return is_known_sender(domain_of(self.envelope.sender), self.identity.scanned_domains)

    def sending_domains(self) -> list[str]:
        """The From: domains, or the envelope sender's when there is no From: header."""
        return self.header_from_domains or [domain_of(self.envelope.sender)]

    def header_sender_known(self) -> bool:
        """Known only if every From: domain is (a forged second From: makes it unknown)."""
        if self.identity is None:
            return False
        scanned = self.identity.scanned_domains
        return all(is_known_sender(d, scanned) for d in self.sending_domains())


class RateWindows(Protocol):
    """The sliding windows (limits.rate): a slot per message, reserved until the accept."""

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied: ...

    def renew(self, reservation: Reservation) -> Reservation | RateDenied: ...


class SpfLookup(Protocol):
    def check(self, sender: str, helo: str) -> SpfOutcome: ...


class DomainOwners(Protocol):
    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        """(customer id, verified domain) for a domain or its closest registered parent."""
        ...


class Scanning(Protocol):
    def scan(self, context: Context) -> ScanReport: ...


class Accepting(Protocol):
    def accept(self, context: Context, charge: VolumeCharge) -> VolumeDenied | None:
        """Commit the accept (event, volume charge, rate slots) in time, or not at all.

        Raises errors.TooLate when the MTA has stopped waiting first.
        """
        ...


@dataclass(frozen=True)
class Ports:
    rate: RateWindows
    spf: SpfLookup | None  # None: [spf] is off
    domains: DomainOwners
    scanning: Scanning
    accepting: Accepting
    clock: Clock


@dataclass(frozen=True)
class Context:
    """What a step may look at: the transaction, the connection, the config, the ports."""

    tx: TransactionState
    client: str  # the client address as replies name it
    helo: str
    config: Config
    ports: Ports

    @property
    def identity(self) -> Identity:
        """The registered identity; only steps after ``relay`` ask for it."""
        assert self.tx.identity is not None
        return self.tx.identity

    def owner_of(self, domain: str) -> tuple[int, str] | None:
        """(customer id, verified domain) that ``domain`` is or is under; asked once per message."""
        owners = self.tx.owners
        if domain not in owners:
            owners[domain] = self.ports.domains.find_scanned_domain(domain) if domain else None
        return owners[domain]

    def content_elapsed(self) -> float:
        """Seconds since the milter last answered in the content phase."""
        started = self.tx.content_answered
        now = self.ports.clock.monotonic()
        return 0.0 if started is None else now - started

    def in_time(self) -> bool:
        """Whether an accept committed now still reaches the MTA before it stops waiting."""
        timeout = self.config.milter.content_timeout
        return self.content_elapsed() < timeout - min(ACCEPT_MARGIN, timeout / 10)
