"""Small plain fakes of the session's services, for tests without a database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from osfmilter.addresses import IPAddress
from osfmilter.config import Config, RegistrationSection
from osfmilter.decisionlog import DecisionLog
from osfmilter.errors import StorageError, TooLate
from osfmilter.events import EventRecord
from osfmilter.health import BackendHealth
from osfmilter.limits.rate import Bucket, RateDenied, Reservation, retry_after, slot_key
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.metrics import Metrics
from osfmilter.model import Identity, IdentityKind, ServerState, matching_domain
from osfmilter.notify.notices import Notice
from osfmilter.reputation.transitions import (
    Event,
    Incident,
    IncidentKind,
    LimitRefusal,
    Rules,
    Standing,
    Tick,
    Transition,
    apply,
)
from osfmilter.scanners.service import ScanService
from osfmilter.session import Services
from osfmilter.session.services import Signing
from osfmilter.spf.checker import SpfChecker
from osfmilter.storage.ledger import AcceptLedger

# The tests register documentation networks (192.0.2.0/24, 2001:db8::/32) and
# loopback, which a real relay refuses (osfmilter.registration).
TEST_REGISTRATION = RegistrationSection(allow_non_global=True)


class FixedClock:
    def __init__(self, start: datetime = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)) -> None:
        self.current = start
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        self.mono += seconds


def identity(
    name: str = "192.0.2.0/24",
    kind: IdentityKind = IdentityKind.SERVER,
    plan: str = "free",
    state: ServerState = ServerState.VEILIG,
    domains: frozenset[str] = frozenset({"example.com"}),
) -> Identity:
    return Identity(kind, 1, name, 7, "acme", plan, state, domains)


@dataclass
class FakeDirectory:
    """Maps a client address (str) or login to an identity; can be made to fail."""

    by_address: dict[str, Identity] = field(default_factory=dict)
    by_login: dict[str, Identity] = field(default_factory=dict)
    # Verified domains of customers with no identity here: domain -> customer id.
    other_domains: dict[str, int] = field(default_factory=dict)
    down: bool = False

    def begin_transaction(self) -> None:
        """Nothing to share: every lookup here is in memory."""

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        if self.down:
            raise StorageError("connection refused")
        if login:
            return self.by_login.get(login)
        return self.by_address.get(str(client))

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        """The closest registered domain, of the identities' customers or of other_domains."""
        if self.down:
            raise StorageError("connection refused")
        owners = dict(self.other_domains)
        for ident in [*self.by_address.values(), *self.by_login.values()]:
            owners.update(dict.fromkeys(ident.scanned_domains, ident.customer_id))
        found = matching_domain(domain, frozenset(owners))
        return None if found is None else (owners[found], found)


@dataclass
class FakeRecorder:
    """Events and volume in memory, with the same all-or-nothing accept as the database."""

    records: list[EventRecord] = field(default_factory=list)
    volume: dict[tuple[str, str, int, str], int] = field(default_factory=dict)
    down: bool = False
    notices: list[Notice] = field(default_factory=list)

    def record(self, record: EventRecord, notices: Sequence[Notice] = ()) -> None:
        if self.down:
            raise StorageError("connection refused")
        self.records.append(record)
        self.notices.extend(notices)

    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Any], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None:
        if self.down:
            raise StorageError("connection refused")
        if in_time is not None and not in_time():
            raise TooLate("the MTA stopped waiting")
        if charge is not None:
            key = (charge.month, "outbound", charge.customer_id, charge.domain)
            used = self.volume.get(key, 0)
            inbound = sum(
                v
                for (m, d, _, dom), v in self.volume.items()
                if (m, d, dom) == (charge.month, "inbound", charge.domain)
            )
            allowance = charge.allowance(inbound)
            if allowance is not None and used + charge.volume > allowance:
                return VolumeDenied(used, allowance)
            self.volume[key] = used + charge.volume
        self.records.append(record)
        return None

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None:
        if self.down:
            raise StorageError("connection refused")
        for (customer_id, domain), volume in volumes.items():
            key = (month, "inbound", customer_id, domain)
            self.volume[key] = self.volume.get(key, 0) + volume


