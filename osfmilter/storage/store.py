"""What the milter reads from and writes to the database on the mail path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from osfmilter.addresses import IPAddress
from osfmilter.errors import StorageError, TooLate
from osfmilter.events import EventRecord
from osfmilter.health import BackendHealth
from osfmilter.limits.volume import VolumeCharge, VolumeDenied
from osfmilter.model import Identity, IdentityKind
from osfmilter.notify.notices import Notice, NoticePolicy, volume_crossings
from osfmilter.storage import outbox
from osfmilter.storage.db import fit, transaction
from osfmilter.storage.direct import HEALTH_NAME, Cursor, DirectSql, Statement
from osfmilter.storage.registry import Registry
from osfmilter.storage.schema import SaslAccount, SmtpServer
from osfmilter.storage.writer import UNLOCKED, Later, Order

__all__ = ["HEALTH_NAME", "SqlStore", "event_values"]


# The mail path's writes (see storage.direct for why they bypass SQLAlchemy).
_EVENT_COLUMNS = (
    "at",
    "node",
    "queue_id",
    "stage",
    "client_ip",
    "identity",
    "customer_id",
    "smtp_server_id",
    "sasl_account_id",
    "envelope_sender",
    "header_from_domain",
    "rcpt_count",
    "size",
    "action",
    "reason",
    "smtp_code",
    "enhanced_code",
    "spam_score",
    "spam_rules",
    "virus_name",
    "spf_result",
    "checks",
)
# Column names and placeholders only: no value is ever part of the text.
_INSERT_EVENT = Statement(
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + column for column in _EVENT_COLUMNS)})"
)
# Adds to the month's row (created on first use) and returns its new total,
# holding the row (PostgreSQL) or the database (SQLite) until the commit.
_ADD_VOLUME = Statement("""
    INSERT INTO monthly_volume (month, direction, customer_id, domain, messages, bytes)
    VALUES (:month, :direction, :customer_id, :domain, 1, :added)
    ON CONFLICT (month, direction, customer_id, domain) DO UPDATE
    SET messages = monthly_volume.messages + 1, bytes = monthly_volume.bytes + excluded.bytes
    RETURNING bytes
""")
_INBOUND_BYTES = Statement("""
    SELECT COALESCE(SUM(bytes), 0) FROM monthly_volume
    WHERE month = :month AND direction = 'inbound' AND domain = :domain
""")


class _OverAllowance(Exception):
    """Rolls back an accept whose volume would pass the month's allowance."""

    def __init__(self, denied: VolumeDenied) -> None:
        self.denied = denied


