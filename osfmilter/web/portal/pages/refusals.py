"""``/refusals``: the customer's recent messages that were not accepted, newest first.

Every event that is not an accept (a tempfail or a reject), with its
reason and SMTP answer, filtered by action, reason, identity and a first
day, 100 a page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from osfmilter.reports import UNREGISTERED, event_identity
from osfmilter.storage.schema import Customer, Event
from osfmilter.verdict import Action
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal.auth import PageUserDep
from osfmilter.web.portal.render import render
from osfmilter.web.portal.scope import (
    BeforeQuery,
    Listed,
    cut,
    in_scope,
    newest_first,
    older_link,
)

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
ACTIONS = tuple(str(a) for a in Action if a is not Action.ACCEPT)


def _filtered(
    query: Listed, action: str, reason: str, since: str, identity: str
) -> tuple[Listed, str | None]:
    """The query with the filters that are set; a problem with one of them, to show."""
    if action:
        if action not in ACTIONS:
            return query, "Choose an action from the list."
        query = query.where(Event.action == action)
    if reason:
        query = query.where(Event.reason == reason.strip())
    if identity:
        name = identity.strip()
        if name.startswith(UNREGISTERED):
            query = query.where(Event.identity == "", Event.client_ip == name[len(UNREGISTERED) :])
        else:
            query = query.where(Event.identity == name)
    if since:
        try:
            first = datetime.combine(date.fromisoformat(since), datetime.min.time(), UTC)
        except ValueError:
            return query, "Give the first day as YYYY-MM-DD."
        query = query.where(Event.at >= first)
    return query, None


@router.get("/refusals")
def list_refusals(
    request: Request,
    user: PageUserDep,
    context: Context,
    before: BeforeQuery = None,
    action: Annotated[str, Query(max_length=10)] = "",
    reason: Annotated[str, Query(max_length=32)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    identity: Annotated[str, Query(max_length=350)] = "",
) -> HTMLResponse:
    query = in_scope(
        select(
            Event.id,
            Event.at,
            event_identity().label("identity"),
            Event.action,
            Event.reason,
            Event.smtp_code,
            Event.enhanced_code,
            Event.queue_id,
            Customer.name.label("customer"),
        )
        .outerjoin(Customer, Customer.id == Event.customer_id)
        .where(Event.action != str(Action.ACCEPT)),
        Event.customer_id,
        user,
    )
    query, error = _filtered(query, action, reason, since, identity)
    rows = []
    older = None
    if error is None:
        with context.store.session() as session:
            read = session.execute(newest_first(session, query, Event.at, Event.id, before)).all()
        page = cut(read, lambda row: int(row.id))
        rows, older = page.rows, page.older
    filters = {"action": action, "reason": reason, "since": since, "identity": identity}
    return render(
        request,
        "refusals.html",
        user,
        status=200 if error is None else 422,
        refusals=rows,
        error=error,
        actions=ACTIONS,
        filters=filters,
        older=older_link("/refusals", older, **filters),
    )
