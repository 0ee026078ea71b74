"""The notification outbox: written in the cause's transaction, read by the sender.

Writing a notice is three statements in the transaction that made it
happen: the notification row (``ON CONFLICT DO NOTHING``: a second notice
with the same ``dedup_key`` is not written), the e-mail delivery if the
customer has contacts, one delivery per webhook. The deliveries are made
from the notification row itself, so a notice that was not written gets
none. Both ways in share the SQL: :func:`write_direct` on the mail path's
driver cursor (storage.direct), :func:`write` on a SQLAlchemy connection
(the reputation, the command line).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from osfmilter.domains.rules import parents
from osfmilter.errors import UsageError
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import Notice, NoticePolicy, first_refusal
from osfmilter.registration import normalize_domain
from osfmilter.storage.db import fit, transaction
from osfmilter.storage.direct import Cursor, Statement
from osfmilter.storage.schema import (
    Customer,
    CustomerContact,
    Event,
    Notification,
    NotificationCursor,
    NotificationDelivery,
    ScannedDomain,
    UTCDateTime,
    Webhook,
)

_INSERT_NOTICE = """
    INSERT INTO notifications (id, type, at, customer_id, identity, details, dedup_key)
    VALUES (:id, :type, :at, :customer_id, :identity, :details, :dedup_key)
    ON CONFLICT DO NOTHING
"""
# Each delivery is due at once: next_attempt_at is the notification's own time.
_INSERT_EMAIL = """
    INSERT INTO notification_deliveries
        (notification_id, channel, webhook_id, state, attempts, next_attempt_at, last_error)
    SELECT n.id, 'email', NULL, 'pending', 0, n.at, '' FROM notifications n
    WHERE n.id = :id
      AND EXISTS (SELECT 1 FROM customer_contacts c WHERE c.customer_id = n.customer_id)
"""
_INSERT_WEBHOOKS = """
    INSERT INTO notification_deliveries
        (notification_id, channel, webhook_id, state, attempts, next_attempt_at, last_error)
    SELECT n.id, 'webhook', w.id, 'pending', 0, n.at, '' FROM notifications n
    JOIN webhooks w ON w.customer_id = n.customer_id
    WHERE n.id = :id
