"""``/api/v1/sasl-accounts``: a customer's SASL logins, each with a generated password.

The password is made here, shown once in the answer that made it, and
stored only as its hash (Dovecot checks logins against it). No other
answer shows it: a GET never does.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.errors import InvalidInput
from osfmilter.model import IdentityKind
from osfmilter.storage.schema import SaslAccount
from osfmilter.web import operations
from osfmilter.web.api.common import (
    Context,
    CustomerQuery,
    ObjectId,
    StateChangeOut,
    history,
    owner,
    remove_visible,
    scoped,
    visible,
)
from osfmilter.web.auth import Caller, CallerDep
from osfmilter.web.errors import invalid

router = APIRouter(prefix="/sasl-accounts", tags=["sasl-accounts"])


class SaslCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=255, examples=["shop@acme.example"])
    # Operator tokens only: the customer it belongs to.
    customer: str | None = Field(default=None, max_length=100)


class SaslOut(BaseModel):
    id: int
    login: str
    state: str = Field(description="veilig, verdacht or onveilig")
    state_changed_at: datetime
    customer: str
    created_at: datetime
    password_changed_at: datetime | None = Field(description="null: it cannot log in")


class SaslWithPassword(SaslOut):
    password: str = Field(description="the generated password: shown this once, never again")


def _out(account: SaslAccount) -> SaslOut:
    return SaslOut(
        id=account.id,
        login=account.login,
        state=account.state,
        state_changed_at=account.state_changed_at,
        customer=account.customer.name,
        created_at=account.created_at,
        password_changed_at=account.password_changed_at,
    )


def _with_password(account: SaslAccount, password: str) -> SaslWithPassword:
    return SaslWithPassword(**_out(account).model_dump(), password=password)


def _visible(session: Session, caller: Caller, account_id: int) -> SaslAccount:
    return visible(session, caller, account_id, "SASL account", operations.visible_sasl_account)


@router.get("", summary="the caller's SASL accounts (an operator's: all, or ?customer=NAME)")
def list_accounts(
    caller: CallerDep, context: Context, customer: CustomerQuery = None
) -> list[SaslOut]:
    with context.store.session() as session:
        query = select(SaslAccount).order_by(SaslAccount.login)
        query = scoped(query, SaslAccount.customer_id, session, caller, customer)
        return [_out(account) for account in session.scalars(query)]


@router.post("", status_code=201, summary="register a SASL login; its password, shown once")
def create_account(body: SaslCreate, caller: CallerDep, context: Context) -> SaslWithPassword:
    password, hashed = operations.new_password()  # 0.3 s of CPU: before the transaction
    with context.store.session() as session:
        customer = owner(session, caller, body.customer)
        try:
            account = operations.add_sasl_account(
                session, caller.actor, customer, body.login, hashed, context.clock.now()
            )
        except InvalidInput as exc:
            raise invalid("login", exc.public) from None
        # A login taken, by this customer or another, is a ConflictError: 409.
        return _with_password(account, password)


@router.get("/{account_id}", summary="one SASL account (never its password)")
def get_account(account_id: ObjectId, caller: CallerDep, context: Context) -> SaslOut:
    with context.store.session() as session:
        return _out(_visible(session, caller, account_id))


@router.delete("/{account_id}", status_code=204, summary="remove a SASL account")
def delete_account(account_id: ObjectId, caller: CallerDep, context: Context) -> Response:
    return remove_visible(
        context,
        caller,
        account_id,
        "SASL account",
        operations.visible_sasl_account,
        operations.remove_sasl_account,
    )


@router.post("/{account_id}/password", summary="a new generated password, shown once")
def new_password(account_id: ObjectId, caller: CallerDep, context: Context) -> SaslWithPassword:
    with context.store.session() as session:
        _visible(session, caller, account_id)  # a 404 costs no hashing
    password, hashed = operations.new_password()
    with context.store.session() as session:
        account = _visible(session, caller, account_id)
        operations.set_sasl_password(session, caller.actor, account, hashed, context.clock.now())
        return _with_password(account, password)


@router.get("/{account_id}/history", summary="the account's state changes, oldest first")
def account_history(
    account_id: ObjectId, caller: CallerDep, context: Context
) -> list[StateChangeOut]:
    return history(context, caller, IdentityKind.SASL, account_id)
