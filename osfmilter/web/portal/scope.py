"""What the list pages share: the user's scope, newest-first pages, the operator's guard.

A customer's user sees its own customer's rows, an operator every
customer's (:func:`in_scope`). Long lists are read a page at a time,
newest first, by keyset (``?before=ID``): a row added meanwhile moves no
other row to another page, so paging on shows none twice and misses none.
Every ``/operator`` page depends on :data:`OperatorDep` (or
:data:`OperatorFormDep` for a form): anyone else gets the 404 of a missing
page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query
from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found

PAGE_SIZE = 100
# ?before=ID of the "older" link: an id of the listed table.
BeforeQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]

Row = TypeVar("Row")
Listed = TypeVar("Listed", bound="Select[*tuple[Any, ...]]")


def in_scope(
    query: Listed, owner: ColumnElement[Any] | InstrumentedAttribute[Any], user: PortalUser
) -> Listed:
    """The query narrowed to the user's customer, by the column naming a row's customer."""
    if user.customer_id is None:
        return query
    return query.where(owner == user.customer_id)


def newest_first(
    session: Session,
    query: Listed,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[int],
    before: int | None,
    size: int = PAGE_SIZE,
) -> Listed:
    """A page of the query by (time, id), newest first, older than the row ``before``.

    Times can disagree with ids (a recovery is recorded late, dated when it
    fell due; relay nodes' clocks differ), so the order is the time's, with
    the id to break ties; the row ``before`` gives both. One row more than
    a page is read, so :func:`cut` knows whether there is an older page.
    """
    query = query.order_by(at.desc(), id_.desc()).limit(size + 1)
    if before is None:
        return query
    moment = session.scalar(select(at).where(id_ == before))
    if moment is None:  # purged meanwhile: the ids alone
        return query.where(id_ < before)
    return query.where(or_(at < moment, and_(at == moment, id_ < before)))


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    older: int | None  # the ?before= of the next page; None: this is the last


def cut(rows: Sequence[Row], key: Callable[[Row], int], size: int = PAGE_SIZE) -> Page[Row]:
    """A page of the rows read (one more than ``size`` if there are older ones)."""
    shown = list(rows[:size])
    return Page(shown, key(shown[-1]) if len(rows) > size else None)


def older_link(path: str, older: int | None, **filters: str) -> str | None:
    """The URL of the next page, keeping the filters that are set."""
    if older is None:
        return None
    kept = {name: value for name, value in filters.items() if value}
    return f"{path}?{urlencode({**kept, 'before': older})}"


def operator_page(user: PageUserDep) -> PortalUser:
    """FastAPI dependency of the operator's pages: a customer's user gets a 404."""
    if not user.is_operator:
        raise not_found()
    return user


def operator_form(user: FormUserDep) -> PortalUser:
    """The same for the operator's forms, after their CSRF check."""
    if not user.is_operator:
        raise not_found()
    return user


OperatorDep = Annotated[PortalUser, Depends(operator_page)]
OperatorFormDep = Annotated[PortalUser, Depends(operator_form)]
