"""``/sasl``: the customer's SASL accounts: list, add, a new password, remove.

A password is generated, never chosen (160 random bits,
osfmilter.passwords), and shown once: on the page that answers the POST
that made it, which no one can load again. Only its hash is stored.
Hashing takes 0.3 s of CPU, outside the transaction; these endpoints are
synchronous, so FastAPI runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.errors import ConflictError, InvalidInput, UsageError
from osfmilter.registration import normalize_login
from osfmilter.storage.schema import SaslAccount
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash, owners
from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
AccountId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_LOGIN = 255


def accounts_of(session: Session, user: PortalUser) -> Sequence[SaslAccount]:
    """The user's customer's accounts (an operator's: everyone's), by login."""
    query = select(SaslAccount).order_by(SaslAccount.login)
    if user.customer_id is not None:
        query = query.where(SaslAccount.customer_id == user.customer_id)
    return session.scalars(query).all()


def _page(
    request: Request,
    context: WebContext,
    user: PortalUser,
    *,
    status: int = 200,
    error: str | None = None,
    login: str = "",
    customer: str = "",
    new_login: str | None = None,
    new_password: str | None = None,
) -> HTMLResponse:
    with context.store.session() as session:
        accounts = [
            {
                "id": a.id,
                "login": a.login,
                "state": a.state,
                "since": a.state_changed_at,
                "password_changed_at": a.password_changed_at,
                "customer": a.customer.name,
            }
            for a in accounts_of(session, user)
        ]
        customers = [c.name for c in owners.customers(session)] if user.is_operator else []
    return render(
        request,
        "sasl.html",
        user,
        status=status,
        accounts=accounts,
        customers=customers,
        chosen=customer,
        error=error,
        login=login,
        new_login=new_login,
        new_password=new_password,
    )


@router.get("/sasl")
def list_accounts(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    return _page(request, context, user)


@router.post("/sasl")
def add_account(
    request: Request,
    user: FormUserDep,
    context: Context,
    login: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
) -> Response:
    try:
        try:
            normalized = normalize_login(login[: MAX_LOGIN + 1])
        except UsageError:
            raise InvalidInput(
                "Enter a login of 1 to 255 characters without spaces, such as app@example.com."
            ) from None
        # Checked before the 0.3 s of hashing: a taken login costs nothing.
        with context.store.session() as session:
            owners.target_customer(session, user, customer)
        password, password_hash = operations.new_password()
        with context.store.session() as session:
            owner = owners.target_customer(session, user, customer)
            account = operations.add_sasl_account(
                session, user.actor(request), owner, normalized, password_hash, context.clock.now()
            )
            added = account.login
    except (InvalidInput, ConflictError) as exc:
        return _page(
            request,
            context,
            user,
            status=422,
            error=exc.public,
            login=login[:MAX_LOGIN],
            customer=customer,
        )
    return _page(request, context, user, new_login=added, new_password=password)


@router.post("/sasl/{account_id}/password")
def new_password(
    request: Request, account_id: AccountId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        if operations.visible_sasl_account(session, user.customer_id, account_id) is None:
            raise not_found()
    password, password_hash = operations.new_password()
    with context.store.session() as session:
        account = operations.visible_sasl_account(session, user.customer_id, account_id)
        if account is None:  # removed meanwhile
            raise not_found()
        login = account.login
        operations.set_sasl_password(
            session, user.actor(request), account, password_hash, context.clock.now()
        )
    return _page(request, context, user, new_login=login, new_password=password)


@router.post("/sasl/{account_id}/remove")
def remove_account(
    request: Request, account_id: AccountId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        account = operations.visible_sasl_account(session, user.customer_id, account_id)
        if account is None:
            raise not_found()
        login = account.login
        operations.remove_sasl_account(session, user.actor(request), account, context.clock.now())
    return flash.redirect(
        request, context, user, "/sasl", f"SASL account {login} removed: it can no longer log in."
    )
