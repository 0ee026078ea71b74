"""``/notifications``: where the customer's notifications go: contacts and webhooks.

Contacts get the notification e-mails; webhooks get each notification as a
signed POST (README.rst, 'Notifications'). A webhook added here is the
customer's (``public_only``): https to a public address only, so it never
reaches the relay's own or internal network. Its secret is shown once, on
the page answering the POST that made it; the list never shows it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from osfmilter.errors import ConflictError, InvalidInput
from osfmilter.notify.urls import MAX_URL
from osfmilter.storage.schema import Customer, CustomerContact, Webhook
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash, owners
from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
ObjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_EMAIL = 320


def _page(
    request: Request,
    context: WebContext,
    user: PortalUser,
    *,
    status: int = 200,
    contact_error: str | None = None,
    webhook_error: str | None = None,
    email: str = "",
    url: str = "",
    customer: str = "",
    new_webhook: str | None = None,
    new_secret: str | None = None,
) -> HTMLResponse:
    with context.store.session() as session:
        contact_query = (
            select(CustomerContact, Customer.name)
            .join(Customer)
            .order_by(Customer.name, CustomerContact.email)
        )
        webhook_query = select(Webhook, Customer.name).join(Customer).order_by(Webhook.id)
        if user.customer_id is not None:
            contact_query = contact_query.where(CustomerContact.customer_id == user.customer_id)
            webhook_query = webhook_query.where(Webhook.customer_id == user.customer_id)
        contacts = [
            {"id": c.id, "email": c.email, "customer": name, "created_at": c.created_at}
            for c, name in session.execute(contact_query)
        ]
        webhooks = [
            {"id": w.id, "url": w.url, "customer": name, "created_at": w.created_at}
            for w, name in session.execute(webhook_query)
        ]
        customers = [c.name for c in owners.customers(session)] if user.is_operator else []
    return render(
        request,
        "notifications.html",
        user,
        status=status,
        contacts=contacts,
        webhooks=webhooks,
        customers=customers,
        chosen=customer,
        contact_error=contact_error,
        webhook_error=webhook_error,
        email=email,
        url=url,
        new_webhook=new_webhook,
        new_secret=new_secret,
    )


@router.get("/notifications")
def show(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    return _page(request, context, user)


@router.post("/notifications/contacts")
def add_contact(
    request: Request,
    user: FormUserDep,
    context: Context,
    email: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
) -> Response:
    try:
        # Locked: two adds at once cannot both pass the limit.
        with context.store.session(locked=True) as session:
            owner = owners.target_customer(session, user, customer)
            contact = operations.add_contact(
                session, user.actor(request), owner, email[: MAX_EMAIL + 1], context.clock.now()
            )
            address = contact.email
    except (InvalidInput, ConflictError) as exc:
        return _page(
            request,
            context,
            user,
            status=422,
            contact_error=exc.public,
            email=email[:MAX_EMAIL],
            customer=customer,
        )
    return flash.redirect(
        request, context, user, "/notifications", f"{address} added: it gets the e-mails."
    )


@router.post("/notifications/contacts/{contact_id}/remove")
def remove_contact(
    request: Request, contact_id: ObjectId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        contact = operations.visible_contact(session, user.customer_id, contact_id)
        if contact is None:
            raise not_found()
        address = contact.email
        operations.remove_contact(session, user.actor(request), contact, context.clock.now())
    return flash.redirect(
        request, context, user, "/notifications", f"{address} removed: it gets no more e-mails."
    )


@router.post("/notifications/webhooks")
def add_webhook(
    request: Request,
    user: FormUserDep,
    context: Context,
    url: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
) -> Response:
    try:
        with context.store.session(locked=True) as session:
            owner = owners.target_customer(session, user, customer)
            webhook, secret = operations.add_webhook(
                session, user.actor(request), owner, url[: MAX_URL + 1], context.clock.now()
            )
            added = webhook.url
    except (InvalidInput, ConflictError) as exc:
        return _page(
            request,
            context,
            user,
            status=422,
            webhook_error=exc.public,
            url=url[:MAX_URL],
            customer=customer,
        )
    return _page(request, context, user, new_webhook=added, new_secret=secret)


@router.post("/notifications/webhooks/{webhook_id}/remove")
def remove_webhook(
    request: Request, webhook_id: ObjectId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        webhook = operations.visible_webhook(session, user.customer_id, webhook_id)
        if webhook is None:
            raise not_found()
        url = webhook.url
        operations.remove_webhook(session, user.actor(request), webhook, context.clock.now())
    return flash.redirect(
        request, context, user, "/notifications", f"Webhook {url} removed: nothing more is posted."
    )
