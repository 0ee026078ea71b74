"""``/domains``: the customer's domains, the record that verifies one, and the records to publish.

A domain added here is always pending: it counts once its owner has
published the verification record and pressed *Verify* (the portal's
``osfmilter domain verify``). A domain's page also shows what ``osfmilter
domain check`` shows: SPF, DKIM and DMARC, each with what to publish and
whether it is in place. DNS is asked outside any database transaction,
through ``[spf] nameservers`` within ``[spf] timeout``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.dkim.keys import KeyFiles
from osfmilter.domains import check as domain_check
from osfmilter.domains.advisor import DomainCheck, Registered
from osfmilter.domains.rules import DomainState, record_name, record_value
from osfmilter.domains.verify import check_record
from osfmilter.errors import ConflictError, InvalidInput, UsageError
from osfmilter.spf.checker import resolver_for
from osfmilter.storage.schema import ScannedDomain
from osfmilter.web import operations
from osfmilter.web.context import WebContext, web_context
from osfmilter.web.portal import flash, owners
from osfmilter.web.portal.auth import FormUserDep, PageUserDep, PortalUser
from osfmilter.web.portal.errors import not_found
from osfmilter.web.portal.render import render
from osfmilter.web.portal.scope import in_scope

router = APIRouter(tags=["portal"], include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
DomainId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_DOMAIN = 253


def _list(
    request: Request,
    context: WebContext,
    user: PortalUser,
    *,
    status: int = 200,
    error: str | None = None,
    domain: str = "",
    customer: str = "",
) -> HTMLResponse:
    with context.store.session() as session:
        query = in_scope(select(ScannedDomain), ScannedDomain.customer_id, user)
        rows = [
            {
                "id": d.id,
                "domain": d.domain,
                "state": d.state,
                "since": d.verified_at if d.state == DomainState.VERIFIED else d.created_at,
                "customer": d.customer.name,
            }
            for d in session.scalars(query.order_by(ScannedDomain.domain))
        ]
        customers = owners.customers(session) if user.is_operator else []
    return render(
        request,
        "domains.html",
        user,
        status=status,
        domains=rows,
        customers=customers,
        error=error,
        domain=domain,
        chosen=customer,
    )


@router.get("/domains")
def list_domains(request: Request, user: PageUserDep, context: Context) -> HTMLResponse:
    return _list(request, context, user)


@router.post("/domains")
def add_domain(
    request: Request,
    user: FormUserDep,
    context: Context,
    domain: Annotated[str, Form()] = "",
    customer: Annotated[str, Form()] = "",
) -> Response:
    try:
        if not domain.strip():
            raise InvalidInput("Enter a domain name.")
        if len(domain) > MAX_DOMAIN:
            raise InvalidInput("That is not a domain name.")
        # Locked: no other add slips in between the nesting check and the insert.
        with context.store.session(locked=True) as session:
            owner = owners.target_customer(session, user, customer)
            row = operations.add_domain(
                session, user.actor(request), owner, domain, context.clock.now()
            )
            added, domain_id = row.domain, row.id
    except (InvalidInput, ConflictError) as exc:
        return _list(
            request,
            context,
            user,
            status=422,
            error=exc.public,
            domain=domain[:MAX_DOMAIN],
            customer=customer,
        )
    return flash.redirect(
        request,
        context,
        user,
        f"/domains/{domain_id}",
        f"Domain {added} added, pending verification: publish its record below, then verify it.",
    )


def _visible(session: Session, user: PortalUser, domain_id: int) -> ScannedDomain:
    """The user's domain (an operator's: any); another customer's is a 404, as a missing one."""
    row = operations.visible_domain(session, user.customer_id, domain_id)
    if row is None:
        raise not_found()
    return row


def _check(context: WebContext, name: str, registered: Registered | None) -> DomainCheck | str:
    """The records' check, or why it could not be made (one sentence)."""
    try:
        return domain_check.run(context.config.spf, name, registered)
    except UsageError as exc:  # no relay address configured to check SPF against
        return f"The relay's records cannot be checked: {exc}."


@router.get("/domains/{domain_id}")
def show_domain(
    request: Request, domain_id: DomainId, user: PageUserDep, context: Context
) -> HTMLResponse:
    with context.store.session() as session:
        row = _visible(session, user, domain_id)
        shown = {
            "id": row.id,
            "domain": row.domain,
            "state": row.state,
            "customer": row.customer.name,
            "created_at": row.created_at,
            "verified_at": row.verified_at,
            "record_name": record_name(row.domain),
            "record": record_value(row.verification_token) if row.verification_token else None,
        }
        registered = domain_check.registered(session, row.domain, context.clock.now())
    # Outside the transaction: each lookup may take the DNS timeout.
    check = _check(context, row.domain, registered)
    return render(
        request,
        "domain.html",
        user,
        domain=shown,
        check=check if isinstance(check, DomainCheck) else None,
        check_problem=check if isinstance(check, str) else None,
    )


def _verify(context: WebContext, name: str, token: str) -> tuple[bool, str]:
    """Whether the record holds the token, and the answer to flash (the DNS lookup)."""
    resolver = resolver_for(context.config.spf.nameservers, context.config.spf.timeout)
    finding = check_record(resolver, name, token)
    if isinstance(finding, str):
        return False, f"Domain {name} is not verified: DNS could not answer ({finding}). Try again."
    if not finding.verified:
        return False, f"Domain {name} is not verified yet: {finding.line}."
    return True, f"Domain {name} is verified: {finding.line}."


@router.post("/domains/{domain_id}/verify")
def verify_domain(
    request: Request, domain_id: DomainId, user: FormUserDep, context: Context
) -> Response:
    here = f"/domains/{domain_id}"
    with context.store.session() as session:
        row = _visible(session, user, domain_id)
        name, state, token = row.domain, row.state, row.verification_token
    if state == DomainState.VERIFIED:
        return flash.redirect(request, context, user, here, f"Domain {name} is verified already.")
    if token is None:  # only an operator's own SQL makes one
        message = f"Domain {name} has no verification token: remove it and add it again."
        return flash.redirect(request, context, user, here, message)
    # The lookup runs outside any transaction: DNS may take its timeout.
    verified, message = _verify(context, name, token)
    if verified:
        try:
            with context.store.session() as session:
                row = _visible(session, user, domain_id)  # or removed meanwhile
                operations.mark_domain_verified(
                    session, user.actor(request), row, token, context.clock.now()
                )
        except ConflictError as exc:
            message = exc.public
    return flash.redirect(request, context, user, here, message)


@router.post("/domains/{domain_id}/remove")
def remove_domain(
    request: Request, domain_id: DomainId, user: FormUserDep, context: Context
) -> Response:
    with context.store.session() as session:
        row = _visible(session, user, domain_id)
        name = row.domain
        selectors = operations.remove_domain(session, user.actor(request), row, context.clock.now())
    # After the commit, as ``osfmilter domain remove``: a key file goes only with its row.
    files = KeyFiles(context.config.dkim_key_path)
    for selector in selectors:
        files.remove(name, selector)
    return flash.redirect(request, context, user, "/domains", f"Domain {name} removed.")
