"""Whose objects a page shows and changes: the user's customer, or any for an operator."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.errors import InvalidInput
from osfmilter.storage.schema import Customer
from osfmilter.web.portal.auth import PortalUser
from osfmilter.web.portal.errors import not_found


def customers(session: Session) -> Sequence[Customer]:
    """Every customer, by name: what an operator's forms offer."""
    return session.scalars(select(Customer).order_by(Customer.name)).all()


def own_customer(session: Session, user: PortalUser) -> Customer:
    """The customer of a customer's user (gone since the login: not found)."""
    assert user.customer_id is not None
    customer = session.get(Customer, user.customer_id)
    if customer is None:
        raise not_found()
    return customer


def target_customer(session: Session, user: PortalUser, chosen: str) -> Customer:
    """The customer a new object is for: a customer's own; for an operator, the one chosen.

    An operator who chose none is told so, as any invalid input.
    """
    if not user.is_operator:
        return own_customer(session, user)
    customer = session.scalars(select(Customer).where(Customer.name == chosen)).one_or_none()
    if customer is None:
        raise InvalidInput("Choose the customer to add it to.")
    return customer