"""
_DIRECT = tuple(Statement(sql) for sql in (_INSERT_NOTICE, _INSERT_EMAIL, _INSERT_WEBHOOKS))
_NOTICE = text(_INSERT_NOTICE).bindparams(bindparam("at", type_=UTCDateTime()))
_DELIVERIES = (text(_INSERT_EMAIL), text(_INSERT_WEBHOOKS))


def _row(notice: Notice, at: Any) -> dict[str, object]:
    return {
        "id": notice.id,
        "type": str(notice.type),
        "at": at,
        "customer_id": notice.customer_id,
        "identity": fit(notice.identity, 300),
        "details": notice.details_json(),
        "dedup_key": None if notice.dedup_key is None else fit(notice.dedup_key, 400),
    }


def write_direct(cursor: Cursor, notices: Sequence[Notice], at: Callable[[Any], Any]) -> None:
    """On the mail path: ``at`` is storage.direct's DirectSql.at (the columns' layout)."""
    insert_notice, insert_email, insert_webhooks = _DIRECT
    for notice in notices:
        cursor.execute(insert_notice, _row(notice, at(notice.at)))
        cursor.execute(insert_email, {"id": notice.id})
        cursor.execute(insert_webhooks, {"id": notice.id})


def write(connection: Connection, notices: Sequence[Notice]) -> None:
    """In a SQLAlchemy transaction."""
    for notice in notices:
        connection.execute(_NOTICE, _row(notice, notice.at))
        for statement in _DELIVERIES:
            connection.execute(statement, {"id": notice.id})


# The sender's side -------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """One claimed delivery, with what its channel needs to send it."""

    delivery_id: int
    attempts: int  # this attempt included
    channel: str
    notification_id: str
    type: str
    at: datetime
    customer: str
    identity: str
    details: dict[str, Any]
    webhook_url: str = ""
    webhook_secret: str = ""  # never logged
    webhook_public_only: bool = True
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Counts:
    pending: int
    sent: int
    failed: int
    oldest_pending: datetime | None


def claim(engine: Engine, now: datetime, lease: timedelta, limit: int) -> list[Due]:
    """Up to ``limit`` due deliveries, claimed for ``lease``: their next attempt is moved
    past it, so no other sender takes them meanwhile, and one that dies in between
    (after sending, before marking) leaves them to be sent again once it ends.

    On PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED``: senders on
    several nodes each claim different ones at once. On SQLite the claim
    holds the write lock (BEGIN IMMEDIATE), the one writer. The transaction
    is short either way: nothing is sent while it is open.
    """
    with transaction(engine, write=True) as connection:
        due = (
            select(NotificationDelivery.id)
            .where(
                NotificationDelivery.state == "pending",
                NotificationDelivery.next_attempt_at <= now,
            )
            .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
            .limit(limit)
        )
        if engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(connection.scalars(due))
        if not ids:
            return []
        connection.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id.in_(ids))
            .values(
                next_attempt_at=now + lease,
                attempts=NotificationDelivery.attempts + 1,
            )
        )
        rows = connection.execute(
            select(
                NotificationDelivery.id,
                NotificationDelivery.attempts,
                NotificationDelivery.channel,
                Notification.id.label("notification_id"),
                Notification.type,
                Notification.at,
                Customer.name,
                Notification.customer_id,
                Notification.identity,
                Notification.details,
                Webhook.url,
                Webhook.secret,
                Webhook.public_only,
            )
            .join(Notification, Notification.id == NotificationDelivery.notification_id)
            .join(Customer, Customer.id == Notification.customer_id)
            .outerjoin(Webhook, Webhook.id == NotificationDelivery.webhook_id)
            .where(NotificationDelivery.id.in_(ids))
            .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
        ).all()
        customers = {row.customer_id for row in rows if row.channel == "email"}
        addresses: dict[int, list[str]] = {}
        if customers:
            for customer_id, email in connection.execute(
                select(CustomerContact.customer_id, CustomerContact.email)
                .where(CustomerContact.customer_id.in_(customers))
                .order_by(CustomerContact.email)
            ):
                addresses.setdefault(customer_id, []).append(email)
    return [
        Due(
            delivery_id=row.id,
            attempts=row.attempts,
            channel=row.channel,
            notification_id=row.notification_id,
            type=row.type,
            at=row.at,
            customer=row.name,
            identity=row.identity,
            details=json.loads(row.details),
            webhook_url=row.url or "",
            webhook_secret=row.secret or "",
            webhook_public_only=row.public_only is not False,
            contacts=tuple(addresses.get(row.customer_id, ())),
        )
        for row in rows
    ]


def mark_sent(engine: Engine, delivery_id: int, now: datetime) -> None:
    with transaction(engine, write=True) as connection:
        connection.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(state="sent", sent_at=now, last_error="")
        )


def mark_failed(engine: Engine, delivery_id: int, error: str, retry_at: datetime | None) -> None:
    """A failed attempt: tried again at ``retry_at``, or given up (None)."""
    values: dict[str, object] = {"last_error": fit(error, 500)}
    if retry_at is None:
        values["state"] = "failed"
    else:
        values["next_attempt_at"] = retry_at
    with transaction(engine, write=True) as connection:
        connection.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id, NotificationDelivery.state == "pending")
            .values(**values)
        )


def give_up_stale(engine: Engine, cutoff: datetime) -> int:
    """Pending deliveries of notifications older than ``cutoff`` are given up, unsent."""
    stale = select(Notification.id).where(Notification.at < cutoff).scalar_subquery()
    with transaction(engine, write=True) as connection:
        result = connection.execute(
            update(NotificationDelivery)
            .where(
                NotificationDelivery.state == "pending",
                NotificationDelivery.notification_id.in_(stale),
            )
            .values(
                state="failed",
                last_error=func.substr(
                    literal("not delivered in time; last error: ")
                    + NotificationDelivery.last_error,
                    1,
                    500,
                ),
            )
        )
    return int(result.rowcount or 0)


def counts(engine: Engine) -> Counts:
    with transaction(engine) as connection:
        by_state = dict(
            connection.execute(
                select(NotificationDelivery.state, func.count()).group_by(
                    NotificationDelivery.state
                )
            ).all()
        )
        oldest = connection.execute(
            select(func.min(Notification.at))
            .join(NotificationDelivery, NotificationDelivery.notification_id == Notification.id)
            .where(NotificationDelivery.state == "pending")
        ).scalar_one_or_none()
    return Counts(
        pending=int(by_state.get("pending", 0)),
        sent=int(by_state.get("sent", 0)),
        failed=int(by_state.get("failed", 0)),
        oldest_pending=_utc(oldest),
    )


def _utc(value: Any) -> datetime | None:
    """min() of a UTC column comes back untyped: SQLite's text, PostgreSQL's aware time."""
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Notices derived from committed event rows ------------------------------------

UNREGISTERED_CURSOR = "relay_denied"
# Event rows read per transaction.
DERIVE_BATCH = 500


def derive_unregistered(engine: Engine, policy: NoticePolicy) -> int:
    """The day's first relay refusal of an unregistered client sending as a customer's
    verified domain becomes that customer's notice; how many were offered (one a day per
    customer is written).

    Read from the event rows the milter committed, after the cursor, and
    written with the cursor's new position in one transaction: a refusal is
    told once (the dedup_key per customer and day), none is skipped, and a
    refusal that never committed tells nobody. On a database that has no
    cursor yet it starts at the newest event: the past is not told.
    """
    with transaction(engine, write=True) as connection:
        top = connection.scalar(select(func.max(Event.id))) or 0
        query = select(NotificationCursor).where(NotificationCursor.name == UNREGISTERED_CURSOR)
        if engine.dialect.name == "postgresql":
            query = query.with_for_update()  # two senders take turns
        mark = connection.execute(query).one_or_none()
        if mark is None:
            # Two senders starting at once both find none: the second's insert
            # does nothing (both dialects' ON CONFLICT DO NOTHING).
            first = _insert_on(engine)(NotificationCursor).values(
                name=UNREGISTERED_CURSOR, last_id=top
            )
            connection.execute(first.on_conflict_do_nothing(index_elements=["name"]))
            return 0
        last_id = mark.last_id
        rows = connection.execute(
            select(
                Event.id,
                Event.at,
                Event.client_ip,
                Event.envelope_sender,
                Event.enhanced_code,
                Event.smtp_code,
            )
            .where(Event.id > last_id, Event.id <= top, Event.reason == "relay_denied")
            .order_by(Event.id)
            .limit(DERIVE_BATCH)
        ).all()
        new_mark = rows[-1].id if len(rows) == DERIVE_BATCH else top
        notices: dict[str, Notice] = {}
        if policy.wants(NoticeType.REFUSAL_UNREGISTERED):
            for row in rows:
                domain = _stored_domain(row.envelope_sender.rpartition("@")[2])
                if domain is None:
                    continue
                owner = _owner(connection, domain)
                if owner is None:
                    continue
                notice = first_refusal(
                    NoticeType.REFUSAL_UNREGISTERED,
                    customer_id=owner[0],
                    identity="",
                    at=row.at,
                    details={
                        "domain": owner[1],
                        "sender": row.envelope_sender,
                        "client": row.client_ip,
                        "reason": "relay_denied",
                        "answer": f"{row.smtp_code} {row.enhanced_code}",
                        "what_to_do": "if this is your server, register it; if not, someone "
                        "else tried to send mail as your domain through this relay",
                    },
                )
                assert notice.dedup_key is not None
                notices.setdefault(notice.dedup_key, notice)
        fresh = list(notices.values())
        write(connection, fresh)
        connection.execute(
            update(NotificationCursor)
            .where(NotificationCursor.name == UNREGISTERED_CURSOR)
            .values(last_id=new_mark)
        )
    return len(fresh)


def _stored_domain(domain: str) -> str | None:
    try:
        return normalize_domain(domain)
    except UsageError:
        return None


def _owner(connection: Connection, domain: str) -> tuple[int, str] | None:
    """The customer whose verified domain this is, or that it lies within (the longest)."""
    rows = connection.execute(
        select(ScannedDomain.customer_id, ScannedDomain.domain).where(
            ScannedDomain.domain.in_([domain, *parents(domain)]),
            ScannedDomain.state == "verified",
        )
    ).all()
    if not rows:
        return None
    customer_id, found = max(rows, key=lambda row: len(row[1]))
    return int(customer_id), str(found)


# Retention ------------------------------------------------------------------------


def _finished_before(before: datetime) -> Any:
    """Notifications older than ``before`` with nothing left to deliver."""
    pending = (
        select(NotificationDelivery.id)
        .where(
            NotificationDelivery.notification_id == Notification.id,
            NotificationDelivery.state == "pending",
        )
        .exists()
    )
    return (Notification.at < before) & ~pending


def count_finished(engine: Engine, before: datetime) -> int:
    """What :func:`purge_finished` would remove now."""
    with transaction(engine) as connection:
        found = connection.scalar(select(func.count()).where(_finished_before(before)))
    return int(found or 0)


def purge_finished(engine: Engine, before: datetime, batch_size: int) -> int:
    """Delete finished notifications older than ``before``, their deliveries with them,
    in batches of short transactions (``osfmilter db purge``). A pending one stays until
    it is sent or given up; the dedup keys of what is deleted are past their month or day."""
    removed = 0
    while True:
        with transaction(engine, write=True) as connection:
            ids = list(
                connection.scalars(
                    select(Notification.id)
                    .where(_finished_before(before))
                    .order_by(Notification.at, Notification.id)
                    .limit(batch_size)
                )
            )
            if ids:
                connection.execute(
                    delete(NotificationDelivery).where(
                        NotificationDelivery.notification_id.in_(ids)
                    )
                )
                connection.execute(delete(Notification).where(Notification.id.in_(ids)))
        removed += len(ids)
        if len(ids) < batch_size:
            return removed


def _insert_on(engine: Engine) -> Callable[..., Any]:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING."""
    return postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert
