"""``/tokens``: API tokens (docs/api.rst): list, create (the token shown once), revoke.

A customer's user makes and revokes the customer's tokens; an operator's
are operator tokens, which reach every customer. Only the token's hash is
stored; the token itself is on the page answering the POST, once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from osfmilter.errors import UsageError
from osfmilter.storage.schema import ApiToken
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash, owners
from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_NAME = 100


def _page(
    request: Request,
    context: WebContext,
    user: PortalUser,
    *,
    status: int = 200,
    error: str | None = None,
    name: str = "",
    new_token: str | None = None,
) -> HTMLResponse:
    with context.store.session() as session:
        query = select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
        if user.customer_id is not None:
            query = query.where(ApiToken.customer_id == user.customer_id)
        rows = [
            {
                "id": t.id,
                "prefix": t.prefix,
                "name": t.name,
                "customer": t.customer.name if t.customer else "(operator)",
                "created_at": t.created_at,
                "created_by": t.created_by,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in session.scalars(query)
        ]
    return render(
        request,
        "tokens.html",
        user,
        status=status,
        tokens=rows,
        error=error,
        name=name,
        new_token=new_token,
    )


@router.get("/tokens")
def list_tokens(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    return _page(request, context, user)


@router.post("/tokens")
def create_token(
    request: Request,
    user: FormUserDep,
    context: Context,
    name: Annotated[str, Form()] = "",
) -> Response:
    try:
        with context.store.session() as session:
            owner = None if user.is_operator else owners.own_customer(session, user)
            _, token = operations.create_token(
                session, user.actor(request), owner, name[: MAX_NAME + 1], context.clock.now()
            )
    except UsageError as exc:
        # The name's problems: too long, more than one line.
        return _page(request, context, user, status=422, error=str(exc), name=name[:MAX_NAME])
    return _page(request, context, user, new_token=token)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: TokenId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        token = operations.visible_token(session, user.customer_id, token_id)
        if token is None:
            raise not_found()
        prefix = token.prefix
        operations.revoke_token(session, user.actor(request), token, context.clock.now())
    return flash.redirect(
        request, context, user, "/tokens", f"Token osf_{prefix} revoked: it no longer works."
    )