class MemoryLimiter:
    """The sliding window with reservations, in memory, on the given clock."""

    def __init__(self, clock: FixedClock, window: float = 300.0, ttl: float = 900.0) -> None:
        self.clock, self.window, self.ttl = clock, window, ttl
        self.slots: dict[str, dict[str, tuple[bool, float]]] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StorageError("connection refused")

    def reserve(self, identity: str, buckets: Sequence[Bucket]) -> Reservation | RateDenied:
        return self._admit(identity, buckets, replacing=None)

    def renew(self, reservation: Reservation) -> Reservation | RateDenied:
        return self._admit(reservation.identity, reservation.buckets, replacing=reservation)

    def _admit(
        self, identity: str, buckets: Sequence[Bucket], replacing: Reservation | None
    ) -> Reservation | RateDenied:
        self._check()
        if replacing is not None:
            self.release(replacing)
        now = self.clock.now().timestamp()
        keys = [slot_key(identity, b.name) for b in buckets]
        for bucket, key in zip(buckets, keys, strict=True):
            slots = self.slots.setdefault(key, {})
            for rid, (pending, at) in list(slots.items()):
                if (pending and at < now) or (not pending and at <= now - self.window):
                    del slots[rid]
            if len(slots) >= bucket.limit:
                counting = [at for pending, at in slots.values() if not pending]
                return RateDenied(
                    bucket.name,
                    bucket.limit,
                    retry_after(min(counting, default=None), now, self.window),
                )
        rid = uuid.uuid4().hex
        for key in keys:
            self.slots[key][rid] = (True, now + self.ttl)
        return Reservation(rid, identity, tuple(keys), now + self.ttl, tuple(buckets))

    def commit(self, reservation: Reservation) -> None:
        """Only a slot still held counts (as in the real limiters)."""
        self._check()
        now = self.clock.now().timestamp()
        for key in reservation.keys:
            slots = self.slots.get(key, {})
            if slots.get(reservation.id, (False, 0.0))[0]:
                slots[reservation.id] = (False, now)

    def release(self, reservation: Reservation) -> None:
        self._check()
        for key in reservation.keys:
            self.slots.get(key, {}).pop(reservation.id, None)

    def counting(self, identity: str, bucket: str = "all") -> int:
        return sum(
            1
            for pending, _ in self.slots.get(slot_key(identity, bucket), {}).values()
            if not pending
        )


class MemoryReputation:
    """The pure transition function over standings kept in memory."""

    def __init__(self, clock: FixedClock, rules: Rules | None = None) -> None:
        self.clock = clock
        self.rules = rules or Rules.from_config(Config().reputation)
        self.standings: dict[tuple[IdentityKind, int], Standing] = {}
        self.history: list[Transition] = []
        self.down = False

    def _apply(self, kind: IdentityKind, identity_id: int, event: Event) -> ServerState:
        if self.down:
            raise StorageError("connection refused")
        key = (kind, identity_id)
        standing = self.standings.get(key) or Standing(ServerState.VEILIG, self.clock.now())
        outcome = apply(standing, event, self.rules)
        self.standings[key] = outcome.standing
        self.history += outcome.transitions
        return outcome.standing.state

    def state(self, kind: IdentityKind, identity_id: int) -> ServerState:
        standing = self.standings.get((kind, identity_id))
        return standing.state if standing else ServerState.VEILIG

    def observe(self, kind: IdentityKind, identity_id: int) -> ServerState:
        return self._apply(kind, identity_id, Tick(self.clock.now()))

    def record_incident(
        self, kind: IdentityKind, identity_id: int, incident_kind: IncidentKind, detail: str = ""
    ) -> ServerState:
        return self._apply(kind, identity_id, Incident(incident_kind, self.clock.now(), detail))

    def record_limit_refusal(self, kind: IdentityKind, identity_id: int) -> ServerState:
        return self._apply(kind, identity_id, LimitRefusal(self.clock.now()))


def services(
    directory: FakeDirectory,
    recorder: FakeRecorder,
    config: Config | None = None,
    clock: FixedClock | None = None,
    limiter: MemoryLimiter | None = None,
    scans: ScanService | None = None,
    spf: SpfChecker | None = None,
    reputation: MemoryReputation | None = None,
    metrics: Metrics | None = None,
    signing: Signing | None = None,
) -> Services:
    clock = clock or FixedClock()
    limiter = limiter or MemoryLimiter(clock)
    return Services(
        config=config or Config(),
        directory=directory,
        events=recorder,
        ledger=AcceptLedger(recorder, limiter),
        limiter=limiter,
        scans=scans or ScanService(None, None, BackendHealth()),
        spf=spf,
        reputation=reputation or MemoryReputation(clock),
        metrics=metrics or Metrics(),
        clock=clock,
        decisions=DecisionLog(),
        node="test-node",
        signing=signing,
    )
