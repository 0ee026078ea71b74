"""``/operator/reports`` and ``/operator/audit``: the operator's reports, as the command line's.

The figures are :mod:`osfmilter.reports`' own (volume, bill, states) and
the audit log's (:func:`osfmilter.storage.audit.entries`), so the page and
the command line cannot disagree. Operators only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from osfmilter import reports
from osfmilter.errors import UsageError
from osfmilter.limits.volume import month_of, parse_month
from osfmilter.reputation import Rules
from osfmilter.storage import audit
from osfmilter.storage.schema import Customer
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import owners
from osfmilter.web.portal.render import render
from osfmilter.web.portal.scope import PAGE_SIZE, BeforeQuery, OperatorDep, cut, older_link

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]


@router.get("/operator/reports")
def show_reports(
    request: Request,
    user: OperatorDep,
    context: Context,
    month: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    error = None
    try:
        chosen = parse_month(month or month_of(context.clock.now()))
    except UsageError as exc:
        error, chosen = f"{exc}.", month_of(context.clock.now())
    with context.store.session() as session:
        volume = reports.volume(session, chosen, context.config.plans)
        bill = reports.bill(session, chosen, context.config.billing)
        report = reports.states(session, Rules.from_config(context.config.reputation))
    return render(
        request,
        "reports.html",
        user,
        status=200 if error is None else 422,
        error=error,
        month=chosen,
        volume=volume,
        bill=bill,
        total=sum(row.amount for row in bill),
        currency=context.config.billing.currency,
        states=report,
    )


@router.get("/operator/audit")
def show_audit(
    request: Request,
    user: OperatorDep,
    context: Context,
    before: BeforeQuery = None,
    customer: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    error = None
    with context.store.session() as session:
        customers = owners.customers(session)
        customer_id = None
        if customer:
            customer_id = session.scalar(select(Customer.id).where(Customer.name == customer))
            if customer_id is None:
                error = f"There is no customer {customer!r}."
        read = (
            []
            if error
            else audit.entries(
                session, customer_id=customer_id, before_id=before, limit=PAGE_SIZE + 1
            )
        )
        page = cut(read, lambda entry: entry.id)
        rows = [
            {
                "at": e.at,
                "actor": e.actor,
                "via": e.via,
                "address": e.remote_addr,
                "customer": e.customer,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in page.rows
        ]
    return render(
        request,
        "audit.html",
        user,
        status=200 if error is None else 422,
        error=error,
        entries=rows,
        customers=customers,
        chosen=customer,
        older=older_link("/operator/audit", page.older, customer=customer),
    )
