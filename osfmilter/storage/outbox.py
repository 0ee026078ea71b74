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

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, text

from osfmilter.notify.notices import Notice
from osfmilter.storage.db import fit
from osfmilter.storage.direct import Cursor, Statement
from osfmilter.storage.schema import UTCDateTime

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
