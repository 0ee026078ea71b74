"""Administrative changes to registrations, as the command line makes them.

The rules for names and input are pure (:mod:`osfmilter.registration`);
here are the queries, and the check that registered networks do not overlap.
Each function works inside the caller's transaction and raises
:class:`~osfmilter.errors.UsageError` with one line naming the problem, so a
bad command changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from osfmilter.addresses import Registration, address_key, normalize_client, parse_registration
from osfmilter.config import RegistrationSection
from osfmilter.errors import ConflictError, InvalidInput, UsageError
from osfmilter.model import IdentityKind, ServerState
from osfmilter.registration import (
    InboundRow,
    check_customer_name,
    check_plan,
    non_global_reason,
    normalize_login,
)
from osfmilter.storage.schema import (
    Customer,
    MonthlyVolume,
    SaslAccount,
    ScannedDomain,
    SmtpServer,
)


def get_customer(session: Session, name: str) -> Customer:
    customer = session.scalars(select(Customer).where(Customer.name == name)).one_or_none()
    if customer is None:
        raise UsageError(f"no customer named {name!r}")
    return customer


def add_customer(session: Session, name: str, plan: str, now: datetime) -> Customer:
    check_customer_name(name)
    check_plan(plan)
    if session.scalars(select(Customer.id).where(Customer.name == name)).first() is not None:
        raise UsageError(f"customer {name!r} already exists")
    customer = Customer(name=name, plan=plan, created_at=now)
    session.add(customer)
    session.flush()
    return customer


def set_plan(session: Session, name: str, plan: str) -> Customer:
    check_plan(plan)
    customer = get_customer(session, name)
    customer.plan = plan
    return customer


def remove_customer(session: Session, name: str) -> None:
    customer = get_customer(session, name)
    held = [
        f"{count} {what}"
        for what, count in (
            ("domain(s)", len(customer.domains)),
            ("server(s)", len(customer.servers)),
            ("SASL account(s)", len(customer.sasl_accounts)),
            ("portal user(s)", len(customer.users)),
            # Revoked tokens grant nothing: they go with the customer.
            ("API token(s)", sum(1 for t in customer.api_tokens if t.revoked_at is None)),
        )
        if count
    ]
    if held:
        raise UsageError(f"customer {name!r} still has {', '.join(held)}; remove them first")
    session.delete(customer)


def add_server(
    session: Session,
    network: str,
    customer_name: str,
    rules: RegistrationSection,
    now: datetime,
    *,
    allow_non_global: bool = False,
    description: str | None = None,
    refuse_own_overlap: bool = False,
) -> SmtpServer:
    """Register a network; ``allow_non_global`` (or the rules') admits a non-global one.

    A network that may not be registered is an :class:`InvalidInput`; one
    that overlaps another customer's registration, or is registered
    already, a :class:`ConflictError`. A customer's own networks may nest
    (the longest prefix wins), unless ``refuse_own_overlap`` (the API's
    customers: one registration per address).
    """
    try:
        registration = parse_registration(network, rules.min_prefix_ipv4, rules.min_prefix_ipv6)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not (allow_non_global or rules.allow_non_global):
        reason = non_global_reason(registration.network)
        if reason is not None:
            raise InvalidInput(f"{reason} (--allow-non-global registers it on purpose)", reason)
    customer = get_customer(session, customer_name)
    serialize_registrations(session, SERVER_REGISTRATIONS)
    _refuse_overlap(session, registration, customer, refuse_own_overlap)
    try:
        with session.begin_nested():
            server = SmtpServer(
                customer=customer,
                network=registration.text,
                family=registration.network.version,
                prefix_len=registration.network.prefixlen,
                first_address=registration.first_key,
                last_address=registration.last_key,
                state=ServerState.VEILIG,
                state_changed_at=now,
                created_at=now,
                description=description,
            )
            session.add(server)
    except IntegrityError:
        # Another registration was committed since the check above, and the
        # database (unique network, no overlap across customers: migration
        # 0008) refused this one: name it as the check would have.
        with session.no_autoflush:
            _refuse_overlap(session, registration, customer, refuse_own_overlap)
        # Not an overlap after all: still one line, never a traceback.
        raise UsageError(
            f"{registration.text}: the database refused the registration "
            "(a constraint other than overlap); nothing was changed"
        ) from None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != DEADLOCK_DETECTED:
            raise
        # A writer that takes no advisory lock (an operator's own SQL, a node
        # still on an older release) met this one in the exclusion constraint.
        raise ConflictError(
            f"{registration.text}: another registration of an overlapping network ran at "
            "the same time; nothing was changed, try again"
        ) from None
    return server


# Keys of PostgreSQL advisory locks, one per kind of registration (any
# 64-bit numbers, unlikely to meet an operator's own: "osfm" + a kind).
SERVER_REGISTRATIONS = 0x6F73666D_00000001
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


def serialize_registrations(session: Session, kind: int) -> None:
    """Registrations of one kind wait for each other until the transaction ends.

    The overlap check then sees every registration committed before it, so
    the refusal names the network that won. Without it, PostgreSQL's
    exclusion constraint (migration 0008) still refuses the loser, but two
    inserts that wait on each other's constraint check may instead be told
    "deadlock detected". SQLite needs nothing: BEGIN IMMEDIATE serializes
    every writer already, when the session was opened ``locked`` (cli.common).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": kind})


def _refuse_overlap(
    session: Session, registration: Registration, customer: Customer, own: bool = False
) -> None:
    """A ConflictError for a registration that meets another; ``public`` names no other customer."""
    for other in _overlapping(session, registration):
        mine = other.customer_id == customer.id
        if other.network == registration.text:
            raise ConflictError(
                f"{other.network} is already registered to {other.customer.name!r}",
                f"{other.network} is already registered"
                + (" to this customer" if mine else " to another customer"),
            )
        if not mine:
            raise ConflictError(
                f"{registration.text} overlaps {other.network} of customer {other.customer.name!r}",
                f"{registration.text} overlaps a network registered to another customer",
            )
        if own:
            raise ConflictError(
                f"{registration.text} overlaps {other.network}, registered to this customer"
            )


def _overlapping(session: Session, registration: Registration) -> list[SmtpServer]:
    return list(
        session.scalars(
            select(SmtpServer).where(
                SmtpServer.family == registration.network.version,
                SmtpServer.first_address <= registration.last_key,
                SmtpServer.last_address >= registration.first_key,
            )
        )
    )


def find_server(session: Session, text: str) -> SmtpServer:
    """A registration by its exact network, else the longest prefix holding an address."""
    try:
        exact = parse_registration(text, 0, 0).text
    except ValueError:
        exact = None
    if exact is not None:
        server = session.scalars(select(SmtpServer).where(SmtpServer.network == exact)).first()
        if server is not None:
            return server
    address = normalize_client(text)
    if address is None:
        raise UsageError(f"{text!r} is not an IP address or CIDR network")
    key = address_key(address)
    server = session.scalars(
        select(SmtpServer)
        .where(
            SmtpServer.family == address.version,
            SmtpServer.first_address <= key,
            SmtpServer.last_address >= key,
        )
        .order_by(SmtpServer.prefix_len.desc())
        .limit(1)
    ).first()
    if server is None:
        raise UsageError(f"{text} is not covered by any registered SMTP server")
    return server


@dataclass(frozen=True)
class Sender:
    """A sender identity an operator named: its kind, row id and canonical name."""

    kind: IdentityKind
    id: int
    name: str


def find_sender(session: Session, text: str) -> Sender:
    """An SMTP server by address or network (as :func:`find_server`), else a SASL login."""
    if normalize_client(text.partition("/")[0]) is not None:
        server = find_server(session, text)
        return Sender(IdentityKind.SERVER, server.id, server.network)
    account = session.scalars(
        select(SaslAccount).where(SaslAccount.login == text.strip())
    ).one_or_none()
    if account is None:
        raise UsageError(f"{text!r} is neither a registered SMTP server nor a SASL login")
    return Sender(IdentityKind.SASL, account.id, account.login)


def remove_server(session: Session, network: str) -> None:
    try:
        text = parse_registration(network, 0, 0).text
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    server = session.scalars(select(SmtpServer).where(SmtpServer.network == text)).one_or_none()
    if server is None:
        raise UsageError(f"{text} is not registered")
    session.delete(server)


def add_sasl(
    session: Session,
    login: str,
    customer_name: str,
    now: datetime,
    *,
    password_hash: str | None = None,
) -> SaslAccount:
    """Register a login with the hash of its password (osfmilter.passwords).

    Without one the account cannot log in until it gets one (``sasl passwd``).
    """
    try:
        login = normalize_login(login)
    except UsageError as exc:
        raise InvalidInput(str(exc)) from None
    customer = get_customer(session, customer_name)
    # Logins are compared exactly (the milter, Dovecot's %u), but two that
    # differ only in case would be one login to a person and to many clients.
    existing = session.scalars(
        select(SaslAccount).where(func.lower(SaslAccount.login) == login.lower())
    ).first()
    if existing is not None:
        owner = existing.customer.name
        same = "" if existing.login == login else f" as {existing.login!r}"
        raise ConflictError(
            f"SASL login {login!r} is already registered{same} to {owner!r}",
            f"SASL login {login!r} is already registered",
        )
    account = SaslAccount(
        customer=customer,
        login=login,
        state=ServerState.VEILIG,
        state_changed_at=now,
        created_at=now,
        password_hash=password_hash,
        password_changed_at=now if password_hash is not None else None,
    )
    session.add(account)
    session.flush()
    return account


def set_sasl_password(session: Session, login: str, password_hash: str, now: datetime) -> str:
    """Replace a login's password (Dovecot checks the next login against it); the login."""
    account = get_sasl(session, login)
    account.password_hash = password_hash
    account.password_changed_at = now
    return account.login


def get_sasl(session: Session, login: str) -> SaslAccount:
    account = session.scalars(
        select(SaslAccount).where(SaslAccount.login == login.strip())
    ).one_or_none()
    if account is None:
        raise UsageError(f"SASL login {login!r} is not registered")
    return account


def remove_sasl(session: Session, login: str) -> None:
    session.delete(get_sasl(session, login))


def import_inbound(session: Session, rows: Sequence[InboundRow]) -> int:
    """Set each domain's inbound volume for the month (a re-import replaces, never adds)."""
    domains = {
        d.domain: d
        for d in session.scalars(
            select(ScannedDomain).where(ScannedDomain.domain.in_({r.domain for r in rows}))
        )
    }
    unknown = [
        f"line {r.line}: {r.domain} is not a scanned domain"
        for r in rows
        if r.domain not in domains
    ]
    if unknown:
        raise UsageError("; ".join(unknown) + "; nothing imported")
    for row in rows:
        customer_id = domains[row.domain].customer_id
        existing = session.scalars(
            select(MonthlyVolume).where(
                MonthlyVolume.month == row.month,
                MonthlyVolume.direction == "inbound",
                MonthlyVolume.customer_id == customer_id,
                MonthlyVolume.domain == row.domain,
            )
        ).one_or_none()
        if existing is None:
            session.add(
                MonthlyVolume(
                    month=row.month,
                    direction="inbound",
                    customer_id=customer_id,
                    domain=row.domain,
                    messages=0,
                    bytes=row.bytes,
                )
            )
        else:
            existing.bytes = row.bytes
    return len(rows)
