"""What every endpoint module shares: the caller's customer scope, ids, paging, history.

A customer's token reaches its own customer only; naming another customer
(``?customer=``, ``"customer"`` in a body) is answered exactly as naming
one that does not exist. An operator's token reaches every customer, and
must name the customer of anything it creates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from osfmilter.errors import UsageError
from osfmilter.model import IdentityKind
from osfmilter.reputation import Transition
from osfmilter.storage import admin
from osfmilter.storage.audit import Actor
from osfmilter.storage.schema import Customer
from osfmilter.web import operations
from osfmilter.web.auth import Caller, CallerDep
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.errors import forbidden, invalid, not_found

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


Owned = TypeVar("Owned")
Selected = TypeVar("Selected", bound=Select[Any])


def scoped(
    query: Selected,
    column: InstrumentedAttribute[Any],
    session: Session,
    caller: Caller,
    customer: str | None,
) -> Selected:
    """A list's query narrowed by its customer ``column`` to the caller's :func:`customer_scope`."""
    customer_id = customer_scope(session, caller, customer)
    return query if customer_id is None else query.where(column == customer_id)


def visible(
    session: Session,
    caller: Caller,
    object_id: int,
    what: str,
    find: Callable[[Session, int | None, int], Owned | None],
) -> Owned:
    """The object (``find`` is an ``operations.visible_*``), else 404: another customer's
    is 'not found', exactly like a missing one."""
    found = find(session, caller.customer_id, object_id)
    if found is None:
        raise not_found(what)
    return found


def remove_visible(
    context: WebContext,
    caller: Caller,
    object_id: int,
    what: str,
    find: Callable[[Session, int | None, int], Owned | None],
    remove: Callable[[Session, Actor, Owned, datetime], object],
) -> Response:
    """DELETE of an object the caller may see (``operations.visible_*``), by its
    ``operations`` function, audited; 204, or 404 for another customer's as for a missing one."""
    with context.store.session() as session:
        found = visible(session, caller, object_id, what, find)
        remove(session, caller.actor, found, context.clock.now())
    return Response(status_code=204)


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


def history(
    context: WebContext, caller: Caller, kind: IdentityKind, identity_id: int
) -> list[StateChangeOut]:
    """The state changes of a server or SASL account the caller may see, oldest first;
    looking records a recovery that fell due. Another customer's is 'not found'."""
    with context.store.session() as session:
        visible = (
            operations.visible_server(session, caller.customer_id, identity_id)
            if kind is IdentityKind.SERVER
            else operations.visible_sasl_account(session, caller.customer_id, identity_id)
        )
    if visible is None:
        raise not_found("server" if kind is IdentityKind.SERVER else "SASL account")
    reputation = context.reputation
    # As `osfmilter server history`: the recovery is recorded at its due time first.
    reputation.observe(kind, identity_id)
    return [state_change(c) for c in reputation.history(kind, identity_id)]
