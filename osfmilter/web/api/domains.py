"""``/api/v1/domains``: a customer's domains, verified by a TXT record it publishes.

A domain added here is pending, with the record to publish; ``verify``
looks it up (outside any transaction, as ``osfmilter domain verify``) and
marks it verified. One domain's answer has the advice of ``osfmilter domain
check --json``: SPF, verification, DKIM and DMARC. Removing one removes its
DKIM key files too, as ``osfmilter domain remove``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.dkim.keys import KeyFiles
from osfmilter.domains import check
from osfmilter.domains.advisor import document
from osfmilter.domains.rules import DomainState, record_name, record_value
from osfmilter.domains.verify import check_record
from osfmilter.errors import ConflictError, DnsError, InvalidInput
from osfmilter.spf.checker import resolver_for
from osfmilter.storage.schema import ScannedDomain
from osfmilter.web import operations
from osfmilter.web.api.common import Context, CustomerQuery, ObjectId, owner, scoped, visible
from osfmilter.web.auth import Caller, CallerDep
from osfmilter.web.errors import invalid

router = APIRouter(prefix="/domains", tags=["domains"])


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1, max_length=253, examples=["acme.example"])
    # Operator tokens only: the customer it belongs to.
    customer: str | None = Field(default=None, max_length=100)


class VerificationRecord(BaseModel):
    """The TXT record that proves the customer holds the domain."""

    name: str
    type: Literal["TXT"] = "TXT"
    value: str


class DomainOut(BaseModel):
    id: int
    domain: str
    customer: str
    state: str = Field(description="pending or verified")
    created_at: datetime
    verified_at: datetime | None
    verification: VerificationRecord | None = Field(
        description="the record to publish; null for a domain the operator verified"
    )


class DomainChecked(DomainOut):
    check: dict[str, object] | None = Field(
        description="what `osfmilter domain check --json` prints; null without [spf] outbound_ips"
    )


def _out(row: ScannedDomain) -> DomainOut:
    token = row.verification_token
    return DomainOut(
        id=row.id,
        domain=row.domain,
        customer=row.customer.name,
        state=row.state,
        created_at=row.created_at,
        verified_at=row.verified_at,
        verification=(
            VerificationRecord(name=record_name(row.domain), value=record_value(token))
            if token
            else None
        ),
    )


def _visible(session: Session, caller: Caller, domain_id: int) -> ScannedDomain:
    return visible(session, caller, domain_id, "domain", operations.visible_domain)


@router.get("", summary="the caller's domains (an operator's: all, or ?customer=NAME)")
def list_domains(
    caller: CallerDep, context: Context, customer: CustomerQuery = None
) -> list[DomainOut]:
    with context.store.session() as session:
        query = select(ScannedDomain).order_by(ScannedDomain.domain)
        query = scoped(query, ScannedDomain.customer_id, session, caller, customer)
        return [_out(row) for row in session.scalars(query)]


@router.post("", status_code=201, summary="add a domain, pending: the record to publish")
def create_domain(body: DomainCreate, caller: CallerDep, context: Context) -> DomainOut:
    # Locked, as `osfmilter domain add`: no add slips in between the nesting
    # check and the insert.
    with context.store.session(locked=True) as session:
        customer = owner(session, caller, body.customer)
        try:
            row = operations.add_domain(
                session, caller.actor, customer, body.domain, context.clock.now()
            )
        except InvalidInput as exc:
            raise invalid("domain", exc.public) from None
        return _out(row)


@router.get("/{domain_id}", summary="one domain, with its SPF, DKIM and DMARC advice")
def get_domain(domain_id: ObjectId, caller: CallerDep, context: Context) -> DomainChecked:
    with context.store.session() as session:
        row = _visible(session, caller, domain_id)
        shown = _out(row)
        found = check.registered(session, row.domain, context.clock.now())
    # DNS outside the transaction: the lookups may take their timeout.
    spf = context.config.spf
    result = document(check.run(spf, shown.domain, found)) if spf.outbound_ips else None
    return DomainChecked(**shown.model_dump(), check=result)


@router.post("/{domain_id}/verify", summary="look the verification record up; verified, or 409")
def verify_domain(domain_id: ObjectId, caller: CallerDep, context: Context) -> DomainOut:
    with context.store.session() as session:
        row = _visible(session, caller, domain_id)
        if row.state == DomainState.VERIFIED:
            return _out(row)
        name, token = row.domain, row.verification_token
    if token is None:  # only an operator's own SQL makes one
        raise ConflictError(f"domain {name} is pending without a token; remove it and add it again")
    # As `osfmilter domain verify`: the lookup runs outside any transaction.
    spf = context.config.spf
    finding = check_record(resolver_for(spf.nameservers, spf.timeout), name, token)
    if isinstance(finding, str):
        raise DnsError(f"domain {name} not verified: {finding}")
    if not finding.verified:
        raise ConflictError(f"domain {name} not verified yet: {finding.line}")
    with context.store.session() as session:
        row = _visible(session, caller, domain_id)
        operations.mark_domain_verified(session, caller.actor, row, token, context.clock.now())
        return _out(row)


@router.delete("/{domain_id}", status_code=204, summary="remove a domain and its DKIM keys")
def delete_domain(domain_id: ObjectId, caller: CallerDep, context: Context) -> Response:
    with context.store.session() as session:
        row = _visible(session, caller, domain_id)
        name = row.domain
        selectors = operations.remove_domain(session, caller.actor, row, context.clock.now())
    # After the commit, as `osfmilter domain remove`: a key file goes only
    # once its row is gone for good (other relay nodes keep their copies).
    files = KeyFiles(context.config.dkim_key_path)
    for selector in selectors:
        files.remove(name, selector)
    return Response(status_code=204)
