"""``/api/v1/tokens``: API tokens, the new one shown once, revoked at once.

A customer's token manages its customer's tokens. An operator's manages
the operator's tokens, and with ``?customer=NAME`` (``"customer"`` in a
body) any customer's. Only a token's hash is stored.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from osfmilter.errors import UsageError
from osfmilter.storage.schema import ApiToken, Customer
from osfmilter.tokens import MARKER
from osfmilter.web import operations
from osfmilter.web.api.common import (
    Context,
    CustomerQuery,
    ObjectId,
    customer_named,
    remove_visible,
)
from osfmilter.web.auth import CallerDep
from osfmilter.web.errors import invalid

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=100, description="what the token is for")
    # Operator tokens only: a token of this customer's (none: an operator token).
    customer: str | None = Field(default=None, max_length=100)


class TokenOut(BaseModel):
    id: int
    prefix: str = Field(description="osf_PREFIX: names the token, is no secret")
    customer: str | None = Field(description="null: an operator token")
    name: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenWithSecret(TokenOut):
    token: str = Field(description="the token: shown this once, never again")


def _out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        prefix=f"{MARKER}{token.prefix}",
        customer=None if token.customer is None else token.customer.name,
        name=token.name,
        created_at=token.created_at,
        created_by=token.created_by,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.get("", summary="the customer's tokens (an operator's: the operator's, or ?customer=)")
def list_tokens(
    caller: CallerDep, context: Context, customer: CustomerQuery = None
) -> list[TokenOut]:
    with context.store.session() as session:
        query = select(ApiToken).order_by(ApiToken.id)
        if customer is not None:
            query = query.where(
                ApiToken.customer_id == customer_named(session, caller, customer, "customer").id
            )
        elif caller.is_operator:
            query = query.where(ApiToken.is_operator.is_(True))
        else:
            query = query.where(ApiToken.customer_id == caller.customer_id)
        return [_out(token) for token in session.scalars(query)]


@router.post("", status_code=201, summary="create a token; the token itself, shown once")
def create_token(body: TokenCreate, caller: CallerDep, context: Context) -> TokenWithSecret:
    with context.store.session() as session:
        customer: Customer | None = None
        if body.customer is not None:
            customer = customer_named(session, caller, body.customer, "customer")
        elif not caller.is_operator:
            customer = session.get(Customer, caller.customer_id)
        try:
            token, secret = operations.create_token(
                session, caller.actor, customer, body.name, context.clock.now()
            )
        except UsageError as exc:
            raise invalid("name", str(exc)) from None
        return TokenWithSecret(**_out(token).model_dump(), token=secret)


@router.delete("/{token_id}", status_code=204, summary="revoke a token at once")
def revoke_token(token_id: ObjectId, caller: CallerDep, context: Context) -> Response:
    return remove_visible(
        context, caller, token_id, "token", operations.visible_token, operations.revoke_token
    )
