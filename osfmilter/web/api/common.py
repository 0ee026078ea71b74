"""What every endpoint module shares: the caller's customer scope, ids, paging, history.

A customer's token reaches its own customer only; naming another customer
(``?customer=``, ``"customer"`` in a body) is answered exactly as naming
one that does not exist. An operator's token reaches every customer, and
must name the customer of anything it creates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from osfmilter.errors import UsageError
from osfmilter.model import IdentityKind
from osfmilter.reputation import Transition
from osfmilter.storage import admin
from osfmilter.storage.schema import Customer
from osfmilter.web.auth import Caller, CallerDep
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.errors import forbidden, invalid

Context = Annotated[WebContext, Depends(web_context)]
# A row id in a path: anything else is a 422 naming the parameter.
ObjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
CustomerQuery = Annotated[
    str | None, Query(max_length=100, description="operator tokens: one customer's only")
]
MAX_PAGE = 500
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page, 1 to 500")]
Before = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="the cursor: rows older than this id")
]


def customer_named(session: Session, caller: Caller, name: str, field: str) -> Customer:
    """A customer the caller may name: any for the operator, only itself for a customer."""
    if caller.is_operator or name == caller.customer_name:
        try:
            return admin.get_customer(session, name)
        except UsageError as exc:
            raise invalid(field, str(exc)) from None
    # Another customer is not told whether that one exists.
    raise invalid(field, f"no customer named {name!r}")


def customer_scope(session: Session, caller: Caller, customer: str | None) -> int | None:
    """The customer id a list is narrowed to; None (every customer) only for the operator."""
    if customer is not None:
        return customer_named(session, caller, customer, "customer").id
    return caller.customer_id


def owner(session: Session, caller: Caller, customer: str | None) -> Customer:
    """The customer something new belongs to: the caller's own, or the one an operator names."""
    if customer is None:
        if caller.is_operator:
            raise invalid("customer", "an operator token must name the customer")
        assert caller.customer_name is not None
        customer = caller.customer_name
    return customer_named(session, caller, customer, "customer")


def operator_only(caller: CallerDep) -> Caller:
    """FastAPI dependency: the caller, if it holds an operator token; else 403."""
    if not caller.is_operator:
        raise forbidden()
    return caller


OperatorDep = Annotated[Caller, Depends(operator_only)]


# Paging ----------------------------------------------------------------------


class Page(BaseModel):
    """Where the next page is: ``next`` is None on the last one."""

    next: str | None = Field(description="the URL of the next (older) page, or null")


Row = TypeVar("Row")


def page_of(
    request: Request, rows: Sequence[Row], limit: int, id_of: Callable[[Row], int]
) -> tuple[Sequence[Row], str | None]:
    """The page of ``limit + 1`` rows fetched newest first, and the next page's URL
    (this query with ``before`` the page's last id) if there are more."""
    if len(rows) <= limit:
        return rows, None
    shown = rows[:limit]
    return shown, str(request.url.include_query_params(before=id_of(shown[-1])))


# State history ---------------------------------------------------------------


class StateChangeOut(BaseModel):
    at: datetime
    old_state: str
    new_state: str
    reason: str
    actor: str


def state_change(change: Transition) -> StateChangeOut:
    return StateChangeOut(
        at=change.at,
        old_state=change.old,
        new_state=change.new,
        reason=change.reason,
        actor=change.actor,
    )


def history(context: WebContext, kind: IdentityKind, identity_id: int) -> list[StateChangeOut]:
    """An identity's state changes, oldest first; looking records a recovery that fell due."""
    reputation = context.reputation
    # As `osfmilter server history`: the recovery is recorded at its due time first.
    reputation.observe(kind, identity_id)
    return [state_change(c) for c in reputation.history(kind, identity_id)]
