"""A customer sends as its own domains or as domains of nobody, never as another customer's.

On a shared relay SPF proves nothing about the tenant: every customer's
record includes the relay. So a verified domain belongs to one customer,
and another customer's mail in its name is refused, by the envelope
sender at MAIL and by the From: header at the end of the message. Domains
of no customer stay unknown senders, with the lower limits.
"""

from __future__ import annotations

from collections.abc import Iterable

from osfmilter.model import domain_of
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import ForeignDomain


def refusing_foreign(context: Context) -> bool:
    """[domains] refuse_foreign; false treats another customer's domain as unknown."""
    return context.config.domains.refuse_foreign


def _foreign(context: Context, domains: Iterable[str]) -> str | None:
    """The first of the domains that is (under) another customer's verified domain."""
    customer_id = context.identity.customer_id
    for domain in domains:
        owner = context.owner_of(domain)
        if owner is not None and owner[0] != customer_id:
            return domain
    return None


@step("sender_domain", when=refusing_foreign)
def sender_domain_not_foreign(context: Context) -> ForeignDomain | None:
    """The envelope sender's domain is not another customer's."""
    domain = _foreign(context, [domain_of(context.tx.envelope.sender)])
    if domain is None:
        return None
    return ForeignDomain(domain, in_header=False, hint=context.config.replies.domain_hint)


@step("from_domain", when=refusing_foreign)
def from_domains_not_foreign(context: Context) -> ForeignDomain | None:
    """No From: header author's domain is another customer's."""
    domain = _foreign(context, context.tx.header_from_domains)
    if domain is None:
        return None
    return ForeignDomain(domain, in_header=True, hint=context.config.replies.domain_hint)
