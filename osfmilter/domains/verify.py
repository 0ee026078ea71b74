"""The DNS check of a domain's verification record (rules in :mod:`.rules`)."""

from __future__ import annotations

import dns.resolver

from osfmilter.dnstxt import lookup_txt
from osfmilter.domains.rules import Finding, judge, record_name


def check_record(resolver: dns.resolver.Resolver, domain: str, token: str) -> Finding | str:
    """The finding, or the DNS problem in one line when DNS could not answer."""
    answer = lookup_txt(resolver, record_name(domain))
    if not answer.answered:
        return answer.problem
    return judge(domain, token, answer.records)