class SqlStore:
    """The database behind the milter: identity lookups and decision records."""

    def __init__(
        self,
        engine: Engine,
        health: BackendHealth | None = None,
        notices: NoticePolicy | None = None,
    ) -> None:
        self.engine = engine
        self.health = health or BackendHealth()
        # Which notices the operator wants, and the once-a-day ones written already.
        self.notices = notices or NoticePolicy()
        self.direct = DirectSql(engine, self.health)
        self.registry = Registry(self.direct)
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self, locked: bool = False) -> Iterator[Session]:
        """A transaction; any database failure surfaces as :class:`StorageError`.

        ``locked`` holds SQLite's write lock from the start (``BEGIN
        IMMEDIATE``), so what the transaction reads no other writer changes
        before it commits.
        """
        try:
            with (
                transaction(self.engine, write=locked) as connection,
                self._sessions(bind=connection) as session,
                session.begin(),
            ):
                yield session
        except StorageError as exc:
            self.health.failed(HEALTH_NAME, str(exc))
            raise
        self.health.ok(HEALTH_NAME)

    def begin_transaction(self) -> None:
        self.registry.begin_transaction()

    def find_identity(self, client: IPAddress | None, login: str) -> Identity | None:
        return self.registry.find_identity(client, login)

    def find_scanned_domain(self, domain: str) -> tuple[int, str] | None:
        return self.registry.find_scanned_domain(domain)

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

    def record(self, record: EventRecord, notices: Sequence[Notice] = ()) -> None:
        """The event row, and in its transaction the notices it causes (a customer's first
        refusal of a kind today): those this process wrote already cost nothing.

        Two batches inserting the same two new dedup keys in opposite order
        could wait for each other; PostgreSQL's deadlock detector ends one,
        and its batch runs again the careful way (storage.writer).
        """
        row = self._event_row(record)
        fresh = [notice for notice in notices if self.notices.first(notice)]

        def job(cursor: Cursor) -> None:
            cursor.execute(_INSERT_EVENT, row)
            if fresh:
                outbox.write_direct(cursor, fresh, self.direct.at)

        self.direct.transact(job, order=UNLOCKED)
        for notice in fresh:
            self.notices.written(notice)

    def record_accept(
        self,
        record: EventRecord,
        charge: VolumeCharge | None,
        also: Callable[[Cursor], None] | None = None,
        in_time: Callable[[], bool] | None = None,
    ) -> VolumeDenied | None:
        """Charge the month's volume and record the accept, in one transaction or not at all.

        ``also`` runs in the same transaction (the rate limiter's commit).
        ``in_time`` is asked in the transaction, after any wait for the
        database: if the MTA has stopped waiting by then, nothing is
        written and TooLate is raised (the message will come again).
        """
        row = self._event_row(record)
        crossed: list[Notice] = []

        def accept(cursor: Cursor) -> Later[None]:
            crossed.clear()  # a batch run again the careful way runs this job again
            if in_time is not None and not in_time():
                return Later(_too_late)  # nothing written
            check = self._charge(cursor, charge, record, crossed) if charge is not None else None
            cursor.execute(_INSERT_EVENT, row)
            if also is not None:
                also(cursor)

            def answer() -> None:
                if check is not None:
                    check()
                # Asked again once the batch's statements are answered: on
                # PostgreSQL they may have waited for other nodes' locks.
                if in_time is not None and not in_time():
                    _too_late()

            return Later(answer)

        order = (
            UNLOCKED
            if charge is None
            else Order.volume_row(charge.month, "outbound", charge.customer_id, charge.domain)
        )
        try:
            self.direct.transact_later(accept, order)
        except _OverAllowance as over:
            return over.denied
        for notice in crossed:
            self.notices.written(notice)
        return None

    def _charge(
        self, cursor: Cursor, charge: VolumeCharge, record: EventRecord, crossed: list[Notice]
    ) -> Callable[[], None]:
        """Sends the charge; the check it returns raises _OverAllowance, undoing the accept.

        Nothing is read before the batch's statements are all sent (one wait
        on PostgreSQL for the whole batch, see storage.writer). The check
        also sees whether this message took the month past 80 % or to 100 %
        of the allowance, from the totals it read anyway, and only then
        writes the notice, in the accept's transaction (under the volume
        row's lock, so two nodes cannot both write it).
        """
        inbound_cursor = None
        if charge.limited and charge.domain:
            inbound_cursor = cursor.another().execute(
                _INBOUND_BYTES, {"month": charge.month, "domain": charge.domain}
            )
        total_cursor = cursor.another().execute(
            _ADD_VOLUME,
            {
                "month": charge.month,
                "direction": "outbound",
                "customer_id": charge.customer_id,
                "domain": charge.domain,
                "added": charge.volume,
            },
        )

        def check() -> None:
            total = int(total_cursor.one()[0])
            inbound = int(inbound_cursor.one()[0]) if inbound_cursor is not None else 0
            allowance = charge.allowance(inbound)
            if allowance is None:
                return
            if total > allowance:
                raise _OverAllowance(VolumeDenied(total - charge.volume, allowance))
            if total * 100 < 80 * allowance:
                return  # the common case: below 80 %, nothing more to do
            fresh = [
                notice
                for notice in volume_crossings(
                    customer_id=charge.customer_id,
                    identity=record.identity.label if record.identity else "",
                    domain=charge.domain,
                    month=charge.month,
                    before=total - charge.volume,
                    after=total,
                    allowance=allowance,
                    at=record.at,
                )
                if self.notices.first(notice)
            ]
            if fresh:
                outbox.write_direct(cursor, fresh, self.direct.at)
                crossed.extend(fresh)

        return check

    def record_inbound(self, month: str, volumes: Mapping[tuple[int, str], int]) -> None:
        """Add received bytes × recipients per (customer id, scanned domain)."""
        rows = sorted(volumes.items())
        if not rows:
            return

        def add(cursor: Cursor) -> None:
            for (customer_id, domain), volume in rows:
                cursor.execute(
                    _ADD_VOLUME,
                    {
                        "month": month,
                        "direction": "inbound",
                        "customer_id": customer_id,
                        "domain": domain,
                        "added": volume,
                    },
                ).one()

        (customer_id, domain), _ = rows[0]
        self.direct.transact(add, Order.volume_row(month, "inbound", customer_id, domain))

    def _event_row(self, record: EventRecord) -> dict[str, object]:
        row = event_values(record)
        row["at"] = self.direct.at(record.at)
        return row


def _too_late() -> None:
    raise TooLate("the MTA stopped waiting while the accept waited for the database")


def event_values(record: EventRecord) -> dict[str, object]:
    """The events row for a record, every text cut to fit its column."""
    identity = record.identity
    return dict(
        at=record.at,
        node=fit(record.node, 64),
        queue_id=fit(record.queue_id, 32),
        stage=str(record.stage),
        client_ip=fit(record.client_ip, 45),
        identity=fit(identity.label, 300) if identity else "",
        customer_id=identity.customer_id if identity else None,
        smtp_server_id=identity.id if identity and identity.kind is IdentityKind.SERVER else None,
        sasl_account_id=identity.id if identity and identity.kind is IdentityKind.SASL else None,
        envelope_sender=fit(record.envelope_sender, 320),
        header_from_domain=fit(record.header_from_domain, 253),
        rcpt_count=record.rcpt_count,
        size=record.size,
        action=str(record.action),
        reason=str(record.reason),
        smtp_code=record.smtp_code,
        enhanced_code=record.enhanced_code,
        spam_score=record.spam_score,
        spam_rules=fit(record.spam_rules, 500),
        virus_name=fit(record.virus_name, 200),
        spf_result=str(record.spf_result),
        checks=fit(record.checks, 300),
    )
