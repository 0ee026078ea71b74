"""TXT records as the operator's commands read them: the verification and DKIM records.

One lookup, one answer: the strings of every TXT record at the name (each
record's character-strings joined, as RFC 7208 and RFC 6376 read them),
none when the name or the record does not exist, or the problem in one
line when DNS could not answer (a timeout, SERVFAIL).
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.resolver


@dataclass(frozen=True)
class TxtAnswer:
    records: tuple[str, ...] = ()
    problem: str = ""  # "" when DNS answered, with records or without

    @property
    def answered(self) -> bool:
        return not self.problem


def lookup_txt(resolver: dns.resolver.Resolver, name: str) -> TxtAnswer:
    """The TXT records at ``name``, through ``resolver`` (spf.checker.resolver_for)."""
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return TxtAnswer()
    except dns.resolver.NoNameservers:
        return TxtAnswer(problem=f"no nameserver answered for {name} (SERVFAIL or refused)")
    except dns.exception.Timeout:
        return TxtAnswer(problem=f"DNS timed out looking up {name}")
    except dns.exception.DNSException as exc:
        return TxtAnswer(problem=f"DNS lookup of {name} failed: {exc}")
    records = tuple(b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in answer)
    return TxtAnswer(records=records)
