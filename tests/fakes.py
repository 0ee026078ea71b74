"""Small plain fakes of the session's services, for tests without a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from osfmilter.addresses import IPAddress
from osfmilter.config import Config
from osfmilter.decisionlog import DecisionLog
from osfmilter.errors import StorageError
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.session import Services
from osfmilter.storage.store import EventRecord


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
    down: bool = False

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        if self.down:
            raise StorageError("connection refused")
        if login:
            return self.by_login.get(login)
        return self.by_address.get(str(client))


@dataclass
class FakeRecorder:
    records: list[EventRecord] = field(default_factory=list)
    down: bool = False

    def record(self, record: EventRecord) -> None:
        if self.down:
            raise StorageError("connection refused")
        self.records.append(record)


def services(
    directory: FakeDirectory, recorder: FakeRecorder, config: Config | None = None
) -> Services:
    return Services(
        config=config or Config(),
        directory=directory,
        recorder=recorder,
        clock=FixedClock(),
        decisions=DecisionLog(),
        node="test-node",
    )
