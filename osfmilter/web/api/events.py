"""``/api/v1/events``: the milter's decisions on the caller's mail, newest first, by pages.

Paged by the event id (keyset): a page's ``next`` is this query with
``before`` its last id, so a row is never shown twice nor missed while new
events arrive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from osfmilter.storage.schema import Event
from osfmilter.verdict import Action
from osfmilter.web.api.common import (
    Before,
    Context,
    CustomerQuery,
    Limit,
    Page,
    page_of,
    scoped,
)
from osfmilter.web.auth import CallerDep

router = APIRouter(prefix="/events", tags=["events"])


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    identity: str = Field(description='"server:NETWORK", "sasl:LOGIN", or "" if unregistered')
    action: str = Field(description="accept, tempfail or reject")
    reason: str
    smtp_code: int | None
    enhanced_code: str
    queue_id: str


class EventsOut(Page):
    events: list[EventOut]


@router.get("", summary="the caller's decisions, newest first (an operator's: all)")
def list_events(
    request: Request,
    caller: CallerDep,
    context: Context,
    since: Annotated[datetime | None, Query(description="ISO 8601; without a zone: UTC")] = None,
    action: Action | None = None,
    limit: Limit = 100,
    before: Before = None,
    customer: CustomerQuery = None,
) -> EventsOut:
    with context.store.session() as session:
        query = select(Event).order_by(Event.id.desc()).limit(limit + 1)
        query = scoped(query, Event.customer_id, session, caller, customer)
        if since is not None:
            query = query.where(Event.at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        if action is not None:
            query = query.where(Event.action == action)
        if before is not None:
            query = query.where(Event.id < before)
        rows, following = page_of(request, session.scalars(query).all(), limit, lambda e: e.id)
        return EventsOut(
            next=following,
            events=[EventOut.model_validate(e) for e in rows],
        )
