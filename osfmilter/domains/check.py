"""``osfmilter domain check`` and the API's domain: the advice, from the database and DNS.

:func:`registered` reads what the database holds (in the caller's
transaction); :func:`run` asks DNS, outside any transaction, as the
command line and the API both do.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from osfmilter.config import SpfSection
from osfmilter.dkim.signer import Algorithm
from osfmilter.domains.advisor import DomainCheck, PublishedKey, Registered, check_domain
from osfmilter.domains.rules import DomainState
from osfmilter.errors import UsageError
from osfmilter.registration import normalize_domain
from osfmilter.spf.advisor import Advice
from osfmilter.storage.dkim import published_keys
from osfmilter.storage.schema import ScannedDomain


def registered(session: Session, domain: str, now: datetime) -> Registered | None:
    """The domain's state, token and the DKIM keys it must publish; None if not registered."""
    name = normalize_domain(domain)
    row = session.scalars(select(ScannedDomain).where(ScannedDomain.domain == name)).one_or_none()
    if row is None:
        return None
    keys = tuple(
        PublishedKey(k.selector, cast(Algorithm, k.algorithm), k.public_key, k.state)
        for k in published_keys(session, name, now)
    )
    return Registered(DomainState(row.state), row.verification_token, keys)


def spf_advice(settings: SpfSection, domain_text: str) -> Advice:
    """The SPF advice for a domain, with the configured relay addresses and resolvers."""
    from osfmilter.spf.advisor import advise
    from osfmilter.spf.checker import SpfChecker, resolver_for

    if not settings.outbound_ips:
        raise UsageError("[spf] outbound_ips is empty: there is no relay address to check")
    domain = normalize_domain(domain_text)
    resolver = resolver_for(settings.nameservers, settings.timeout)
    checker = SpfChecker(
        settings.outbound_ips,
        resolver,
        settings.timeout,
        settings.cache_size,
        settings.cache_max_ttl,
    )
    return advise(domain, checker, settings.include)


def run(settings: SpfSection, domain: str, found: Registered | None) -> DomainCheck:
    """Every part of the check (SPF, verification, DKIM, DMARC), looked up in DNS."""
    from osfmilter.spf.checker import resolver_for

    name = normalize_domain(domain)
    advice = spf_advice(settings, name)
    resolver = resolver_for(settings.nameservers, settings.timeout)
    return check_domain(name, advice, resolver, found)
