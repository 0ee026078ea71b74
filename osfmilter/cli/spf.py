"""``osfmilter spf check``: whether a customer's domain lets the relay pass SPF."""

from __future__ import annotations

import argparse

from osfmilter.cli.common import Commands, command, group
from osfmilter.config import Config
from osfmilter.errors import UsageError
from osfmilter.registration import normalize_domain


def cmd_spf_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.spf.advisor import advise, render_json, render_text
    from osfmilter.spf.checker import SpfChecker, resolver_for

    settings = config.spf
    if not settings.outbound_ips:
        raise UsageError("[spf] outbound_ips is empty: there is no relay address to check")
    domain = normalize_domain(args.domain)
    resolver = resolver_for(settings.nameservers, settings.timeout)
    checker = SpfChecker(
        settings.outbound_ips,
        resolver,
        settings.timeout,
        settings.cache_size,
        settings.cache_max_ttl,
    )
    advice = advise(domain, checker, settings.include)
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
