"""The DKIM keys of the customers' domains, as the ``osfmilter dkim`` commands change them.

A verified domain has at most one ``active`` key (it signs) and any number
of ``retiring`` ones, still published until ``retire_after`` so that mail
signed before a rotation still verifies. Each function works inside the
caller's transaction and raises :class:`~osfmilter.errors.UsageError` with
one line, so a refused command changes nothing. The private keys are files
(:class:`osfmilter.dkim.keys.KeyFiles`); the caller writes and removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.dkim.keys import check_selector
from osfmilter.dkim.signer import ALGORITHMS, Algorithm
from osfmilter.errors import UsageError
from osfmilter.storage.domains import get_domain
from osfmilter.storage.schema import DkimKey, ScannedDomain

ACTIVE = "active"
RETIRING = "retiring"


@dataclass(frozen=True)
class Rotation:
    new: DkimKey
    retired: DkimKey
    # Retiring keys past their retire_after, deleted: the caller removes their files.
    removed: list[DkimKey]


def verified_domain(session: Session, domain: str) -> ScannedDomain:
    row = get_domain(session, domain)
    if row.state != "verified":
        raise UsageError(
            f"domain {row.domain} is {row.state}, not verified: "
            "it gets a DKIM key once its verification record is found"
        )
    return row


def active_key(session: Session, domain: str) -> DkimKey | None:
    row = get_domain(session, domain)
    return session.scalars(
        select(DkimKey).where(DkimKey.domain_id == row.id, DkimKey.state == ACTIVE)
    ).one_or_none()


def published_keys(session: Session, domain: str, now: datetime) -> list[DkimKey]:
    """The active key first, then the retiring ones not yet past retire_after, newest first."""
    row = get_domain(session, domain)
    keys = session.scalars(select(DkimKey).where(DkimKey.domain_id == row.id)).all()
    published = [k for k in keys if k.state == ACTIVE or not _expired(k, now)]
    return sorted(published, key=lambda k: (k.state != ACTIVE, -k.created_at.timestamp(), k.id))


def default_selector(session: Session, domain: ScannedDomain, now: datetime) -> str:
    """``osf`` and the month (``osf202612``); then ``osf202612b``, ``c`` ... if taken."""
    taken = _selectors(session, domain)
    base = f"osf{now:%Y%m}"
    for candidate in [base, *(base + letter for letter in "bcdefghijklmnopqrstuvwxyz")]:
        if candidate not in taken:
            return candidate
    raise UsageError(f"every default selector of {now:%Y-%m} is taken; give --selector")


def create_key(
    session: Session,
    domain: str,
    selector: str | None,
    algorithm: Algorithm,
    public_key: str,
    now: datetime,
) -> DkimKey:
    """The first key of a verified domain, active at once; ``selector`` None: the default."""
    row = verified_domain(session, domain)
    current = _active(session, row)
    if current is not None:
        raise UsageError(
            f"domain {row.domain} already has an active DKIM key (selector "
            f"{current.selector}); 'osfmilter dkim rotate {row.domain}' replaces it"
        )
    return _add(session, row, selector, algorithm, public_key, now)


def rotate(
    session: Session,
    domain: str,
    selector: str | None,
    algorithm: Algorithm,
    public_key: str,
    now: datetime,
    grace: timedelta,
) -> Rotation:
    """A new active key; the active one retires, published for ``grace`` more.

    Retiring keys already past their retire_after are deleted.
    """
    row = verified_domain(session, domain)
    current = _active(session, row)
    if current is None:
        raise UsageError(
            f"domain {row.domain} has no active DKIM key to rotate; "
            f"'osfmilter dkim keygen {row.domain}' makes one"
        )
    # The selector is chosen among all of the domain's rows, the expired
    # ones included: a new key never takes the name of a file to be removed.
    new_selector = _new_selector(session, row, selector, now)
    removed = [
        k
        for k in session.scalars(
            select(DkimKey).where(DkimKey.domain_id == row.id, DkimKey.state == RETIRING)
        )
        if _expired(k, now)
    ]
    for key in removed:
        session.delete(key)
    current.state = RETIRING
    current.retire_after = now + grace
    session.flush()  # one active key per domain: the old one steps down first
    new = _add(session, row, new_selector, algorithm, public_key, now)
    return Rotation(new=new, retired=current, removed=removed)


def _add(
    session: Session,
    domain: ScannedDomain,
    selector: str | None,
    algorithm: Algorithm,
    public_key: str,
    now: datetime,
) -> DkimKey:
    if algorithm not in ALGORITHMS:
        raise UsageError(f"{algorithm!r} is not a DKIM algorithm ({', '.join(ALGORITHMS)})")
    key = DkimKey(
        domain=domain,
        selector=_new_selector(session, domain, selector, now),
        algorithm=algorithm,
        public_key=public_key,
        state=ACTIVE,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key


def _new_selector(
    session: Session, domain: ScannedDomain, selector: str | None, now: datetime
) -> str:
    if selector is None:
        return default_selector(session, domain, now)
    name = check_selector(selector)
    if name in _selectors(session, domain):
        raise UsageError(f"selector {name} is already used by {domain.domain}; choose another")
    return name


def _active(session: Session, domain: ScannedDomain) -> DkimKey | None:
    return session.scalars(
        select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.state == ACTIVE)
    ).one_or_none()


def _selectors(session: Session, domain: ScannedDomain) -> set[str]:
    return set(session.scalars(select(DkimKey.selector).where(DkimKey.domain_id == domain.id)))


def _expired(key: DkimKey, now: datetime) -> bool:
    return key.state == RETIRING and key.retire_after is not None and key.retire_after <= now
