"""The audit log: every change made through the portal, the API or the command line.

:func:`record` adds an entry inside the caller's transaction, so a change
and its entry commit or roll back together. Callers pass no secret: a
password, token or key is never an argument here, only what it was for
("sasl.passwd" on a login). Text is cut to the columns' widths and control
characters are replaced, so an entry is always one readable line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.storage.schema import AuditEntry, Customer

Via = Literal["portal", "api", "cli"]


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and from where: a user's address, ``token:PREFIX``, or ``--by``."""

    name: str
    via: Via
    remote_addr: str = ""


def _line(text: str, width: int) -> str:
    # Control, format (bidi, zero-width) and separator characters but the space.
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned[:width]


def record(
    session: Session,
    actor: Actor,
    action: str,
    at: datetime,
    *,
    customer: Customer | None = None,
    target: str = "",
    detail: str = "",
) -> AuditEntry:
    """Add one entry to the caller's transaction."""
    entry = AuditEntry(
        at=at,
        actor=_line(actor.name, 320),
        via=actor.via,
        remote_addr=_line(actor.remote_addr, 45),
        customer_id=None if customer is None else customer.id,
        customer="" if customer is None else customer.name,
        action=_line(action, 64),
        target=_line(target, 320),
        detail=_line(detail, 500),
    )
    session.add(entry)
    return entry


def entries(
    session: Session,
    *,
    customer_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """Newest first; ``customer_id`` narrows to one customer, ``before_id`` pages on."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(AuditEntry.customer_id == customer_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return session.scalars(query).all()
