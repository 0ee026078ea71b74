"""``/history``: the state changes of the customer's servers and SASL accounts, newest first.

The states are explained at the top, with each identity that is not
veilig now and, for a verdacht one, when it is veilig again by itself.
Looking is observing, as on the dashboard: a recovery that has fallen due
is recorded first, so it is in the history shown.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from osfmilter.model import ServerState
from osfmilter.storage.schema import Customer, SaslAccount, SmtpServer, StateChange
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal.auth import PageUserDep
from osfmilter.web.portal.pages.dashboard import senders
from osfmilter.web.portal.render import render
from osfmilter.web.portal.scope import BeforeQuery, cut, in_scope, newest_first, older_link

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]


@router.get("/history")
def list_history(
    request: Request, user: PageUserDep, context: Context, before: BeforeQuery = None
) -> HTMLResponse:
    owner = func.coalesce(SmtpServer.customer_id, SaslAccount.customer_id)
    query = in_scope(
        select(
            StateChange.id,
            StateChange.at,
            StateChange.old_state,
            StateChange.new_state,
            StateChange.reason,
            StateChange.actor,
            SmtpServer.network,
            SaslAccount.login,
            Customer.name.label("customer"),
        )
        .outerjoin(SmtpServer, SmtpServer.id == StateChange.smtp_server_id)
        .outerjoin(SaslAccount, SaslAccount.id == StateChange.sasl_account_id)
        .join(Customer, Customer.id == owner),
        owner,
        user,
    )
    not_veilig = [s for s in senders(context, user) if s.state != ServerState.VEILIG]
    with context.store.session() as session:
        read = session.execute(
            newest_first(session, query, StateChange.at, StateChange.id, before)
        ).all()
    page = cut(read, lambda row: int(row.id))
    return render(
        request,
        "history.html",
        user,
        changes=page.rows,
        not_veilig=not_veilig,
        older=older_link("/history", page.older),
    )
