"""``/servers``: the customer's SMTP servers: list, add (the registration rules explained), remove.

Changes go through :mod:`osfmilter.web.operations`, as the API's do, so
the rules and the audit entries are the same. Another customer's server is
404, like a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.errors import ConflictError, InvalidInput
from osfmilter.storage.schema import SmtpServer
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash, owners
from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
ServerId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_NETWORK = 64
MAX_DESCRIPTION = 200


def servers_of(session: Session, user: PortalUser) -> Sequence[SmtpServer]:
    """The user's customer's servers (an operator's: everyone's), in address order."""
    query = select(SmtpServer).order_by(
        SmtpServer.family, SmtpServer.first_address, SmtpServer.prefix_len
    )
    if user.customer_id is not None:
        query = query.where(SmtpServer.customer_id == user.customer_id)
    return session.scalars(query).all()


def _page(
    request: Request,
    context: WebContext,
    user: PortalUser,
    *,
    status: int = 200,
    error: str | None = None,
    network: str = "",
    description: str = "",
    customer: str = "",
) -> HTMLResponse:
    with context.store.session() as session:
        servers = [
            {
                "id": s.id,
                "network": s.network,
                "description": s.description or "",
                "state": s.state,
                "since": s.state_changed_at,
                "customer": s.customer.name,
            }
            for s in servers_of(session, user)
        ]
        customers = [c.name for c in owners.customers(session)] if user.is_operator else []
    return render(
        request,
        "servers.html",
        user,
        status=status,
        servers=servers,
        customers=customers,
        error=error,
        network=network,
        description=description,
        chosen=customer,
        rules=context.config.registration,
    )


@router.get("/servers")
def list_servers(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    return _page(request, context, user)


def _description(text: str) -> str | None:
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput(f"The description is too long: at most {MAX_DESCRIPTION} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidInput("The description must be one line without control characters.")
    return text.strip() or None


@router.post("/servers")
def add_server(
    request: Request,
    user: FormUserDep,
    context: Context,
    network: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
) -> Response:
    now = context.clock.now()
    try:
        if not network.strip():
            raise InvalidInput("Enter an IP address or a network.")
        if len(network) > MAX_NETWORK:
            raise InvalidInput("That is not an IP address or a network.")
        text = _description(description)
        # Locked, as every registration: no other slips in between the
        # overlap check and the insert.
        with context.store.session(locked=True) as session:
            owner = owners.target_customer(session, user, customer)
            server = operations.add_server(
                session,
                user.actor(request),
                owner,
                network,
                text,
                context.config.registration,
                now,
                by_operator=user.is_operator,
            )
            added = server.network
    except (InvalidInput, ConflictError) as exc:
        return _page(
            request,
            context,
            user,
            status=422,
            error=exc.public,
            network=network[:MAX_NETWORK],
            description=description[:MAX_DESCRIPTION],
            customer=customer,
        )
    return flash.redirect(request, context, user, "/servers", f"Server {added} added.")


@router.post("/servers/{server_id}/remove")
def remove_server(
    request: Request, server_id: ServerId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        server = operations.visible_server(session, user.customer_id, server_id)
        if server is None:
            raise not_found()
        network = server.network
        operations.remove_server(session, user.actor(request), server, context.clock.now())
    return flash.redirect(
        request,
        context,
        user,
        "/servers",
        f"Server {network} removed. Its mail is refused from its next message on.",
    )
