"""A step's world in a few lines: a transaction, the config, ports that record their calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from osfmilter.config import Config
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.model import Envelope, Identity
from osfmilter.policy.context import Context, Ports, TransactionState
from osfmilter.scanners import ScanVerdict
from osfmilter.scanners.report import ScanOutcome, ScanReport
from osfmilter.spf.result import SpfOutcome
from osfmilter.spool import Spool
from tests.fakes import FixedClock, MemoryLimiter, identity


@dataclass
class StubSpf:
    outcome: SpfOutcome
    asked: list[tuple[str, str]] = field(default_factory=list)

    def check(self, sender: str, helo: str) -> SpfOutcome:
        self.asked.append((sender, helo))
        return self.outcome


@dataclass
class StubDomains:
    """Verified domains and their customer ids; a lookup finds the closest parent."""

    owners: dict[str, int] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        self.asked.append(domain)
        labels = domain.split(".")
        for i in range(len(labels)):
            if (candidate := ".".join(labels[i:])) in self.owners:
                return self.owners[candidate], candidate
        return None


@dataclass
class StubScanning:
    report: ScanReport = field(default_factory=ScanReport)
    scanned: int = 0

    def scan(self, context: Context) -> ScanReport:
        self.scanned += 1
        return self.report


@dataclass
class StubAccepting:
    """Accepts, or denies the volume, or raises what it is given."""

    denied: VolumeDenied | None = None
    error: Exception | None = None
    charges: list[VolumeCharge] = field(default_factory=list)

    def accept(self, context: Context, charge: VolumeCharge) -> VolumeDenied | None:
        self.charges.append(charge)
        if self.error is not None:
            raise self.error
        return self.denied


@dataclass
class World:
    """A context and the fakes behind its ports, for asserting what a step asked."""

    context: Context
    clock: FixedClock
    limiter: MemoryLimiter
    scanning: StubScanning
    accepting: StubAccepting
    domains: StubDomains

    @property
    def tx(self) -> TransactionState:
        return self.context.tx


def world(
    ident: Identity | None = None,
    *,
    sender: str = "a@example.com",
    declared_size: int | None = None,
    config: Config | None = None,
    spf: StubSpf | None = None,
    unregistered: bool = False,
    client: str = "192.0.2.10",
    owners: dict[str, int] | None = None,
) -> World:
    config = config or Config()
    ident = None if unregistered else (ident or identity())
    limits = config.plans.limits(ident.plan) if ident else config.plans.free
    tx = TransactionState(Envelope(sender, declared_size, ""), ident, limits, "QID")
    tx.spool = Spool()
    clock = FixedClock()
    limiter = MemoryLimiter(clock, config.rates.window, config.rates.reservation_ttl)
    scanning, accepting, domains = StubScanning(), StubAccepting(), StubDomains(owners or {})
    ports = Ports(
        rate=limiter,
        spf=spf,
        domains=domains,
        scanning=scanning,
        accepting=accepting,
        clock=clock,
    )
    context = Context(tx, client, "mail.example.com", config, ports)
    return World(context, clock, limiter, scanning, accepting, domains)


def report(
    virus: str | None = None,
    score: float | None = None,
    failed: tuple[str, ...] = (),
    spam_engine: str = "spamassassin",
) -> ScanReport:
    """A scan report: clamav's answer if virus is given ("" clean), the spam engine's if
    score is, and a failure for each scanner named in failed."""
    outcomes = []
    if virus is not None:
        outcomes.append(ScanOutcome("clamav", ScanVerdict(virus=virus), "", 0.01))
    if score is not None:
        outcomes.append(ScanOutcome(spam_engine, ScanVerdict(score=score), "", 0.02))
    outcomes += [ScanOutcome(name, None, "connection refused", 0.0) for name in failed]
    return ScanReport(tuple(outcomes))
