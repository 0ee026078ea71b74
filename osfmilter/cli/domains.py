"""``osfmilter domain``: a customer's domains, their verification and their records."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from osfmilter.cli import common
from osfmilter.cli.common import Commands, command, group
from osfmilter.cli.output import table, when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.dkim.keys import KeyFiles
from osfmilter.domains.rules import DomainState, record_name, record_value
from osfmilter.errors import DnsError, UsageError
from osfmilter.storage import admin, domains
from osfmilter.storage.db import Access
from osfmilter.storage.schema import Customer, ScannedDomain


def cmd_domain_add(args: argparse.Namespace, config: Config) -> int:
    # Locked: on SQLite no other add slips in between the nesting check and
    # the insert (on PostgreSQL add_domain takes an advisory lock).
    with common.session(config, locked=True) as session:
        row = domains.add_domain(
            session, args.domain, args.customer, SystemClock().now(), pending=args.pending
        )
        name, token = row.domain, row.verification_token
    if token is None:
        print(f"domain {name} added to {args.customer}")
        return 0
    print(f"domain {name} added to {args.customer}, pending verification; publish")
    print(f'  {record_name(name)}. TXT "{record_value(token)}"')
    print(f"then run: osfmilter domain verify {name}")
    return 0


def cmd_domain_verify(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.domains.verify import check_record
    from osfmilter.spf.checker import resolver_for

    with common.session(config, Access.READ_ONLY) as session:
        row = domains.get_domain(session, args.domain)
        name, state, token = row.domain, row.state, row.verification_token
        verified_at = row.verified_at
    if state == DomainState.VERIFIED:
        since = f" since {when(verified_at)}" if verified_at else ""
        print(f"domain {name} is already verified{since}")
        return 0
    if token is None:  # only an operator's own SQL makes one
        raise UsageError(f"domain {name} is pending without a token; remove it and add it again")
    # The lookup runs outside any transaction: DNS may take its timeout.
    finding = check_record(resolver_for(config.spf.nameservers, config.spf.timeout), name, token)
    if isinstance(finding, str):
        raise DnsError(f"domain {name} not verified: {finding}")
    if not finding.verified:
        print(f"domain {name} not verified yet: {finding.line}")
        return 1
    with common.session(config, Access.EXISTING) as session:
        domains.mark_verified(session, name, token, SystemClock().now())
    print(f"domain {name} verified: {finding.line}")
    return 0


def _shown(row: ScannedDomain) -> dict[str, object]:
    token = row.verification_token
    return {
        "domain": row.domain,
        "customer": row.customer.name,
        "state": row.state,
        "token": token,
        "record_name": record_name(row.domain),
        "record": record_value(token) if token else None,
        "verified_at": when(row.verified_at) if row.verified_at else None,
    }


def cmd_domain_show(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        shown = _shown(domains.get_domain(session, args.domain))
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    for key, value in shown.items():
        print(f"{key + ':':<13} {'-' if value is None else value}")
    if shown["state"] == DomainState.PENDING:
        print(f'publish:      {shown["record_name"]}. TXT "{shown["record"]}"')
    return 0


def cmd_domain_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.domains import check
    from osfmilter.domains.advisor import render_json, render_text

    with common.session(config, Access.READ_ONLY) as session:
        registered = check.registered(session, args.domain, SystemClock().now())
    result = check.run(config.spf, args.domain, registered)
    print(render_json(result) if args.json else render_text(result))
    return 0 if result.passes else 1


def cmd_domain_list(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.READ_ONLY) as session:
        query = select(ScannedDomain).join(Customer).order_by(ScannedDomain.domain)
        if args.customer:
            query = query.where(Customer.id == admin.get_customer(session, args.customer).id)
        rows = [(d.domain, d.customer.name, d.state) for d in session.scalars(query)]
    table(("domain", "customer", "state"), rows)
    return 0


def cmd_domain_remove(args: argparse.Namespace, config: Config) -> int:
    with common.session(config, Access.EXISTING) as session:
        name = domains.get_domain(session, args.domain).domain
        selectors = domains.remove_domain(session, name)
    print(f"domain {name} removed")
    # After the commit: a key file stays only if its row is gone for good.
    files = KeyFiles(config.dkim_key_path)
    for selector in selectors:
        files.remove(name, selector)
    if selectors:
        print(
            f"its DKIM key files ({', '.join(selectors)}) were removed from "
            f"{config.dkim_key_path}; remove them on the other relay nodes too"
        )
    return 0


def register(commands: Commands) -> None:
    domain = group(commands, "domain", "a customer's domains (verified ones make a sender known)")
    p = command(domain, "add", cmd_domain_add, "add a domain, verified or pending")
    p.add_argument("domain")
    p.add_argument("--customer", required=True)
    p.add_argument(
        "--pending",
        action="store_true",
        help="add it pending, with a token the customer publishes in DNS to verify it",
    )
    p = command(domain, "verify", cmd_domain_verify, "verify a pending domain by its TXT record")
    p.add_argument("domain")
    p = command(domain, "show", cmd_domain_show, "show a domain, its state and its record")
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command(
        domain,
        "check",
        cmd_domain_check,
        "check a domain's SPF, verification and DMARC records, and what to publish",
    )
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command(domain, "list", cmd_domain_list, "list domains and their states")
    p.add_argument("--customer")
    p = command(domain, "remove", cmd_domain_remove, "remove a domain")
    p.add_argument("domain")
