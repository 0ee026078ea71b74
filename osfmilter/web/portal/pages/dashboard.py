"""``/``: the dashboard: each sender's state, this month's usage against the allowance, the bill.

A state is shown with why and since when (the latest ``state_history``
row), and for a ``verdacht`` sender when it is ``veilig`` again if nothing
else happens. Looking is observing, as ``osfmilter server history``: a
recovery that has fallen due is recorded (at its due time) first. Usage
and the bill are the operator's reports (osfmilter.reports), narrowed to
the user's customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter import reports
from osfmilter.limits.volume import month_of
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation import Standing
from osfmilter.storage.schema import StateChange
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal.auth import PageUserDep, PortalUser
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]


@dataclass(frozen=True)
class Sender:
    """One server or SASL account as the dashboard shows it."""

    kind: IdentityKind
    id: int
    name: str
    customer: str
    state: str
    since: datetime
    why: str
    veilig_again_at: datetime | None


def _standings(
    session: Session, user: PortalUser
) -> list[tuple[IdentityKind, int, str, str, Standing]]:
    return [
        (
            i.kind,
            i.id,
            i.name,
            i.customer,
            Standing(ServerState(i.state), i.since, i.last_incident_at),
        )
        for i in reports.all_identities(session, user.customer_id)
    ]


def _reasons(session: Session, kind: IdentityKind, ids: list[int]) -> dict[int, str]:
    """The reason of each identity's latest state change."""
    column = (
        StateChange.smtp_server_id if kind is IdentityKind.SERVER else StateChange.sasl_account_id
    )
    latest: dict[int, str] = {}
    if not ids:
        return latest
    for id_, reason in session.execute(
        select(column, StateChange.reason)
        .where(column.in_(ids))
        .order_by(StateChange.at, StateChange.id)
    ):
        assert id_ is not None
        latest[id_] = reason  # the last one wins
    return latest


def senders(context: WebContext, user: PortalUser) -> list[Sender]:
    reputation = context.reputation
    now = context.clock.now()
    with context.store.session() as session:
        found = _standings(session, user)
    due = [
        (kind, id_)
        for kind, id_, _, _, standing in found
        if (at := standing.recovery_due(reputation.rules)) is not None and at <= now
    ]
    for kind, id_ in due:
        reputation.observe(kind, id_)
    with context.store.session() as session:
        if due:
            found = _standings(session, user)
        reasons = {
            kind: _reasons(session, kind, [id_ for k, id_, _, _, _ in found if k is kind])
            for kind in IdentityKind
        }
    return [
        Sender(
            kind,
            id_,
            name,
            customer,
            str(standing.state),
            standing.changed_at,
            reasons[kind].get(id_, "registered"),
            standing.recovery_due(reputation.rules),
        )
        for kind, id_, name, customer, standing in found
    ]


@router.get("/")
def dashboard(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    config = context.config
    month = month_of(context.clock.now())
    mine = user.customer_name

    with context.store.session() as session:
        usage = [
            row
            for row in reports.volume(session, month, config.plans)
            if user.is_operator or row.customer == mine
        ]
        bill = [
            row
            for row in reports.bill(session, month, config.billing)
            if user.is_operator or row.customer == mine
        ]
    return render(
        request,
        "dashboard.html",
        user,
        senders=senders(context, user),
        month=month,
        usage=usage,
        bill=bill,
    )
