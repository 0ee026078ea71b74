"""Every change the portal and the API make, each with its audit entry.

One function per change, working inside the caller's transaction, so the
change and its :mod:`audit <osfmilter.storage.audit>` entry commit or roll
back together. Both front ends call these and nothing else to change the
database: a rule (a customer never registers a non-global network, nor one
meeting another registration) holds the same through either.

Errors are :class:`~osfmilter.errors.InvalidInput` (the API's 422, the
portal's form error) and :class:`~osfmilter.errors.ConflictError` (409);
their ``public`` text names no other customer.

``visible_*`` look an object up for a caller: ``customer_id`` None is the
operator, who sees all; another customer's object is None, exactly like a
missing one, so no answer tells which ids exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from osfmilter import passwords, tokens
from osfmilter.config import RegistrationSection
from osfmilter.errors import ConflictError, InvalidInput, UsageError
from osfmilter.model import IdentityKind
from osfmilter.registration import check_customer_name, check_plan, normalize_domain
from osfmilter.reputation import SYSTEM, OperatorActionKind, Transition
from osfmilter.storage import admin, domains, users
from osfmilter.storage.audit import Actor, record
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import (
    ApiToken,
    Customer,
    SaslAccount,
    ScannedDomain,
    SmtpServer,
)


def new_password() -> tuple[str, str]:
    """A generated password and its hash: 0.3 s of CPU, so call it outside the transaction."""
    password = passwords.generate()
    return password, passwords.hash_password(password)


def add_server(
    session: Session,
    actor: Actor,
    customer: Customer,
    network: str,
    description: str | None,
    rules: RegistrationSection,
    now: datetime,
    *,
    by_operator: bool,
) -> SmtpServer:
    """Register a network for the customer; the caller holds the registrations' lock.

    A customer never registers a non-global network, whatever the rules say
    (``allow_non_global`` is the operator's), nor one meeting its own.
    """
    if not by_operator:
        rules = rules.model_copy(update={"allow_non_global": False})
    server = admin.add_server(
        session,
        network,
        customer.name,
        rules,
        now,
        description=description,
        refuse_own_overlap=not by_operator,
    )
    record(session, actor, "server.add", now, customer=customer, target=server.network)
    session.flush()
    return server


def remove_server(session: Session, actor: Actor, server: SmtpServer, now: datetime) -> None:
    record(session, actor, "server.remove", now, customer=server.customer, target=server.network)
    session.delete(server)


def add_sasl_account(
    session: Session,
    actor: Actor,
    customer: Customer,
    login: str,
    password_hash: str,
    now: datetime,
) -> SaslAccount:
    """Register a login with its password's hash (:func:`new_password`)."""
    account = admin.add_sasl(session, login, customer.name, now, password_hash=password_hash)
    record(session, actor, "sasl.add", now, customer=customer, target=account.login)
    return account


def set_sasl_password(
    session: Session, actor: Actor, account: SaslAccount, password_hash: str, now: datetime
) -> None:
    """Replace the account's password: Dovecot checks the next login against the new hash."""
    account.password_hash = password_hash
    account.password_changed_at = now
    record(session, actor, "sasl.passwd", now, customer=account.customer, target=account.login)


def remove_sasl_account(
    session: Session, actor: Actor, account: SaslAccount, now: datetime
) -> None:
    record(session, actor, "sasl.remove", now, customer=account.customer, target=account.login)
    session.delete(account)


def create_token(
    session: Session, actor: Actor, customer: Customer | None, name: str, now: datetime
) -> tuple[ApiToken, str]:
    """A new API token of the customer (None: the operator's); the token itself, to show once."""
    made = tokens.generate()
    token = users.add_token(
        session,
        made.prefix,
        made.hash,
        None if customer is None else customer.name,
        now,
        name=name,
        created_by=actor.name,
    )
    record(session, actor, "token.create", now, customer=customer, target=f"osf_{made.prefix}")
    return token, made.token


def revoke_token(session: Session, actor: Actor, token: ApiToken, now: datetime) -> None:
    """Revoke at once; revoking a revoked token changes and records nothing."""
    if token.revoked_at is not None:
        return
    token.revoked_at = now
    record(
        session, actor, "token.revoke", now, customer=token.customer, target=f"osf_{token.prefix}"
    )


def add_domain(
    session: Session, actor: Actor, customer: Customer, domain: str, now: datetime
) -> ScannedDomain:
    """Add a domain pending verification, with its new token; the caller holds the lock.

    A refusal never names another customer or its domain.
    """
    try:
        name = normalize_domain(domain)
    except UsageError as exc:
        raise InvalidInput(str(exc)) from None
    try:
        row = domains.add_domain(
            session, name, customer.name, now, pending=True, reveal_others=False
        )
    except UsageError as exc:  # registered already, or nesting with another customer's
        raise ConflictError(str(exc)) from None
    record(session, actor, "domain.add", now, customer=customer, target=row.domain)
    session.flush()
    return row


def mark_domain_verified(
    session: Session, actor: Actor, row: ScannedDomain, token: str, now: datetime
) -> None:
    """Verify a pending domain whose record was found (outside the transaction) to hold ``token``.

    A ConflictError if it got another token meanwhile (removed and added anew).
    """
    try:
        domains.mark_verified(session, row.domain, token, now)
    except UsageError as exc:
        raise ConflictError(str(exc)) from None
    record(session, actor, "domain.verify", now, customer=row.customer, target=row.domain)


def remove_domain(session: Session, actor: Actor, row: ScannedDomain, now: datetime) -> list[str]:
    """Remove the domain and its DKIM keys' rows; the selectors whose key files the caller
    removes once this commits (as ``osfmilter domain remove``)."""
    record(session, actor, "domain.remove", now, customer=row.customer, target=row.domain)
    return domains.remove_domain(session, row.domain)


def add_customer(session: Session, actor: Actor, name: str, plan: str, now: datetime) -> Customer:
    try:
        check_customer_name(name)
        check_plan(plan)
    except UsageError as exc:
        raise InvalidInput(str(exc)) from None
    if session.scalars(select(Customer.id).where(Customer.name == name)).first() is not None:
        raise ConflictError(f"customer {name!r} already exists")
    customer = admin.add_customer(session, name, plan, now)
    record(session, actor, "customer.add", now, customer=customer, target=name, detail=plan)
    return customer


def set_plan(session: Session, actor: Actor, customer: Customer, plan: str, now: datetime) -> None:
    """Put the customer on a plan; the same plan again changes and records nothing."""
    try:
        check_plan(plan)
    except UsageError as exc:
        raise InvalidInput(str(exc)) from None
    if customer.plan == plan:
        return
    detail = f"{customer.plan} -> {plan}"
    admin.set_plan(session, customer.name, plan)
    record(
        session, actor, "customer.plan", now, customer=customer, target=customer.name, detail=detail
    )


def remove_customer(session: Session, actor: Actor, customer: Customer, now: datetime) -> None:
    """Remove a customer that holds nothing more (a ConflictError says what it still holds)."""
    # The entry keeps the name; its customer_id becomes NULL with the row.
    record(session, actor, "customer.remove", now, customer=customer, target=customer.name)
    try:
        admin.remove_customer(session, customer.name)
    except UsageError as exc:
        raise ConflictError(str(exc)) from None


def change_state(
    reputation: ReputationStore,
    actor: Actor,
    kind: IdentityKind,
    identity_id: int,
    action: OperatorActionKind,
    by: str,
    reason: str,
) -> list[Transition]:
    """Release or block an identity, as ``osfmilter server release|block``; the transitions.

    The audit entry is written in the reputation store's own transaction,
    the one that changes the state and its history, so they commit together.
    Nothing changed (it already was in that state): no entry.
    """

    def audit(connection: Connection, transitions: list[Transition]) -> None:
        if all(change.actor == SYSTEM for change in transitions):
            return
        # A session joined to the store's transaction: it neither commits nor ends it.
        session = Session(bind=connection)
        identity: SmtpServer | SaslAccount | None = (
            session.get(SmtpServer, identity_id)
            if kind is IdentityKind.SERVER
            else session.get(SaslAccount, identity_id)
        )
        assert identity is not None  # the store holds its row's lock
        target = identity.network if isinstance(identity, SmtpServer) else identity.login
        record(
            session,
            actor,
            f"{kind}.{action}",
            transitions[-1].at,
            customer=identity.customer,
            target=target,
            detail=f"{transitions[-1].old} -> {transitions[-1].new} by {by}: {reason}",
        )
        session.flush()

    return reputation.operator(kind, identity_id, action, by, reason, then=audit)


Owned = TypeVar("Owned", SmtpServer, SaslAccount, ApiToken, ScannedDomain)


def _visible(
    session: Session, model: type[Owned], customer_id: int | None, object_id: int
) -> Owned | None:
    found = session.get(model, object_id)
    if found is None or (customer_id is not None and found.customer_id != customer_id):
        return None
    return found


def visible_server(session: Session, customer_id: int | None, server_id: int) -> SmtpServer | None:
    return _visible(session, SmtpServer, customer_id, server_id)


def visible_sasl_account(
    session: Session, customer_id: int | None, account_id: int
) -> SaslAccount | None:
    return _visible(session, SaslAccount, customer_id, account_id)


def visible_token(session: Session, customer_id: int | None, token_id: int) -> ApiToken | None:
    return _visible(session, ApiToken, customer_id, token_id)


def visible_domain(
    session: Session, customer_id: int | None, domain_id: int
) -> ScannedDomain | None:
    return _visible(session, ScannedDomain, customer_id, domain_id)
