"""What the milter reads from and writes to the database on the mail path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from osfmilter.addresses import IPAddress, address_key
from osfmilter.errors import StorageError
from osfmilter.health import BackendHealth
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.storage.db import describe
from osfmilter.storage.schema import (
    Customer,
    Event,
    MonthlyVolume,
    SaslAccount,
    ScannedDomain,
    SmtpServer,
)


@dataclass(frozen=True)
class EventRecord:
    """The columns of one event row (SPEC §6), before it is stored."""

    at: datetime
    node: str
    queue_id: str
    stage: str
    client_ip: str
    identity: Identity | None
    envelope_sender: str
    header_from_domain: str
    rcpt_count: int
    size: int
    action: str
    reason: str
    smtp_code: int | None
    enhanced_code: str
    spam_score: float | None = None
    spam_rules: str = ""
    virus_name: str = ""
    spf_result: str = ""


HEALTH_NAME = "database"


class SqlStore:
    """The database behind the milter: identity lookups and decision records."""

    def __init__(self, engine: Engine, health: BackendHealth | None = None) -> None:
        self.engine = engine
        self.health = health or BackendHealth()
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction; any database failure surfaces as :class:`StorageError`."""
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            self.health.failed(HEALTH_NAME, describe(exc))
            raise StorageError(describe(exc)) from exc
        self.health.ok(HEALTH_NAME)

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        """The SASL account for a login, else the longest registered prefix holding client."""
        with self.session() as session:
            if login:
                account = session.scalars(
                    select(SaslAccount).where(SaslAccount.login == login)
                ).one_or_none()
                # A login that is not registered does not fall back to the IP:
                # the MTA vouched for this account, and it is not ours.
                if account is None:
                    return None
                return self._identity(
                    session, IdentityKind.SASL, account.id, account.login,
                    account.customer, account.state,
                )
            if client is None:
                return None
            key = address_key(client)
            server = session.scalars(
                select(SmtpServer)
                .where(
                    SmtpServer.family == client.version,
                    SmtpServer.first_address <= key,
                    SmtpServer.last_address >= key,
                )
                .order_by(SmtpServer.prefix_len.desc())
                .limit(1)
            ).one_or_none()
            if server is None:
                return None
            return self._identity(
                session, IdentityKind.SERVER, server.id, server.network,
                server.customer, server.state,
            )

    @staticmethod
    def _identity(
        session: Session, kind: IdentityKind, id_: int, name: str, customer: Customer, state: str
    ) -> Identity:
        domains = session.scalars(
            select(ScannedDomain.domain).where(ScannedDomain.customer_id == customer.id)
        )
        return Identity(
            kind=kind,
            id=id_,
            name=name,
            customer_id=customer.id,
            customer=customer.name,
            plan=customer.plan,
            state=ServerState(state),
            scanned_domains=frozenset(domains),
        )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction that serialises with other writers of the same counters.

        SQLite takes its write lock up front (BEGIN IMMEDIATE); PostgreSQL
        locks the rows it reads with FOR UPDATE.
        """
        try:
            with self.engine.connect() as plain:
                connection = plain.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    yield connection
        except SQLAlchemyError as exc:
            self.health.failed(HEALTH_NAME, describe(exc))
            raise StorageError(describe(exc)) from exc
        self.health.ok(HEALTH_NAME)

    def count_states(self) -> dict[str, int]:
        """Registered identities per reputation state, servers and SASL accounts together."""
        counts: dict[str, int] = {}
        with self.session() as session:
            for table in (SmtpServer, SaslAccount):
                for state, count in session.execute(
                    select(table.state, func.count()).group_by(table.state)
                ):
                    counts[state] = counts.get(state, 0) + int(count)
        return counts

    def record(self, record: EventRecord) -> None:
        with self._write() as connection:
            connection.execute(insert(Event).values(**event_values(record)))

    def record_accept(
        self, record: EventRecord, charge: VolumeCharge | None
    ) -> VolumeDenied | None:
        """Charge the month's volume and record the accept, in one transaction or not at all."""
        with self._write() as connection:
            if charge is not None:
                used = self._locked_volume(connection, charge.month, "outbound",
                                           charge.customer_id, charge.domain)
                inbound = self._inbound_bytes(connection, charge) if charge.domain else 0
                allowance = charge.allowance(inbound)
                if allowance is not None and used + charge.volume > allowance:
                    return VolumeDenied(used, allowance)
                row = _volume_row(charge.month, "outbound", charge.customer_id, charge.domain)
                connection.execute(
                    update(MonthlyVolume)
                    .where(*row)
                    .values(bytes=MonthlyVolume.bytes + charge.volume,
                            messages=MonthlyVolume.messages + 1)
                )
            connection.execute(insert(Event).values(**event_values(record)))
        return None

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None:
        """Add received bytes × recipients per (customer id, scanned domain)."""
        with self._write() as connection:
            for (customer_id, domain), volume in sorted(volumes.items()):
                self._locked_volume(connection, month, "inbound", customer_id, domain)
                connection.execute(
                    update(MonthlyVolume)
                    .where(*_volume_row(month, "inbound", customer_id, domain))
                    .values(bytes=MonthlyVolume.bytes + volume,
                            messages=MonthlyVolume.messages + 1)
                )

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        """(customer id, scanned domain) for a recipient domain or its parent domains."""
        labels = domain.split(".")
        candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        if not candidates:
            return None
        with self.session() as session:
            rows = session.execute(
                select(ScannedDomain.customer_id, ScannedDomain.domain)
                .where(ScannedDomain.domain.in_(candidates))
            ).all()
        if not rows:
            return None
        # The longest match: a subdomain registered on its own wins.
        customer_id, found = max(rows, key=lambda row: len(row[1]))
        return customer_id, found

    @staticmethod
    def _locked_volume(connection: Connection, month: str, direction: str, customer_id: int,
                       domain: str) -> int:
        """The row's bytes, creating the row if needed and locking it until commit."""
        values = {"month": month, "direction": direction, "customer_id": customer_id,
                  "domain": domain, "messages": 0, "bytes": 0}
        dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        connection.execute(dialect_insert(MonthlyVolume).values(**values).on_conflict_do_nothing())
        return int(connection.execute(
            select(MonthlyVolume.bytes)
            .where(*_volume_row(month, direction, customer_id, domain))
            .with_for_update()
        ).scalar_one())

    @staticmethod
    def _inbound_bytes(connection: Connection, charge: VolumeCharge) -> int:
        return int(connection.execute(
            select(func.coalesce(func.sum(MonthlyVolume.bytes), 0)).where(
                MonthlyVolume.month == charge.month,
                MonthlyVolume.direction == "inbound",
                MonthlyVolume.domain == charge.domain,
            )
        ).scalar_one())


