"""``/api/v1/usage`` and ``/api/v1/bill``: a month's volume and price, as the reports give them.

The numbers are :func:`osfmilter.reports.volume` and
:func:`osfmilter.reports.bill`, the ones ``osfmilter report volume`` and
``report bill`` print, narrowed to the caller's customer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from osfmilter import reports
from osfmilter.errors import UsageError
from osfmilter.limits.volume import month_of, parse_month
from osfmilter.storage.schema import Customer
from osfmilter.web.api.common import Context, CustomerQuery, customer_scope
from osfmilter.web.auth import Caller, CallerDep
from osfmilter.web.context import WebContext
from osfmilter.web.errors import invalid

router = APIRouter(tags=["usage"])
MonthQuery = Annotated[
    str | None, Query(max_length=7, description="YYYY-MM, UTC (default: this month)")
]


class VolumeOut(BaseModel):
    """A row of :func:`osfmilter.reports.volume`, as ``report volume --json`` has it."""

    model_config = ConfigDict(from_attributes=True)

    customer: str
    plan: str
    domain: str = Field(description='the sending domain; "" is the unknown senders\' bucket')
    messages: int
    bytes: int
    inbound_bytes: int
    allowance: int | None = Field(description="bytes this month; null: unlimited")
    use_percent: float | None


class UsageOut(BaseModel):
    month: str
    rows: list[VolumeOut]


class BillOut(BaseModel):
    """A row of :func:`osfmilter.reports.bill`."""

    model_config = ConfigDict(from_attributes=True)

    customer: str
    plan: str
    messages: int
    bytes: int
    extra_gb: int
    amount: int
    currency: str


class BillsOut(BaseModel):
    month: str
    currency: str
    total: int
    rows: list[BillOut]


def _month(context: WebContext, month: str | None) -> str:
    try:
        return parse_month(month or month_of(context.clock.now()))
    except UsageError as exc:
        raise invalid("month", str(exc)) from None


def _only(session: Session, caller: Caller, customer: str | None) -> str | None:
    """The one customer's name the report is narrowed to; None: every customer's."""
    customer_id = customer_scope(session, caller, customer)
    if customer_id is None:
        return None
    found = session.get(Customer, customer_id)
    assert found is not None  # the caller's or a named one: it exists
    return found.name


@router.get("/usage", summary="a month's volume per sending domain, with its allowance")
def usage(
    caller: CallerDep, context: Context, month: MonthQuery = None, customer: CustomerQuery = None
) -> UsageOut:
    chosen = _month(context, month)
    with context.store.session() as session:
        only = _only(session, caller, customer)
        rows = reports.volume(session, chosen, context.config.plans)
    return UsageOut(
        month=chosen,
        rows=[VolumeOut.model_validate(r) for r in rows if only in (None, r.customer)],
    )


@router.get("/bill", summary="a month's price, as `osfmilter report bill`")
def bill(
    caller: CallerDep, context: Context, month: MonthQuery = None, customer: CustomerQuery = None
) -> BillsOut:
    chosen = _month(context, month)
    billing = context.config.billing
    with context.store.session() as session:
        only = _only(session, caller, customer)
        rows = [r for r in reports.bill(session, chosen, billing) if only in (None, r.customer)]
    return BillsOut(
        month=chosen,
        currency=billing.currency,
        total=sum(r.amount for r in rows),
        rows=[BillOut.model_validate(r) for r in rows],
    )
