"""A customer's domains as the command line (and the portal) change them.

One domain belongs to one customer, and the domains of different customers
do not nest: ``sub.b.example`` cannot be one customer's while ``b.example``
is another's (docs/domains.rst, 'One customer per domain'). Each function
works inside the caller's transaction and raises
:class:`~osfmilter.errors.UsageError` with one line, so a refused command
changes nothing.

Adds are serialized, so that the nesting check still holds when the insert
commits: on PostgreSQL by a transaction-scoped advisory lock (the check
then sees every add committed before, at the default isolation level, READ
COMMITTED), on SQLite by the write lock the caller's session takes from
the start (``SqlStore.session(locked=True)``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from osfmilter.domains.rules import DomainState, new_token, parents
from osfmilter.errors import UsageError
from osfmilter.registration import normalize_domain
from osfmilter.storage.admin import get_customer, serialize_registrations
from osfmilter.storage.schema import Customer, ScannedDomain

# The advisory lock of domain adds (storage.admin.serialize_registrations).
DOMAIN_ADDS_LOCK = 0x6F73666D_00000002


def add_domain(
    session: Session,
    domain: str,
    customer_name: str,
    now: datetime,
    *,
    pending: bool = False,
    reveal_others: bool = True,
) -> ScannedDomain:
    """Add a domain: verified (the operator vouches for it) or pending with a new token.

    ``reveal_others``: a refusal names the other customer and its domain;
    False for a caller that must not learn them (the customers' portal).
    """
    name = normalize_domain(domain)
    serialize_registrations(session, DOMAIN_ADDS_LOCK)
    customer = get_customer(session, customer_name)
    _refuse_conflict(session, name, customer, reveal_others)
    try:
        with session.begin_nested():
            row = ScannedDomain(
                customer=customer,
                domain=name,
                created_at=now,
                state=DomainState.PENDING if pending else DomainState.VERIFIED,
                verification_token=new_token() if pending else None,
                verified_at=None if pending else now,
            )
            session.add(row)
    except IntegrityError:
        # Committed since the check (without the lock: an operator's own
        # SQL): name it as the check would, else still one line.
        with session.no_autoflush:
            _refuse_conflict(session, name, customer, reveal_others)
        raise UsageError(f"domain {name}: the database refused it; nothing was changed") from None
    return row


def _refuse_conflict(session: Session, name: str, customer: Customer, reveal: bool) -> None:
    """Refuse a domain registered already, or nesting with another customer's."""
    for other in _nesting(session, name):
        owner = f" ({other.customer.name!r})" if reveal else ""
        if other.domain == name:
            if other.customer_id == customer.id:
                raise UsageError(f"domain {name} is already registered to this customer")
            raise UsageError(f"domain {name} is already registered to another customer{owner}")
        if other.customer_id == customer.id:
            continue  # one customer's domains may nest
        if name.endswith("." + other.domain):
            raise UsageError(
                f"domain {name} lies within {other.domain}, "
                f"which is registered to another customer{owner}; "
                "the domains of different customers may not nest"
            )
        inner = other.domain if reveal else "a domain"
        raise UsageError(
            f"domain {name} contains {inner} registered to another customer{owner}; "
            "the domains of different customers may not nest"
        )


def _nesting(session: Session, name: str) -> list[ScannedDomain]:
    """The registered domains that are ``name``, lie above it or within it."""
    query = select(ScannedDomain).where(
        or_(
            ScannedDomain.domain.in_([name, *parents(name)]),
            ScannedDomain.domain.endswith("." + name, autoescape=True),
        )
    )
    # The exact name first: it is the refusal to give when there are several.
    return sorted(session.scalars(query), key=lambda d: d.domain != name)


def get_domain(session: Session, domain: str) -> ScannedDomain:
    name = normalize_domain(domain)
    row = session.scalars(select(ScannedDomain).where(ScannedDomain.domain == name)).one_or_none()
    if row is None:
        raise UsageError(f"domain {name} is not registered")
    return row


def mark_verified(session: Session, domain: str, token: str, now: datetime) -> ScannedDomain:
    """Verify a pending domain whose record was found to hold ``token``.

    The token is checked again: the domain may have been removed and added
    anew (with another token) since the DNS lookup.
    """
    row = get_domain(session, domain)
    if row.state == DomainState.VERIFIED:
        return row
    if row.verification_token != token:
        raise UsageError(f"domain {row.domain} got a new token meanwhile; verify it again")
    row.state = DomainState.VERIFIED
    row.verified_at = now
    return row


def remove_domain(session: Session, domain: str) -> list[str]:
    """Remove the domain and its DKIM keys' rows; the selectors whose key files go too."""
    row = get_domain(session, domain)
    selectors = [key.selector for key in row.dkim_keys]
    session.delete(row)
    return selectors
