"""What the milter reads from and writes to the database on the mail path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
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

# The mail path's statements, built once: building a statement costs more
# than running it on SQLite.
_SERVER_BY_ADDRESS = (
    select(SmtpServer.id, SmtpServer.network.label("name"), SmtpServer.state,
           Customer.id.label("customer_id"), Customer.name.label("customer"), Customer.plan)
    .join(Customer, SmtpServer.customer_id == Customer.id)
    .where(
        SmtpServer.family == bindparam("family"),
        SmtpServer.first_address <= bindparam("key"),
        SmtpServer.last_address >= bindparam("key"),
    )
    .order_by(SmtpServer.prefix_len.desc())
    .limit(1)
)
_SASL_BY_LOGIN = (
    select(SaslAccount.id, SaslAccount.login.label("name"), SaslAccount.state,
           Customer.id.label("customer_id"), Customer.name.label("customer"), Customer.plan)
    .join(Customer, SaslAccount.customer_id == Customer.id)
    .where(SaslAccount.login == bindparam("login"))
)
_CUSTOMER_DOMAINS = select(ScannedDomain.domain).where(
    ScannedDomain.customer_id == bindparam("customer_id")
)
_INSERT_EVENT = insert(Event)
# "v_": an UPDATE may not name its parameters after its table's columns.
_VOLUME_ROW = (
    MonthlyVolume.month == bindparam("v_month"),
    MonthlyVolume.direction == bindparam("v_direction"),
    MonthlyVolume.customer_id == bindparam("v_customer_id"),
    MonthlyVolume.domain == bindparam("v_domain"),
)
_CREATE_VOLUME = {
    "postgresql": pg_insert(MonthlyVolume).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(MonthlyVolume).on_conflict_do_nothing(),
}
_LOCK_VOLUME = select(MonthlyVolume.bytes).where(*_VOLUME_ROW).with_for_update()
_ADD_VOLUME = (
    update(MonthlyVolume)
    .where(*_VOLUME_ROW)
    .values(bytes=MonthlyVolume.bytes + bindparam("added"), messages=MonthlyVolume.messages + 1)
)
_INBOUND_BYTES = select(func.coalesce(func.sum(MonthlyVolume.bytes), 0)).where(
    MonthlyVolume.month == bindparam("month"),
    MonthlyVolume.direction == "inbound",
    MonthlyVolume.domain == bindparam("domain"),
)


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

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read on the mail path: Core statements built once, no ORM."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            self.health.failed(HEALTH_NAME, describe(exc))
            raise StorageError(describe(exc)) from exc
        self.health.ok(HEALTH_NAME)

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        """The SASL account for a login, else the longest registered prefix holding client.

        A login that is not registered does not fall back to the address: the
        MTA vouched for that account, and it is not ours.
        """
        params: dict[str, object]
        if login:
            kind, query, params = IdentityKind.SASL, _SASL_BY_LOGIN, {"login": login}
        elif client is not None:
            kind, query = IdentityKind.SERVER, _SERVER_BY_ADDRESS
            params = {"family": client.version, "key": address_key(client)}
        else:
            return None
        with self._read() as connection:
            row = connection.execute(query, params).first()
            if row is None:
                return None
            domains = connection.scalars(_CUSTOMER_DOMAINS, {"customer_id": row.customer_id})
            return Identity(
                kind=kind,
                id=row.id,
                name=row.name,
                customer_id=row.customer_id,
                customer=row.customer,
                plan=row.plan,
                state=ServerState(row.state),
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
            connection.execute(_INSERT_EVENT, event_values(record))

    def record_accept(
        self, record: EventRecord, charge: VolumeCharge | None,
        also: Callable[[Connection], None] | None = None,
    ) -> VolumeDenied | None:
        """Charge the month's volume and record the accept, in one transaction or not at all.

        ``also`` runs in the same transaction (the rate limiter's commit).
        """
        with self._write() as connection:
            if charge is not None:
                row = {"month": charge.month, "direction": "outbound",
                       "customer_id": charge.customer_id, "domain": charge.domain}
                used = self._locked_volume(connection, row)
                inbound = int(connection.execute(
                    _INBOUND_BYTES, {"month": charge.month, "domain": charge.domain}
                ).scalar_one()) if charge.domain else 0
                allowance = charge.allowance(inbound)
                if allowance is not None and used + charge.volume > allowance:
                    return VolumeDenied(used, allowance)
                connection.execute(_ADD_VOLUME, {**_where(row), "added": charge.volume})
            connection.execute(_INSERT_EVENT, event_values(record))
            if also is not None:
                also(connection)
        return None

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None:
        """Add received bytes × recipients per (customer id, scanned domain)."""
        with self._write() as connection:
            for (customer_id, domain), volume in sorted(volumes.items()):
                row = {"month": month, "direction": "inbound", "customer_id": customer_id,
                       "domain": domain}
                self._locked_volume(connection, row)
                connection.execute(_ADD_VOLUME, {**_where(row), "added": volume})

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
    def _locked_volume(connection: Connection, row: dict[str, Any]) -> int:
        """The row's bytes, creating the row if needed and locking it until commit."""
        create = _CREATE_VOLUME[connection.dialect.name]
        connection.execute(create, {**row, "messages": 0, "bytes": 0})
        return int(connection.execute(_LOCK_VOLUME, _where(row)).scalar_one())


def _where(row: dict[str, Any]) -> dict[str, Any]:
    """A monthly_volume row's key as the parameters of _VOLUME_ROW."""
    return {f"v_{column}": value for column, value in row.items()}


def _fit(value: str, column_length: int) -> str:
    """Text as a column can hold it: no NUL (PostgreSQL refuses it), no lone surrogate
    (no database driver encodes one), bounded length.

    pymilter hands undecodable header and envelope bytes over surrogate-escaped
    ("\\udce4" for a raw byte 0xE4); they are stored as the text "\\xe4".
    """
    if not value.isascii():
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that is not an escaped byte
            raw = value.encode("utf-8", "backslashreplace")
        value = raw.decode("utf-8", "backslashreplace")
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
