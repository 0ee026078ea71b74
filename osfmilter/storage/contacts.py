"""A customer's notification contacts and webhooks, as the command line changes them.

Each function works inside the caller's transaction and raises a
:class:`~osfmilter.errors.UsageError` with one line naming the problem.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.errors import ConflictError, UsageError
from osfmilter.notify.urls import check_webhook_url
from osfmilter.registration import normalize_email
from osfmilter.storage.admin import get_customer
from osfmilter.storage.schema import Customer, CustomerContact, Webhook

# 256 random bits, as 64 hex digits: the HMAC key of the webhook's signatures.
SECRET_BYTES = 32
# A customer's limits: enough for any team, too few to turn the relay into a mailer.
MAX_CONTACTS = 20
MAX_WEBHOOKS = 10


def add_contact(session: Session, customer_name: str, email: str, now: datetime) -> str:
    customer = get_customer(session, customer_name)
    address = normalize_email(email)
    if address in {c.email for c in customer.contacts}:
        raise ConflictError(f"{address} is already a contact of {customer_name}")
    if len(customer.contacts) >= MAX_CONTACTS:
        raise UsageError(f"customer {customer_name!r} has {MAX_CONTACTS} contacts, the most")
    customer.contacts.append(CustomerContact(email=address, created_at=now))
    session.flush()
    return address


def remove_contact(session: Session, customer_name: str, email: str) -> str:
    customer = get_customer(session, customer_name)
    address = normalize_email(email)
    for contact in customer.contacts:
        if contact.email == address:
            session.delete(contact)
            return address
    raise UsageError(f"{address} is not a contact of {customer_name}")


def contacts(session: Session, customer_name: str) -> list[str]:
    customer = get_customer(session, customer_name)
    return sorted(c.email for c in customer.contacts)


def add_webhook(
    session: Session,
    customer_name: str,
    url: str,
    now: datetime,
    *,
    allow_http: bool = False,
    public_only: bool = False,
) -> tuple[Webhook, str]:
    """The new webhook and its secret: the one time the secret is handed out.

    ``public_only`` (the portal's) checks the URL as a customer's and has the
    sender post only to public addresses; the operator's may reach loopback.
    """
    customer = get_customer(session, customer_name)
    checked = check_webhook_url(url, allow_http, public_only=public_only)
    if len(customer.webhooks) >= MAX_WEBHOOKS:
        raise UsageError(f"customer {customer_name!r} has {MAX_WEBHOOKS} webhooks, the most")
    if checked in {w.url for w in customer.webhooks}:
        raise ConflictError(f"{checked} is already a webhook of {customer_name}")
    secret = secrets.token_hex(SECRET_BYTES)
    webhook = Webhook(url=checked, secret=secret, created_at=now, public_only=public_only)
    customer.webhooks.append(webhook)
    session.flush()
    return webhook, secret


def webhooks(session: Session, customer_name: str | None = None) -> Sequence[tuple[Webhook, str]]:
    """(webhook, customer name), by id; one customer's if named."""
    query = select(Webhook, Customer.name).join(Customer).order_by(Webhook.id)
    if customer_name is not None:
        query = query.where(Customer.id == get_customer(session, customer_name).id)
    return [(webhook, name) for webhook, name in session.execute(query)]


def remove_webhook(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise UsageError(f"no webhook with id {webhook_id}")
    session.delete(webhook)
    return webhook
