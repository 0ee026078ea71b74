"""``/api/v1/customers`` and ``/api/v1/plans``: the operator's customers and the plans.

Operator tokens only: a customer's token is answered 403, whatever the name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.config import PlanLimits, PlanName
from osfmilter.errors import InvalidInput, UsageError
from osfmilter.storage import admin
from osfmilter.storage.schema import Customer
from osfmilter.web import operations
from osfmilter.web.api.common import Context, OperatorDep
from osfmilter.web.errors import invalid, not_found

router = APIRouter(tags=["operator"])
CustomerName = Annotated[str, Path(min_length=1, max_length=100)]


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["acme"])
    plan: PlanName = PlanName.FREE


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: PlanName


class CustomerOut(BaseModel):
    name: str
    plan: str
    created_at: datetime
    domains: int
    servers: int
    sasl_accounts: int


class PlanOut(PlanLimits):
    name: str


def _out(customer: Customer) -> CustomerOut:
    return CustomerOut(
        name=customer.name,
        plan=customer.plan,
        created_at=customer.created_at,
        domains=len(customer.domains),
        servers=len(customer.servers),
        sasl_accounts=len(customer.sasl_accounts),
    )


def _named(session: Session, name: str) -> Customer:
    try:
        return admin.get_customer(session, name)
    except UsageError:
        raise not_found("customer") from None


@router.get("/customers", summary="every customer")
def list_customers(caller: OperatorDep, context: Context) -> list[CustomerOut]:
    with context.store.session() as session:
        return [_out(c) for c in session.scalars(select(Customer).order_by(Customer.name))]


@router.post("/customers", status_code=201, summary="add a customer")
def create_customer(body: CustomerCreate, caller: OperatorDep, context: Context) -> CustomerOut:
    with context.store.session() as session:
        try:
            customer = operations.add_customer(
                session, caller.actor, body.name, body.plan, context.clock.now()
            )
        except InvalidInput as exc:
            raise invalid("name", exc.public) from None
        return _out(customer)


@router.get("/customers/{name}", summary="one customer")
def get_customer(name: CustomerName, caller: OperatorDep, context: Context) -> CustomerOut:
    with context.store.session() as session:
        return _out(_named(session, name))


@router.delete("/customers/{name}", status_code=204, summary="remove a customer with nothing left")
def delete_customer(name: CustomerName, caller: OperatorDep, context: Context) -> Response:
    with context.store.session() as session:
        operations.remove_customer(
            session, caller.actor, _named(session, name), context.clock.now()
        )
    return Response(status_code=204)


@router.put("/customers/{name}/plan", summary="put a customer on a plan")
def set_plan(
    name: CustomerName, body: PlanChange, caller: OperatorDep, context: Context
) -> CustomerOut:
    with context.store.session() as session:
        customer = _named(session, name)
        operations.set_plan(session, caller.actor, customer, body.plan, context.clock.now())
        return _out(customer)


@router.get("/plans", summary="the plans and their limits, from the configuration")
def list_plans(caller: OperatorDep, context: Context) -> list[PlanOut]:
    plans = context.config.plans
    return [PlanOut(name=p, **plans.limits(p).model_dump()) for p in PlanName]
