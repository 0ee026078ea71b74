"""``/operator``: the operator's console: customers, one customer, search, plan, release and block.

Only operators reach it: a customer's user gets the 404 of a missing page
(:data:`~osfmilter.web.portal.scope.OperatorDep`). A release or a block
follows the rules of ``osfmilter server release|block`` (docs/states.rst),
with the operator's address as ``--by`` and a reason, through
:func:`osfmilter.web.operations.change_state`, which writes the history
and the audit entry with the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from osfmilter.addresses import normalize_client
from osfmilter.domains.rules import parents
from osfmilter.errors import InvalidInput, UnknownIdentity, UsageError
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation import SYSTEM, OperatorActionKind, Rules, Standing
from osfmilter.storage import admin
from osfmilter.storage.schema import Customer, SaslAccount, ScannedDomain, SmtpServer, User
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render
from osfmilter.web.portal.scope import OperatorDep, OperatorFormDep

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
CustomerName = Annotated[str, Path(min_length=1, max_length=100)]
IdentityId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PLANS = ("free", "paid")
MAX_HITS = 50
Shown = dict[str, Any]
KIND_NAMES = {IdentityKind.SERVER: "SMTP server", IdentityKind.SASL: "SASL account"}


def customer_url(name: str) -> str:
    return f"/operator/customers/{quote(name, safe='')}"


def _per_customer(
    session: Session, owner: InstrumentedAttribute[int], *where: ColumnElement[bool]
) -> dict[int, int]:
    rows = session.execute(select(owner, func.count()).where(*where).group_by(owner))
    return {customer_id: int(count) for customer_id, count in rows}


@router.get("/operator")
def list_customers(request: Request, user: OperatorDep, context: Context) -> HTMLResponse:
    with context.store.session() as session:
        servers = _per_customer(session, SmtpServer.customer_id)
        accounts = _per_customer(session, SaslAccount.customer_id)
        domains = _per_customer(session, ScannedDomain.customer_id)
        unsafe = _per_customer(
            session, SmtpServer.customer_id, SmtpServer.state != ServerState.VEILIG
        )
        for customer_id, count in _per_customer(
            session, SaslAccount.customer_id, SaslAccount.state != ServerState.VEILIG
        ).items():
            unsafe[customer_id] = unsafe.get(customer_id, 0) + count
        rows = [
            {
                "name": c.name,
                "url": customer_url(c.name),
                "plan": c.plan,
                "servers": servers.get(c.id, 0),
                "sasl": accounts.get(c.id, 0),
                "domains": domains.get(c.id, 0),
                "not_veilig": unsafe.get(c.id, 0),
            }
            for c in session.scalars(select(Customer).order_by(Customer.name))
        ]
    return render(request, "operator.html", user, customers=rows, q="")


def _customer(session: Session, name: str) -> Customer:
    customer = session.scalars(select(Customer).where(Customer.name == name)).one_or_none()
    if customer is None:
        raise not_found()
    return customer


@router.get("/operator/customers/{name}")
def show_customer(
    request: Request, name: CustomerName, user: OperatorDep, context: Context
) -> HTMLResponse:
    rules = Rules.from_config(context.config.reputation)
    with context.store.session() as session:
        customer = _customer(session, name)

        def identity(kind: IdentityKind, row: SmtpServer | SaslAccount, label: str) -> Shown:
            standing = Standing(ServerState(row.state), row.state_changed_at, row.last_incident_at)
            return {
                "kind": str(kind),
                "id": row.id,
                "name": label,
                "state": row.state,
                "since": row.state_changed_at,
                "veilig_again_at": standing.recovery_due(rules),
            }

        shown = {
            "name": customer.name,
            "url": customer_url(customer.name),
            "plan": customer.plan,
            "created_at": customer.created_at,
            "servers": [
                {**identity(IdentityKind.SERVER, s, s.network), "description": s.description}
                for s in sorted(customer.servers, key=lambda s: (s.family, s.first_address))
            ],
            "sasl": [
                identity(IdentityKind.SASL, a, a.login)
                for a in sorted(customer.sasl_accounts, key=lambda a: a.login)
            ],
            "domains": [
                {"id": d.id, "domain": d.domain, "state": d.state}
                for d in sorted(customer.domains, key=lambda d: d.domain)
            ],
            "users": [
                {"email": u.email, "last_login_at": u.last_login_at}
                for u in sorted(customer.users, key=lambda u: u.email)
            ],
        }
    return render(request, "customer.html", user, customer=shown, plans=PLANS)


@router.post("/operator/customers/{name}/plan")
def change_plan(
    request: Request,
    name: CustomerName,
    user: OperatorFormDep,
    context: Context,
    plan: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    try:
        with context.store.session() as session:
            customer = _customer(session, name)
            before = customer.plan
            operations.set_plan(session, user.actor(request), customer, plan, context.clock.now())
    except InvalidInput as exc:
        return flash.redirect(request, context, user, customer_url(name), exc.public)
    message = (
        f"{name} is on the {plan} plan already."
        if before == plan
        else f"{name} moved from the {before} plan to the {plan} plan."
    )
    return flash.redirect(request, context, user, customer_url(name), message)


def _identity(session: Session, kind: IdentityKind, identity_id: int) -> tuple[str, str]:
    """The identity's name and its customer's (any customer's: this is the operator)."""
    if kind is IdentityKind.SERVER:
        server = operations.visible_server(session, None, identity_id)
        if server is not None:
            return server.network, server.customer.name
    else:
        account = operations.visible_sasl_account(session, None, identity_id)
        if account is not None:
            return account.login, account.customer.name
    raise not_found()


@router.post("/operator/identities/{kind}/{identity_id}/{action}")
def change_state(
    request: Request,
    kind: IdentityKind,
    identity_id: IdentityId,
    action: OperatorActionKind,
    user: OperatorFormDep,
    context: Context,
    reason: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Release (``…/release``) or block (``…/block``) a server or SASL account."""
    with context.store.session() as session:
        name, owner = _identity(session, kind, identity_id)
    described = f"{KIND_NAMES[kind]} {name}"
    back = customer_url(owner)
    if not reason.strip():
        message = f"Give the reason to {action} {described}: it goes into its history."
        return flash.redirect(request, context, user, back, message)
    try:
        changes = operations.change_state(
            context.reputation, user.actor(request), kind, identity_id, action, user.email, reason
        )
    except UnknownIdentity:  # removed meanwhile
        raise not_found() from None
    except UsageError as exc:  # not one line, or the operator's address too long for the history
        return flash.redirect(request, context, user, back, f"Not changed: {exc}.")
    if all(change.actor == SYSTEM for change in changes):
        target = (
            ServerState.VEILIG if action is OperatorActionKind.RELEASE else ServerState.ONVEILIG
        )
        message = f"{described} is {target} already: nothing to {action}."
    else:
        message = f"{described}: " + "; ".join(f"{c.old} → {c.new}" for c in changes) + "."
    return flash.redirect(request, context, user, back, message)


@dataclass(frozen=True)
class Hit:
    what: str  # "SMTP server", "SASL account", "domain", "customer", "portal user"
    name: str
    detail: str  # its state
    customer: str

    @property
    def url(self) -> str:
        return customer_url(self.customer)


def _named(
    session: Session, text: str, column: InstrumentedAttribute[str], *also: ColumnElement[bool]
) -> Sequence[Any]:
    """The rows whose ``column`` holds ``text`` (any case, wildcards as text), or match ``also``."""
    matching = func.lower(column).contains(text.lower(), autoescape=True)
    model = column.class_
    query = select(model).where(or_(matching, *also)).order_by(column).limit(MAX_HITS)
    return session.scalars(query).all()


def search_for(session: Session, text: str) -> list[Hit]:
    """What ``text`` names: the registration covering an address, else logins, domains, names."""
    text = text.strip()
    if not text:
        return []
    if normalize_client(text.partition("/")[0]) is not None:
        try:
            server = admin.find_server(session, text)
        except UsageError:  # covered by no registration
            return []
        return [Hit("SMTP server", server.network, server.state, server.customer.name)]
    named = partial(_named, session, text)
    hits = [
        Hit("SASL account", a.login, a.state, a.customer.name) for a in named(SaslAccount.login)
    ]
    # A domain by part of its name, or the registered domain a host name is in.
    hits += [
        Hit("domain", d.domain, d.state, d.customer.name)
        for d in named(
            ScannedDomain.domain, ScannedDomain.domain.in_(parents(text.lower().rstrip(".")))
        )
    ]
    hits += [Hit("customer", c.name, c.plan, c.name) for c in named(Customer.name)]
    hits += [
        Hit("portal user", u.email, "", u.customer.name)
        for u in named(User.email)
        if u.customer is not None  # an operator is nobody's
    ]
    return hits


@router.get("/operator/search")
def search(
    request: Request,
    user: OperatorDep,
    context: Context,
    q: Annotated[str, Query(max_length=320)] = "",
) -> HTMLResponse:
    with context.store.session() as session:
        hits = search_for(session, q)
    return render(request, "search.html", user, hits=hits, q=q)