def _volume_row(month: str, direction: str, customer_id: int, domain: str) -> tuple[Any, ...]:
    return (
        MonthlyVolume.month == month,
        MonthlyVolume.direction == direction,
        MonthlyVolume.customer_id == customer_id,
        MonthlyVolume.domain == domain,
    )


def _fit(value: str, column_length: int) -> str:
    """Text as a column can hold it: no NUL (PostgreSQL refuses it), bounded length."""
    return value.replace("\x00", "\\0")[:column_length]


def event_values(record: EventRecord) -> dict[str, object]:
    """The events row for a record, every text cut to fit its column."""
    identity = record.identity
    return dict(
        at=record.at,
        node=_fit(record.node, 64),
        queue_id=_fit(record.queue_id, 32),
        stage=record.stage,
        client_ip=_fit(record.client_ip, 45),
        identity=_fit(identity.label, 300) if identity else "",
        customer_id=identity.customer_id if identity else None,
        smtp_server_id=identity.id if identity and identity.kind is IdentityKind.SERVER else None,
        sasl_account_id=identity.id if identity and identity.kind is IdentityKind.SASL else None,
        envelope_sender=_fit(record.envelope_sender, 320),
        header_from_domain=_fit(record.header_from_domain, 253),
        rcpt_count=record.rcpt_count,
        size=record.size,
        action=record.action,
        reason=record.reason,
        smtp_code=record.smtp_code,
        enhanced_code=record.enhanced_code,
        spam_score=record.spam_score,
        spam_rules=_fit(record.spam_rules, 500),
        virus_name=_fit(record.virus_name, 200),
        spf_result=record.spf_result,
    )
