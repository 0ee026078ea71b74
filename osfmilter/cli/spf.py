"""``osfmilter spf check``: whether a customer's domain lets the relay pass SPF."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from osfmilter.cli.common import Commands, command, group
from osfmilter.config import Config
from osfmilter.errors import UsageError
from osfmilter.registration import normalize_domain

if TYPE_CHECKING:
    from osfmilter.spf.advisor import Advice


def spf_advice(config: Config, domain_text: str) -> Advice:
    """The SPF advice for a domain, with the configured relay addresses and resolvers."""
    from osfmilter.spf.advisor import advise
    from osfmilter.spf.checker import SpfChecker, resolver_for

    settings = config.spf
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


def cmd_spf_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.spf.advisor import render_json, render_text

    advice = spf_advice(config, args.domain)
    print(render_json(advice) if args.json else render_text(advice))
    # 1 for both: the relay is not authorized, or DNS could not say (temperror).
    return 0 if advice.passes else 1


def register(commands: Commands) -> None:
    spf = group(commands, "spf", "SPF of customers' domains")
    p = command(
        spf,
        "check",
        cmd_spf_check,
        "show a domain's SPF record, whether the relay passes, and what to publish",
    )
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")
