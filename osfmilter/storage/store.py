"""What the milter reads from and writes to the database on the mail path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from osfmilter.addresses import IPAddress, address_key
from osfmilter.errors import StorageError
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.storage.db import describe
from osfmilter.storage.schema import Customer, Event, SaslAccount, ScannedDomain, SmtpServer


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


class SqlStore:
    """The database behind the milter: identity lookups and decision records."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction; any database failure surfaces as :class:`StorageError`."""
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(describe(exc)) from exc

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

    def record(self, record: EventRecord) -> None:
        with self.session() as session:
            session.add(event_row(record))


def _fit(value: str, column_length: int) -> str:
    """Text as a column can hold it: no NUL (PostgreSQL refuses it), bounded length."""
    return value.replace("\x00", "\\0")[:column_length]


def event_row(record: EventRecord) -> Event:
    identity = record.identity
    return Event(
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
