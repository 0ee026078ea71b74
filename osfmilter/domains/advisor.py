"""``osfmilter domain check DOMAIN``: every record a domain needs, and what to publish.

The check is a list of parts, each with what DNS holds, what to publish,
and whether it passes: SPF (:mod:`osfmilter.spf.advisor`, as ``osfmilter
spf check`` prints it), the verification record, and DMARC. A part whose
``ok`` is None is advice only; the check passes when no part fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import dns.resolver

from osfmilter.dkim.keys import record_text
from osfmilter.dkim.published import check_published
from osfmilter.dkim.signer import Algorithm
from osfmilter.dnstxt import lookup_txt
from osfmilter.domains.rules import DomainState, record_name, record_value
from osfmilter.domains.verify import check_record
from osfmilter.spf import advisor as spf_advisor


@dataclass(frozen=True)
class Part:
    """One part of the check: its lines for people, its document for JSON."""

    key: str  # its key in the JSON document
    title: str
    ok: bool | None  # None: advice only, the check's outcome does not depend on it
    lines: tuple[str, ...]
    document: Mapping[str, object]


@dataclass(frozen=True)
class PublishedKey:
    """A DKIM key the domain must publish: its selector, algorithm and p= value."""

    selector: str
    algorithm: Algorithm
    public_key: str
    state: str  # active or retiring


@dataclass(frozen=True)
class Registered:
    """What the database holds about the domain (the check itself reads no database)."""

    state: DomainState
    token: str | None
    keys: tuple[PublishedKey, ...] = ()


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    parts: tuple[Part, ...]

    @property
    def passes(self) -> bool:
        return all(part.ok is not False for part in self.parts)


def check_domain(
    domain: str,
    spf: spf_advisor.Advice,
    resolver: dns.resolver.Resolver,
    registered: Registered | None,
) -> DomainCheck:
    parts = [
        spf_part(spf),
        verification_part(resolver, domain, registered),
        dkim_part(resolver, domain, registered),
        dmarc_part(resolver, domain),
    ]
    return DomainCheck(domain, tuple(parts))


def spf_part(advice: spf_advisor.Advice) -> Part:
    return Part(
        key="spf",
        title="SPF",
        ok=advice.passes,
        lines=tuple(spf_advisor.render_text(advice).splitlines()),
        document=spf_advisor.document(advice),
    )


def verification_part(
    resolver: dns.resolver.Resolver, domain: str, registered: Registered | None
) -> Part:
    name = record_name(domain)
    document: dict[str, object] = {"registered": registered is not None, "record_name": name}
    if registered is None:
        lines = [
            "not registered: 'osfmilter domain add DOMAIN --customer NAME --pending' "
            "gives it the token to publish"
        ]
        return Part("verification", "verification", False, tuple(lines), document)
    verified = registered.state is DomainState.VERIFIED
    document.update(state=str(registered.state), token=registered.token)
    lines = [f"state:    {registered.state}"]
    if registered.token is None:
        # Added verified by the operator: there is no record to publish.
        lines.append("verified by the operator: no record needed")
        document.update(record=None, found=None, problem=None)
        return Part("verification", "verification", verified, tuple(lines), document)
    value = record_value(registered.token)
    finding = check_record(resolver, domain, registered.token)
    if isinstance(finding, str):
        lines.append(f"DNS problem: {finding}")
        document.update(record=value, found=None, problem=finding)
    else:
        lines.append(finding.line)
        document.update(record=value, found=finding.verified, problem=None)
    if not verified:
        lines.append(f'publish:  {name}. TXT "{value}"')
        lines.append(f"then:     osfmilter domain verify {domain}")
    return Part("verification", "verification", verified, tuple(lines), document)


def dkim_part(resolver: dns.resolver.Resolver, domain: str, registered: Registered | None) -> Part:
    """Every key the domain must publish, looked up; fails when one is not published as made."""
    keys = registered.keys if registered is not None else ()
    if not keys:
        hint = (
            "no signing key: 'osfmilter dkim keygen DOMAIN' makes one"
            if registered is not None and registered.state is DomainState.VERIFIED
            else "no signing key: a domain gets one once it is verified"
        )
        return Part("dkim", "DKIM", None, (hint,), {"keys": []})
    lines, documents, ok = [], [], True
    for key in keys:
        found = check_published(domain, key.selector, key.algorithm, key.public_key, resolver)
        record = record_text(key.algorithm, key.public_key)
        lines.append(f"{key.state} key {key.selector}: {found.state}: {found.summary}")
        if not found.matches:
            ok = False
            lines.append(f'publish:  {found.name}. TXT "{record}"')
        documents.append(
            {
                "selector": key.selector,
                "state": key.state,
                "name": found.name,
                "record": record,
                "found": str(found.state),
                "summary": found.summary,
            }
        )
    return Part("dkim", "DKIM", ok, tuple(lines), {"keys": documents})


def suggested_dmarc(domain: str) -> str:
    return f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}"


ALIGNMENT = (
    "DMARC passes on SPF or DKIM passing for the From: domain itself (alignment);",
    "SPF breaks when mail is forwarded: lasting alignment comes from DKIM signing with d={domain}",
)


def dmarc_part(resolver: dns.resolver.Resolver, domain: str) -> Part:
    name = f"_dmarc.{domain}"
    answer = lookup_txt(resolver, name)
    records = [r for r in answer.records if r.strip().lower().startswith("v=dmarc1")]
    document: dict[str, object] = {
        "record_name": name,
        "records": records,
        "problem": answer.problem or None,
        "suggested": None,
    }
    if not answer.answered:
        lines = [f"DNS problem: {answer.problem}"]
    elif not records:
        document["suggested"] = suggested_dmarc(domain)
        lines = [
            f"no DMARC record at {name}",
            f'publish:  {name}. TXT "{suggested_dmarc(domain)}"',
        ]
    elif len(records) > 1:
        lines = [f"{len(records)} DMARC records at {name}: receivers use none of them; keep one"]
    else:
        lines = [f"record:   {records[0]}"]
    lines += [line.format(domain=domain) for line in ALIGNMENT]
    return Part("dmarc", "DMARC", None, tuple(lines), document)


def render_text(check: DomainCheck) -> str:
    lines = [f"domain:   {check.domain}"]
    for part in check.parts:
        outcome = {True: "OK", False: "NOT OK", None: "advice"}[part.ok]
        lines.append("")
        lines.append(f"{part.title} ({outcome})")
        lines += [f"  {line}" for line in part.lines]
    lines.append("")
    lines.append(
        "=> ready: every part passes"
        if check.passes
        else "=> not ready: " + ", ".join(p.title for p in check.parts if p.ok is False)
    )
    return "\n".join(lines)


def document(check: DomainCheck) -> dict[str, object]:
    """The check as ``--json`` prints it: ``domain``, ``passes``, then each part by its key."""
    found: dict[str, object] = {"domain": check.domain, "passes": check.passes}
    found.update({part.key: part.document for part in check.parts})
    return found


def render_json(check: DomainCheck) -> str:
    return json.dumps(document(check), indent=2)
