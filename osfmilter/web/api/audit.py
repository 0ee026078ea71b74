"""``/api/v1/audit``: the audit log, newest first, by pages (operator tokens only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from osfmilter.storage.audit import entries
from osfmilter.web.api.common import (
    Before,
    Context,
    CustomerQuery,
    Limit,
    OperatorDep,
    Page,
    customer_scope,
    page_of,
)

router = APIRouter(prefix="/audit", tags=["operator"])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    via: str
    remote_addr: str
    customer: str
    action: str
    target: str
    detail: str


class AuditPage(Page):
    entries: list[AuditOut]


@router.get("", summary="every change, newest first; ?customer=NAME for one customer's")
def list_audit(
    request: Request,
    caller: OperatorDep,
    context: Context,
    limit: Limit = 100,
    before: Before = None,
    customer: CustomerQuery = None,
) -> AuditPage:
    with context.store.session() as session:
        customer_id = customer_scope(session, caller, customer)
        found = entries(session, customer_id=customer_id, before_id=before, limit=limit + 1)
        rows, following = page_of(request, found, limit, lambda e: e.id)
        return AuditPage(
            next=following,
            entries=[AuditOut.model_validate(e) for e in rows],
        )
